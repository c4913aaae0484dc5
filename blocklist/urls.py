from django.urls import path

from blocklist import views

app_name = "blocklist"

urlpatterns = [
    path("ip/<str:ip>", views.api_ip, name="api_ip"),
    path("export/<str:fmt>", views.api_export, name="api_export"),
]
