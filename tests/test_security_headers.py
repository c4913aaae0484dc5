"""Safe to put on the internet: every response carries a Content-Security-Policy without
'unsafe-inline', a Permissions-Policy and Cross-Origin-Opener-Policy; production settings pass
`check --deploy` without a warning; a guessable SECRET_KEY stops start-up; X-Forwarded-Proto is
believed only from a proxy we were told about."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from requests_app.models import DelistRequest
from tests.conftest import LISTED_IP, SENDER, confirmation_link, link_path

ROOT = Path(__file__).resolve().parent.parent
# Browser features nobody may use on the portal's pages.
DENIED_FEATURES = [
    "camera",
    "microphone",
    "geolocation",
    "payment",
    "usb",
    "browsing-topics",
    "interest-cohort",
]


def csp_directives(response) -> dict[str, list[str]]:
    header = response.headers.get("Content-Security-Policy")
    assert header, f"{response.request['PATH_INFO']} has no Content-Security-Policy"
    directives = {}
    for part in header.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


class _InlineFinder(HTMLParser):
    """Inline script, style attributes and on* handlers: what the policy would block."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        self.found += [f"<{tag} {name}=...>" for name in names if name == "style" or name.startswith("on")]
        # A data island (json_script) is not run, so the policy does not care about it.
        self._in_script = tag == "script" and "src" not in names and names.get("type") != "application/json"
        if tag == "style":
            self.found.append("<style> element")

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append(f"inline <script>: {data.strip()[:60]}")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False


def inline_code(html: str) -> list[str]:
    finder = _InlineFinder()
    finder.feed(html)
    return finder.found


def assert_protected(response) -> None:
    path = response.request["PATH_INFO"]
    csp = csp_directives(response)
    assert not [s for sources in csp.values() for s in sources if s.startswith("'unsafe-")], (path, csp)
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["form-action"] == ["'self'"]

    policy = dict(
        item.strip().split("=", 1)
        for item in response.headers.get("Permissions-Policy", "").split(",")
        if item
    )
    assert {feature: policy.get(feature) for feature in DENIED_FEATURES} == dict.fromkeys(
        DENIED_FEATURES, "()"
    ), path
    assert response.headers.get("Cross-Origin-Opener-Policy") == "same-origin", path
    if response.get("Content-Type", "").startswith("text/html"):
        assert inline_code(response.content.decode()) == [], path


@pytest.fixture
def sender_pages(client, listed, mailoutbox, django_capture_on_commit_callbacks) -> list:
    """The sender's pages, reached as a sender reaches them."""
    responses = [
        client.get(reverse("requests:home")),
        client.get(reverse("requests:home"), {"ip": LISTED_IP}),
        client.post(reverse("requests:submit"), {"email": "nope", "ip": "10.0.0.1"}),  # with errors
        client.get("/confirm/no-such-token", follow=True),
        client.get("/no-such-page"),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        submitted = client.post(reverse("requests:submit"), {"email": SENDER, "ip": LISTED_IP}, follow=True)
    responses.append(submitted)  # the status page
    confirm = client.get(link_path(confirmation_link(mailoutbox[-1])), follow=True)
    assert b"Delist IP" in confirm.content
    responses.append(confirm)
    return responses


def test_every_senders_page_carries_the_policies_and_no_inline_code(sender_pages):
    for response in sender_pages:
        assert response.status_code < 500
        assert_protected(response)


def test_the_api_health_check_and_static_files_carry_the_policies(client, listed):
    for path in [
        reverse("blocklist:api_ip", args=[LISTED_IP]),
        reverse("blocklist:api_ip", args=["not-an-ip"]),
        reverse("healthz"),
        "/static/css/portal.css",
        "/static/js/portal.js",
    ]:
        response = client.get(path)
        assert response.status_code in (200, 400, 503), path
        assert_protected(response)


def test_every_admin_page_carries_the_policies_and_no_inline_code(client, listed, mailoutbox):
    login = client.get(reverse("admin:login"))
    assert_protected(login)
    client.force_login(User.objects.create_superuser("desk", "desk@example.org", "a-long-password-1"))
    client.post(reverse("requests:submit"), {"email": SENDER, "ip": LISTED_IP})
    delist_request = DelistRequest.objects.get()
    for name, args in [
        ("admin:index", []),
        ("admin:blocklist_entry_changelist", []),
        ("admin:blocklist_entry_add", []),
        ("admin:blocklist_entry_change", [listed["range"].pk]),
        ("admin:blocklist_entry_import", []),
        ("admin:requests_app_delistrequest_changelist", []),
        ("admin:requests_app_delistrequest_change", [delist_request.pk]),
        ("admin:requests_app_reviewqueue_changelist", []),
        ("admin:requests_app_dashboard", []),
        ("admin:jsi18n", []),
    ]:
        response = client.get(reverse(name, args=args))
        assert response.status_code == 200, name
        assert_protected(response)


def test_no_template_holds_inline_script_style_or_event_handlers():
    # Emails are not served under the policy, and mail clients need inline style.
    pages = [p for p in (ROOT / "templates").rglob("*.html") if "emails" not in p.parts]
    assert pages
    found = {str(p.relative_to(ROOT)): problems for p in pages if (problems := inline_code(p.read_text()))}
    assert found == {}


def start(code: str, **env: str) -> subprocess.CompletedProcess:
    """Python in a fresh process with the production settings and this environment."""
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("DELIST_", "DJANGO_", "HSTS_", "SECRET_KEY"))
    }
    environment.update(
        {
            "DJANGO_SETTINGS_MODULE": "delist_portal.settings",
            "DEBUG": "false",
            "HTTPS": "true",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "delist.example.org",
            "PORTAL_BASE_URL": "https://delist.example.org",
            "TRUSTED_PROXY_COUNT": "1",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, *(["-c", code] if code else [])],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def deploy_check(**env: str) -> subprocess.CompletedProcess:
    return start(
        "from django.core.management import execute_from_command_line;"
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        **env,
    )


def production_settings(*names: str, **env: str) -> dict:
    result = start(
        "import json, django; django.setup(); from django.conf import settings;"
        f"print(json.dumps({{n: getattr(settings, n, None) for n in {list(names)!r}}}))",
        **env,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_the_production_settings_pass_the_deploy_checks_without_a_warning():
    result = deploy_check()
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_hsts_covers_subdomains_and_asks_for_preload_unless_told_otherwise():
    assert production_settings(
        "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD"
    ) == {
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
    }
    off = production_settings(
        "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_HSTS_PRELOAD",
        HSTS_INCLUDE_SUBDOMAINS="false",
        HSTS_PRELOAD="false",
    )
    assert off == {"SECURE_HSTS_INCLUDE_SUBDOMAINS": False, "SECURE_HSTS_PRELOAD": False}
    # Django says what that costs, so the deploy check shows the choice.
    warned = deploy_check(HSTS_INCLUDE_SUBDOMAINS="false")
    assert warned.returncode != 0 and "security.W005" in warned.stderr


@pytest.mark.parametrize("name", ["HSTS_INCLUDE_SUBDOMAINS", "HSTS_PRELOAD"])
def test_the_hsts_flags_are_strict_booleans(name):
    result = start("import django; django.setup()", **{name: "yes"})
    assert result.returncode != 0
    assert f"{name} must be 'true' or 'false'" in result.stderr


@pytest.mark.parametrize(
    ("key", "why"),
    [
        # What .env.example held before SECRET_KEY moved to secrets/secret_key: old copies exist.
        ("replace-me-with-a-generated-key", "placeholder"),
        ("change-me-to-a-long-random-string", "placeholder"),
        ("django-insecure-" + secrets.token_urlsafe(50), "starts with 'django-insecure-'"),
        (secrets.token_urlsafe(30), "shorter than 50 characters"),
        ("abcd" * 20, "fewer than 5 different characters"),
    ],
)
def test_a_guessable_secret_key_stops_start_up(key, why):
    result = start("import delist_portal.wsgi", SECRET_KEY=key)
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY" in result.stderr and why in result.stderr
    assert "secrets.token_urlsafe(50)" in result.stderr  # and says how to make a good one
    assert key not in result.stderr  # without printing the key


def test_a_weak_key_is_fine_while_debugging():
    assert production_settings("SECRET_KEY", DEBUG="true", SECRET_KEY="dev") == {"SECRET_KEY": "dev"}


def test_x_forwarded_proto_is_believed_only_with_a_trusted_proxy():
    behind = production_settings("SECURE_PROXY_SSL_HEADER", TRUSTED_PROXY_COUNT="1")
    assert behind == {"SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"]}
    direct = production_settings("SECURE_PROXY_SSL_HEADER", TRUSTED_PROXY_COUNT="0")
    assert direct == {"SECURE_PROXY_SSL_HEADER": None}


def test_without_a_trusted_proxy_a_forged_header_does_not_make_plain_http_secure():
    code = (
        "import django; django.setup(); from django.test import Client;"
        "r = Client(HTTP_HOST='delist.example.org').get('/no-such-page', HTTP_X_FORWARDED_PROTO='https');"
        "print(r.status_code, r.headers.get('Location'), r.headers.get('Strict-Transport-Security'))"
    )
    # Served directly, the claim is ignored: plain HTTP is sent to https.
    direct = start(code, TRUSTED_PROXY_COUNT="0")
    assert direct.stdout.split() == ["301", "https://delist.example.org/no-such-page", "None"], direct.stderr
    # From the proxy it is believed: the request counts as secure and gets HSTS.
    behind = start(code, TRUSTED_PROXY_COUNT="1")
    assert behind.stdout.split("\n")[-2] == "404 None max-age=31536000; includeSubDomains; preload", (
        behind.stderr
    )
