from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class BlocklistConfig(AppConfig):
    name = "blocklist"
    verbose_name = _("Blocklist")

    def ready(self) -> None:
        from blocklist import tasks  # noqa: F401  (registers the tasks the web process queues by name)
