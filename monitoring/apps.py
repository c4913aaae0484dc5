from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """Heartbeats of the periodic jobs and /metrics (nothing of it is in the admin)."""

    name = "monitoring"
