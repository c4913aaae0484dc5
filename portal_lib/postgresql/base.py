"""Django's PostgreSQL backend, checking a persistent connection without asking the server.

With CONN_HEALTH_CHECKS, Django sends `SELECT 1` before each request's first query: a round trip
of every request, the API's and a submission's included. An idle connection is quiet: PostgreSQL
sends nothing unasked except to end it (a restart, a terminated backend, a session timeout),
and then the socket reads as ready, with its last words or the end of the stream. So a
connection whose socket has nothing to read is usable; one that has, is closed and opened anew.
Asking costs one non-blocking poll. A wrong "unusable" costs one reconnect, nothing more.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed:
            return False
        try:
            poller = select.poll()  # not select(): file numbers above 1023 are fine
            poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
            return not poller.poll(0)  # any event, a hang-up or an error included
        except (OSError, ValueError, base.Database.Error):
            return False
