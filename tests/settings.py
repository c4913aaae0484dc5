"""Settings for the test suite: the real settings, read from the same environment.

With no DATABASE_URL or REDIS_URL this is the embedded default (SQLite, local cache);
CI runs the suite again with both pointing at the real servers.
"""

import os
import tempfile

os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("HTTPS", "false")
# One folder per user, reused: it only holds the filesystem broker's and whitenoise's folders.
os.environ.setdefault("VAR_DIR", os.path.join(tempfile.gettempdir(), f"delist-test-var-{os.getuid()}"))

from delist_portal.settings import *  # noqa: E402,F403

# Tasks run in-process when enqueued; tests that need the broker away switch this off.
CELERY_TASK_ALWAYS_EAGER = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PORTAL_BASE_URL = "https://delist.example.org"
for _cache in CACHES.values():  # noqa: F405
    if "redis" in _cache["BACKEND"]:
        _cache["KEY_PREFIX"] = "delist-test"
# The admin login lockout is tested through the real login page: keep django-axes on.
AXES_ENABLED = True
