"""Settings for the delist portal, read from the environment (see README, "Configuration")."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

from delist_portal.env import envbool, envdatabase_url, envint, envlist, envrate, envsecret, envstr
from portal_lib.dnsbl import parse_resolver
from portal_lib.json_logging import log_format
from portal_lib.rates import parse_rate

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(envstr("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = envbool("DEBUG", False)
# Placeholders this repository has shipped in .env.example: a copied example is no secret.
SECRET_KEY_PLACEHOLDERS = {"change-me-to-a-long-random-string", "replace-me-with-a-generated-key"}


def _secret_key_weakness(key: str) -> str | None:
    """Why Django's security.W009 would call KEY guessable (or it is our placeholder), or None."""
    if key in SECRET_KEY_PLACEHOLDERS:
        return "is the placeholder from .env.example"
    if key.startswith(SECRET_KEY_INSECURE_PREFIX):
        return f"starts with {SECRET_KEY_INSECURE_PREFIX!r}"
    if len(key) < SECRET_KEY_MIN_LENGTH:
        return f"is shorter than {SECRET_KEY_MIN_LENGTH} characters"
    if len(set(key)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS:
        return f"has fewer than {SECRET_KEY_MIN_UNIQUE_CHARACTERS} different characters"
    return None


SECRET_KEY = envsecret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required unless DEBUG=true")
    SECRET_KEY = secrets.token_urlsafe(50)
elif not DEBUG and (weakness := _secret_key_weakness(SECRET_KEY)):
    # Sessions, CSRF tokens and password-reset links are only as strong as this key.
    raise ImproperlyConfigured(
        f"SECRET_KEY {weakness}: generate one with "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )

HTTPS = envbool("HTTPS", not DEBUG)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1")
PORTAL_BASE_URL = envstr("PORTAL_BASE_URL", "http://localhost:8000").rstrip("/")
TRUSTED_PROXY_COUNT = envint("TRUSTED_PROXY_COUNT", 0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "csp",
    "axes",
    "blocklist",
    "requests_app",
    "monitoring",
    "webhooks",
]

MIDDLEWARE = [
    # First: the id is on every response and every log line, and the latency covers it all.
    "portal_lib.request_id.RequestIdMiddleware",
    "portal_lib.metrics.HttpMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Before whitenoise, so static files carry the headers too.
    "django_permissions_policy.PermissionsPolicyMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a flagged login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "delist_portal.urls"
WSGI_APPLICATION = "delist_portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


SUPPORTED_DATABASES = ("django.db.backends.postgresql", "django.db.backends.sqlite3")


def _database(url: str | None) -> dict:
    if not url:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(VAR_DIR / "portal.sqlite3")}
    try:
        config = environ.Env.db_url_config(url)
    except Exception as e:  # django-environ raises several types for a bad URL
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {e}") from e
    if config.get("ENGINE") not in SUPPORTED_DATABASES:
        raise ImproperlyConfigured(
            f"DATABASE_URL has an unsupported scheme {url.split(':', 1)[0]!r}: use postgres:// or sqlite:///"
        )
    if config["ENGINE"] == "django.db.backends.postgresql":
        # Django's, with a health check that asks the socket instead of the server.
        config["ENGINE"] = "portal_lib.postgresql"
    return config


# DATABASE_PASSWORD(_FILE), when set, is the password in DATABASE_URL (README, "Configuration").
DATABASES = {"default": _database(envdatabase_url())}
# Persistent connections, checked before each request's first use (on PostgreSQL without a
# round trip, portal_lib.postgresql): web and worker outlive a PostgreSQL restart without a
# restart of their own.
DATABASES["default"]["CONN_MAX_AGE"] = envint("CONN_MAX_AGE", 300)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and worker share the file: wait for locks instead of failing, and take the
    # write lock up front so two writers never deadlock on a lock upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = envsecret("REDIS_URL")
if REDIS_URL:
    _redis_options = {"socket_connect_timeout": 2, "socket_timeout": 2}
    CACHES = {
        "default": {
            "BACKEND": "portal_lib.redis_cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": _redis_options,
        },
        # django-ratelimit's counters only: one round trip per counted request, not three.
        "ratelimit": {
            "BACKEND": "portal_lib.redis_cache.RateCounterCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": _redis_options,
        },
    }
    RATELIMIT_USE_CACHE = "ratelimit"
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# Web and worker see one cache (the rate limits' counters are shared between processes).
CACHE_SHARED = bool(REDIS_URL)
if not CACHE_SHARED:
    # One process on the embedded default: a per-process counter is what we have.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"]

# Celery: Redis when configured, otherwise a broker on the filesystem under var/.
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A submit must not hang when the broker is away: the sweep sends what was not queued.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 2, "socket_timeout": 5}
else:
    _broker_dir = VAR_DIR / "celery"
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "control_folder": str(_broker_dir / "control"),
    }
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# Beat writes the schedule file after every task it sends: its age is beat's health check
# (delist_portal/beat_health.py).
CELERY_BEAT_SYNC_EVERY = 1

try:
    _email = environ.Env.email_url_config(envstr("EMAIL_URL", "consolemail://"))
except Exception as e:
    raise ImproperlyConfigured(f"EMAIL_URL is not a valid email URL: {e}") from e
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
if EMAIL_BACKEND == "django.core.mail.backends.console.EmailBackend":
    # consolemail://: each mail printed once, framed, its link on a line of its own.
    EMAIL_BACKEND = "portal_lib.console_mail.EmailBackend"
EMAIL_HOST = _email.get("EMAIL_HOST", "localhost")
EMAIL_PORT = _email.get("EMAIL_PORT", 25)
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = _email.get("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = _email.get("EMAIL_USE_SSL", False)
# Short: an SMTP server that accepts and then hangs costs one mail's attempt, not the worker.
EMAIL_TIMEOUT = 5
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "delist@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# The delist flow. Ranges are enforced by system checks (requests_app/checks.py).
DELIST_PROPAGATION_DELAY = envint("DELIST_PROPAGATION_DELAY", 3600)
DELIST_TOKEN_TTL = envint("DELIST_TOKEN_TTL", 3600)
DELIST_MAIL_GIVE_UP = envint("DELIST_MAIL_GIVE_UP", 172800)
DELIST_SWEEP_INTERVAL = envint("DELIST_SWEEP_INTERVAL", 30)
# Review policy: past LIMIT self-service delistings of one IP within WINDOW_DAYS, a person decides.
DELIST_SELF_SERVICE_LIMIT = envint("DELIST_SELF_SERVICE_LIMIT", 3)
DELIST_SELF_SERVICE_WINDOW_DAYS = envint("DELIST_SELF_SERVICE_WINDOW_DAYS", 90)
DELIST_REVIEW_ALL = envbool("DELIST_REVIEW_ALL", False)
# A reviewer approving a range with a shorter prefix than these needs to be a superuser.
DELIST_REVIEW_WIDE_PREFIX_V4 = envint("DELIST_REVIEW_WIDE_PREFIX_V4", 24)
DELIST_REVIEW_WIDE_PREFIX_V6 = envint("DELIST_REVIEW_WIDE_PREFIX_V6", 48)
# Abuse limits (README, "Limits"). Per client: django-ratelimit in the cache, IPv6 per /64.
DELIST_SUBMIT_RATE = envrate("DELIST_SUBMIT_RATE", "10/h")
DELIST_LOOKUP_RATE = envrate("DELIST_LOOKUP_RATE", "60/m")
DELIST_API_RATE = envrate("DELIST_API_RATE", "120/m")
# Per API key (blocklist.api_keys): machines behind one address each get their own.
DELIST_API_KEY_RATE = envrate("DELIST_API_KEY_RATE", "600/m")
RATELIMIT_IP_META_KEY = "portal_lib.client_ip.ratelimit_ip"
RATELIMIT_IPV6_MASK = envint("RATELIMIT_IPV6_MASK", 64)
# Confirmation mails, counted exactly in the database from the mails themselves.
DELIST_MAILBOX_RATE = envrate("DELIST_MAILBOX_RATE", "5/h")
DELIST_DOMAIN_RATE = envrate("DELIST_DOMAIN_RATE", "50/h")
DELIST_MAIL_RATE = envrate("DELIST_MAIL_RATE", "500/h")

# Webhook targets on loopback and private addresses: refused unless a lab or a test allows them.
WEBHOOK_ALLOW_PRIVATE = envbool("WEBHOOK_ALLOW_PRIVATE", False)

EXPORT_DIR = envsecret("EXPORT_DIR") or None
EXPORT_TOKEN = envsecret("EXPORT_TOKEN") or None
# Bearer token for /metrics; unset, /metrics answers 404.
METRICS_TOKEN = envsecret("METRICS_TOKEN") or None

# Closed requests lose their email and client address after this many days. It must outlast
# every mail-limit window, which counts those addresses (requests_app.retention).
DELIST_RETENTION_DAYS = envint("DELIST_RETENTION_DAYS", 365)
if not 1 <= DELIST_RETENTION_DAYS <= 36500:
    raise ImproperlyConfigured(f"DELIST_RETENTION_DAYS must be 1 to 36500 days, not {DELIST_RETENTION_DAYS}")
for _rate_name in ("DELIST_MAILBOX_RATE", "DELIST_DOMAIN_RATE"):
    if parse_rate(globals()[_rate_name])[1] > DELIST_RETENTION_DAYS * 86400:
        raise ImproperlyConfigured(
            f"{_rate_name}'s window is longer than DELIST_RETENTION_DAYS: erasing addresses would reopen it"
        )
# The zone our rbldnsd serves and the DNS server to ask for it ("127.0.0.1:53"): with both set,
# the worker asks after each delisting and the status page tells the answer.
DNSBL_ZONE = envstr("DNSBL_ZONE", "").strip().strip(".")
DNSBL_RESOLVER = envstr("DNSBL_RESOLVER", "").strip()
try:
    DNSBL_RESOLVER_ADDRESS = parse_resolver(DNSBL_RESOLVER) if DNSBL_RESOLVER else None
except ValueError as e:
    raise ImproperlyConfigured(f"DNSBL_RESOLVER: {e}") from e

# Read whatever HTTPS says, so a typo stops start-up in a lab too.
HSTS_INCLUDE_SUBDOMAINS = envbool("HSTS_INCLUDE_SUBDOMAINS", True)
HSTS_PRELOAD = envbool("HSTS_PRELOAD", True)
if HTTPS:
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = 31536000
    SECURE_HSTS_INCLUDE_SUBDOMAINS = HSTS_INCLUDE_SUBDOMAINS
    SECURE_HSTS_PRELOAD = HSTS_PRELOAD
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # Monitors and scrapers talk to gunicorn directly (a redirect would not protect the token).
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
    if TRUSTED_PROXY_COUNT > 0:
        # The TLS-terminating proxy says the scheme in this header. Without a proxy anyone could
        # send it, and a plain-HTTP request would pass for a secure one.
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
CSRF_TRUSTED_ORIGINS = [PORTAL_BASE_URL] if PORTAL_BASE_URL.startswith("http") else []
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True

# Everything comes from our own origin: no inline script or style, Django's admin included
# (tests/e2e/test_content_security_policy.py walks the pages in Chromium).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}
# Powerful browser features the portal never uses: denied to it and to anything it might embed.
# Only names Chromium knows (it warns on others; the browser test fails on that warning).
PERMISSIONS_POLICY: dict[str, list[str]] = {
    feature: []
    for feature in (
        "accelerometer",
        "autoplay",
        "browsing-topics",  # the Topics API, and FLoC's interest-cohort before it
        "camera",
        "display-capture",
        "encrypted-media",
        "geolocation",
        "gyroscope",
        "hid",
        "idle-detection",
        "interest-cohort",
        "local-fonts",
        "magnetometer",
        "microphone",
        "midi",
        "payment",
        "publickey-credentials-get",
        "screen-wake-lock",
        "serial",
        "usb",
        "xr-spatial-tracking",
    )
}

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses a locked-out login before the password is checked
    "django.contrib.auth.backends.ModelBackend",
]
# Admin login lockout (README, "The abuse desk"): 5 failures for one username from one client
# address lock that pair for 30 minutes; another address, or another account, is not affected.
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=30)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The address the rate limits and records use, so TRUSTED_PROXY_COUNT decides here too.
AXES_CLIENT_IP_CALLABLE = "portal_lib.client_ip.client_ip"
AXES_LOCKOUT_CALLABLE = "requests_app.admin.lockout_response"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("sv", "Svenska")]
LOCALE_PATHS = [BASE_DIR / "locale"]
# The switcher's choice (Django's set_language view) outlives the session: a sender comes back.
LANGUAGE_COOKIE_AGE = 365 * 24 * 3600
LANGUAGE_COOKIE_SECURE = HTTPS
LANGUAGE_COOKIE_HTTPONLY = True
LANGUAGE_COOKIE_SAMESITE = "Lax"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# Serve straight from the source folders when collectstatic has not run (the embedded default).
WHITENOISE_USE_FINDERS = True
STATIC_ROOT.mkdir(parents=True, exist_ok=True)

try:
    # plain, or json: one JSON object per line (portal_lib.json_logging), here and in gunicorn and Celery.
    LOG_FORMAT = log_format(envsecret("LOG_FORMAT"))
except ValueError as e:
    raise ImproperlyConfigured(str(e)) from None
_json_logs = LOG_FORMAT == "json"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "server": {"format": "[%(asctime)s] %(message)s"},
        "json": {"()": "portal_lib.json_logging.JsonFormatter"},
    },
    # Tokens of confirmation links never reach a log (django.request logs every 404's path).
    "filters": {
        "redact_links": {"()": "portal_lib.log_redaction.RedactConfirmationLinks"},
        # The request's id (and in the worker the task's) as fields of each line.
        "context": {"()": "portal_lib.request_id.LogContext"},
        "quiet_periodic": {"()": "portal_lib.periodic_logging.QuietRoutinePeriodicTasks"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if _json_logs else "plain",
            "filters": ["redact_links", "context"],
        },
        # runserver's request lines, as Django logs them, redacted too.
        "django.server": {
            "class": "logging.StreamHandler",
            "formatter": "json" if _json_logs else "server",
            "filters": ["redact_links", "context"],
        },
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "blocklist": {"level": "INFO"},
        "requests_app": {"level": "INFO"},
        "webhooks": {"level": "INFO"},
        "delist_portal": {"level": "INFO"},
        "monitoring": {"level": "INFO"},
        "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False},
        # Django's own console handler (DEBUG only) and the warnings it routes would print plain
        # lines among the JSON: with LOG_FORMAT=json they reach the root's handler instead.
        **(
            {"django": {"handlers": [], "level": "INFO"}, "py.warnings": {"handlers": []}}
            if _json_logs
            else {}
        ),
        # Celery's line per periodic task run, every few seconds, says nothing the sweep does not.
        **{
            name: {"filters": ["quiet_periodic"]}
            # (celery.worker.request: "Discarding revoked task", a periodic run that expired unrun.)
            for name in ("celery.beat", "celery.worker.strategy", "celery.app.trace", "celery.worker.request")
        },
    },
}
