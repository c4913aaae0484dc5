"""What the web process does once the apps are loaded, before it serves anyone.

manage.py runs system checks itself; gunicorn and Celery do not, so the WSGI module and the
Celery app refuse settings out of range here. The WSGI module also warms up what Django
builds on first use.
"""

from django.conf import settings
from django.core import checks
from django.core.management.base import SystemCheckError

# A sample that every validator of the forms runs on in full (a valid email and IP).
_SAMPLE_SUBMISSION = {"email": "warm-up@example.org", "ip": "192.0.2.1"}
# The start page's templates, which the cached loader compiles once per process.
_START_PAGE = ("requests_app/home.html", "base.html")


def require_valid_settings() -> None:
    errors = [m for m in checks.run_checks(tags=["delist"]) if m.is_serious()]
    if errors:
        raise SystemCheckError("\n".join(f"{e.id}: {e.msg}" for e in errors))


def warm_up() -> None:
    """Build once, at boot, what Django builds on first use: the email validator's expressions
    (60 ms to compile, and a new worker's threads each compile their own when its first
    submissions race), each language's catalogue, the URL resolver and the start page's
    templates. Touches no database, cache or broker."""
    from django.template.loader import get_template
    from django.urls import get_resolver
    from django.utils import translation

    from requests_app.forms import CheckForm, DelistRequestForm

    for language, _name in settings.LANGUAGES:
        with translation.override(language):
            DelistRequestForm(_SAMPLE_SUBMISSION).is_valid()
            CheckForm({"ip": _SAMPLE_SUBMISSION["ip"]}).is_valid()
            get_resolver().reverse_dict  # noqa: B018  (filled per language on first use)
    for name in _START_PAGE:
        get_template(name)
