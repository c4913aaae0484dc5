"""gunicorn's logger (see gunicorn.conf.py): confirmation tokens redacted from the access log, and
with LOG_FORMAT=json both its logs as one JSON object per line, the access line's parts as fields."""

from __future__ import annotations

import logging

from gunicorn.glogging import Logger

from portal_lib.json_logging import JsonFormatter
from portal_lib.log_redaction import redact


class RedactingLogger(Logger):
    # gunicorn.conf.py sets it from LOG_FORMAT, before gunicorn makes its logger.
    json = False

    def setup(self, cfg) -> None:
        super().setup(cfg)
        if self.json:
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(JsonFormatter())

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        # The request line, the path, the referer: any of them can carry /confirm/<token>.
        return {key: redact(value) if isinstance(value, str) else value for key, value in atoms.items()}

    def access(self, resp, req, environ, request_time) -> None:
        if not self.json:
            super().access(resp, req, environ, request_time)
            return
        if not self.access_log_enabled:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        fields = {
            "remote_addr": atoms["h"],
            "method": atoms["m"],
            "path": atoms["U"],
            "status": int(str(atoms["s"])) if str(atoms["s"]).isdigit() else atoms["s"],
            "bytes": atoms["B"],
            "duration_ms": atoms["M"],
            "user_agent": atoms["a"],
            "request_id": atoms.get("{x-request-id}o"),
        }
        try:
            self.access_log.info(self.cfg.access_log_format, self.atoms_wrapper_class(atoms), extra=fields)
        except Exception:  # noqa: BLE001  (as gunicorn's own: a log line never fails a request)
            logging.getLogger("gunicorn.error").exception("could not write the access log line")
