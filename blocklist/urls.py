from django.urls import path

from blocklist import machine_api, views

app_name = "blocklist"

urlpatterns = [
    path("ip/<str:ip>", views.api_ip, name="api_ip"),
    path("export/<str:fmt>", views.api_export, name="api_export"),
    # The machine API (blocklist/machine_api.py): keys write entries and follow the changes.
    path("entries", machine_api.entries, name="api_entries"),
    path("entries/<str:entry_id>", machine_api.entry, name="api_entry"),
    path("entries/<str:entry_id>/delist", machine_api.entry_delist, name="api_entry_delist"),
    path("changes", machine_api.change_stream, name="api_changes"),
    path("openapi.json", machine_api.openapi, name="api_openapi"),
]
