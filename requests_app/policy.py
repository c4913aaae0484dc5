"""Whether a confirmed request may be approved without a reviewer."""

from __future__ import annotations

from collections.abc import Sequence

from blocklist.models import Entry


def allows_self_service(entries: Sequence[Entry]) -> bool:
    """Self-service only when every covering entry is a single address that allows it.

    A covering range may hold other senders' addresses, so a person decides.
    """
    return all(entry.is_single_address and entry.self_service for entry in entries)
