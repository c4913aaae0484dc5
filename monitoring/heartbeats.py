"""Recording and reading the heartbeats of periodic jobs (monitoring.models.Heartbeat)."""

from __future__ import annotations

from django.utils import timezone

from monitoring.models import Heartbeat

SWEEP = "sweep"


def heartbeat_record(name: str, *, failed_steps: int = 0) -> None:
    """The job `name` finished now (the wall clock: a sweep run for a pretended `now` in a test
    or a catch-up still finished now). One upsert, so two workers finishing at once both land."""
    Heartbeat.objects.bulk_create(
        [Heartbeat(name=name, finished_at=timezone.now(), failed_steps=failed_steps)],
        update_conflicts=True,
        unique_fields=["name"],
        update_fields=["finished_at", "failed_steps"],
    )


def heartbeat_last(name: str) -> Heartbeat | None:
    return Heartbeat.objects.filter(name=name).first()
