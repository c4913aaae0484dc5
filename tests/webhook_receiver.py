"""A real HTTP receiver for webhook tests: http.server on loopback, in a thread.

It records every request it gets (any method, so a followed redirect would show) and answers
with the statuses it is told, then 200. `verify` checks a delivery the way a receiver should.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.conftest import free_port


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body)


class Receiver:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.received: list[Received] = []
        self.answers: list[int] = []  # statuses for the next requests, then 200
        self.location = ""  # for a 3xx answer
        self.delay = 0.0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self, *, tls: tuple[str, str] | None = None) -> Receiver:
        """Listen (again, on the same port); with tls=(certfile, keyfile), over HTTPS."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.received.append(Received(self.command, self.path, dict(self.headers), body))
                    status = receiver.answers.pop(0) if receiver.answers else 200
                time.sleep(receiver.delay)
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_POST = do_GET = do_PUT = _handle

            def log_message(self, format, *args):  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def posts(self, path: str = "/hook") -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.method == "POST" and r.path == path]


class BadSignature(Exception):
    pass


def verify(secret: str, received: Received, *, now: float, tolerance: int = 300) -> dict:
    """What a receiver does: recompute the HMAC over "<timestamp>.<raw body>", compare in constant
    time, refuse a stale timestamp (a replay), and only then parse the JSON."""
    timestamp = received.headers["X-Delist-Timestamp"]
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + received.body, hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(received.headers["X-Delist-Signature"], f"sha256={expected}"):
        raise BadSignature("signature does not match")
    if abs(now - int(timestamp)) > tolerance:
        raise BadSignature("timestamp outside the tolerance")
    return json.loads(received.body)
