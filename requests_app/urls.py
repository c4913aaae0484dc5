from django.urls import path

from requests_app import views

app_name = "requests"

urlpatterns = [
    path("", views.home, name="home"),
    path("request", views.submit, name="submit"),
    path("confirm/", views.confirm, name="confirm"),
    path("confirm/<path:token>", views.confirm_link, name="confirm_link"),
    path("status/<str:key>", views.status, name="status"),
]
