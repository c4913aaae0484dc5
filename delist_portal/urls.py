from django.contrib import admin
from django.urls import include, path

from delist_portal import views
from monitoring import views as monitoring_views
from portal_lib.admin_base import BoundedLoginForm

admin.site.login_form = BoundedLoginForm

urlpatterns = [
    path("", include("requests_app.urls")),
    path("api/v1/", include("blocklist.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", monitoring_views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
]
