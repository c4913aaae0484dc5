"""gunicorn's logger with confirmation tokens redacted from the access log (see gunicorn.conf.py)."""

from gunicorn.glogging import Logger

from portal_lib.log_redaction import redact


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        # The request line, the path, the referer: any of them can carry /confirm/<token>.
        return {key: redact(value) if isinstance(value, str) else value for key, value in atoms.items()}
