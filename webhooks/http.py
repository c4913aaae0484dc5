"""One POST to a checked target, connected to the address that was checked.

The standard library's http.client: it follows no redirects (a 3xx is the answer), and its
connections are told which address to use, so nothing resolves the host a second time.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from contextlib import suppress

from webhooks.targets import Target

CONNECT_TIMEOUT = 3.0
# Per read: a receiver that accepts and then stalls costs one attempt of a few seconds.
READ_TIMEOUT = 5.0
# The whole exchange once connected: a receiver trickling its answer byte by byte is cut off
# here, well inside the sender's lease.
ATTEMPT_TIMEOUT = 10.0
USER_AGENT = "delist-portal-webhooks/1"


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, target: Target, address: str):
        super().__init__(target.host, target.port, timeout=CONNECT_TIMEOUT)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.settimeout(READ_TIMEOUT)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, target: Target, address: str):
        super().__init__(
            target.host, target.port, timeout=CONNECT_TIMEOUT, context=ssl.create_default_context()
        )
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        sock.settimeout(READ_TIMEOUT)
        # The certificate is checked against the host the URL names, not the address.
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _cut_off(sock: socket.socket) -> None:
    # A blocked read in the sending thread returns at once, and the attempt fails.
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def post(target: Target, body: bytes, headers: dict[str, str]) -> int:
    """POST body to the target; the HTTP status code. OSError (and http.client's errors) when
    no answer came. Each checked address is tried until one accepts the connection."""
    cls = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    error: OSError | None = None
    for address in target.addresses:
        conn = cls(target, address)
        try:
            try:
                conn.connect()
            except OSError as e:
                error = e
                continue
            # Connected: from here on an error is the attempt's, never a reason to send it twice.
            watchdog = threading.Timer(ATTEMPT_TIMEOUT, _cut_off, [conn.sock])
            watchdog.start()
            try:
                conn.request("POST", target.path, body=body, headers={"User-Agent": USER_AGENT, **headers})
                response = conn.getresponse()
                response.read(65536)
                return response.status
            finally:
                watchdog.cancel()
        finally:
            conn.close()
    assert error is not None  # resolve() never returns a target without addresses
    raise error
