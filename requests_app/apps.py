from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RequestsAppConfig(AppConfig):
    name = "requests_app"
    # Not "Delist requests": the admin's breadcrumbs name the app and then its model.
    verbose_name = _("Delisting")

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from requests_app import (
            checks,  # noqa: F401  (registers the start-up checks)
            tasks,  # noqa: F401  (registers the tasks the web process queues by name)
        )
        from requests_app.roles import ensure_reviewer_group

        # After auth's own handler has created the permissions.
        post_migrate.connect(ensure_reviewer_group, sender=self)
