from django.urls import path

from requests_app import status_views, views

app_name = "requests"

urlpatterns = [
    path("", views.home, name="home"),
    path("request", views.submit, name="submit"),
    path("confirm/", views.confirm, name="confirm"),
    path("confirm/<path:token>", views.confirm_link, name="confirm_link"),
    path("status/<str:key>", status_views.status, name="status"),
    path("status/<str:key>/resend", status_views.status_resend, name="status_resend"),
    path("status/<str:key>/cancel", status_views.status_cancel, name="status_cancel"),
    path("status/<str:key>/withdraw", status_views.status_withdraw, name="status_withdraw"),
]
