from django.urls import path

from blocklist import views

app_name = "blocklist"

urlpatterns = [
    path("ip/<str:ip>", views.api_ip, name="api_ip"),
]
