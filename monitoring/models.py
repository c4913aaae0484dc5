from __future__ import annotations

from django.db import models


class Heartbeat(models.Model):
    """When a periodic job last finished, one row per job: /healthz and /metrics tell a dead
    beat by it, whichever process asks (the database is what they all share)."""

    name = models.CharField(primary_key=True, max_length=50)
    finished_at = models.DateTimeField()
    # Steps of that run that raised (each logged; the others ran).
    failed_steps = models.PositiveSmallIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} at {self.finished_at:%Y-%m-%d %H:%M:%S}"
