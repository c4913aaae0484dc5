# gunicorn reads this file from the working directory (the image's /app, a checkout's root).
# Confirmation links carry a token: the access log shows /confirm/[redacted] instead.
logger_class = "portal_lib.gunicorn_logging.RedactingLogger"
