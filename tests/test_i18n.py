"""English and Swedish: every string a sender or the desk reads is marked, and the Swedish
catalogue covers it.

The catalogue holds what a sender sees (the pages and mails of requests_app, their form errors
and the request states) and what the abuse desk reads in the admin beyond Django's own strings
(our admin modules and templates, the model names and fields they show). To bring it up to date
after changing such a string:

    UPDATE_CATALOGUE=1 ./dev test tests/test_i18n.py   # merges new msgids into locale/sv/.../django.po
    (write the Swedish for the entries it lists as empty, then)
    msgfmt --check-format -o locale/sv/LC_MESSAGES/django.mo locale/sv/LC_MESSAGES/django.po

Both need GNU gettext (apt-get install gettext).
"""

from __future__ import annotations

import ast
import gettext
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.template.base import Lexer, TokenType
from django.urls import reverse
from django.utils import translation
from django.utils.functional import Promise

from requests_app import forms, outbox, services
from requests_app.models import DelistRequest, State
from tests.conftest import LISTED_IP, SENDER, confirmation_link, link_path, press_delist_button

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "locale" / "sv" / "LC_MESSAGES" / "django.po"
COMPILED = CATALOGUE.with_suffix(".mo")
# What a sender sees; makemessages reads exactly these.
SENDER_FACING = [
    "templates/base.html",
    "templates/404.html",
    "templates/requests_app",
    "templates/emails",
    "requests_app/forms.py",
    "requests_app/mailboxes.py",  # the email field's errors
    "requests_app/views.py",
    "requests_app/timeline.py",
    "requests_app/emails.py",
    "requests_app/templatetags",
    "requests_app/models.py",  # the request states on the status page
    "blocklist/ip.py",  # the IP field's errors
    "blocklist/ip_paste.py",  # ... and those of a pasted bounce
]
# What the desk reads in the admin, Django's own strings aside (its catalogue has those).
ADMIN_FACING = [
    "templates/admin",
    "requests_app/admin.py",
    "requests_app/apps.py",
    "requests_app/dashboard.py",
    "blocklist/admin.py",
    "blocklist/apps.py",
    "blocklist/models.py",
    "webhooks/admin.py",
    "webhooks/apps.py",
    "webhooks/forms.py",
    "webhooks/models.py",
    "portal_lib/big_lists.py",  # the filters' blank value
]
CHECKED_TEMPLATES = [
    "templates/base.html",
    "templates/404.html",
    "templates/requests_app",
    "templates/emails",
    "templates/admin",
]
HOW_TO_UPDATE = (
    "Run `UPDATE_CATALOGUE=1 ./dev test tests/test_i18n.py` to merge them into "
    f"{CATALOGUE.relative_to(ROOT)}, write the Swedish msgstr, then compile it: "
    f"`msgfmt --check-format -o {COMPILED.relative_to(ROOT)} {CATALOGUE.relative_to(ROOT)}`."
)


# --- the catalogue --------------------------------------------------------------------------


@dataclass
class Message:
    msgid: str
    msgctxt: str | None = None
    msgstr: str = ""
    flags: set[str] = field(default_factory=set)
    references: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str | None, str]:
        return self.msgctxt, self.msgid

    def __str__(self) -> str:
        where = f"  ({', '.join(self.references)})" if self.references else ""
        context = f"[{self.msgctxt}] " if self.msgctxt else ""
        return f"{context}{self.msgid!r}{where}"


def read_po(path: Path) -> dict[tuple[str | None, str], Message]:
    """The entries of a .po file, header and obsolete (#~) entries left out."""
    messages = {}
    for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
        fields: dict[str, str] = {}
        flags, references, current = set(), [], None
        for line in block.splitlines():
            if line.startswith("#,"):
                flags |= {flag.strip() for flag in line[2:].split(",")}
            elif line.startswith("#:"):
                references += line[2:].split()
            elif line.startswith("#"):
                continue
            elif line.startswith('"'):
                fields[current] += ast.literal_eval(line)
            else:
                current, _sep, value = line.partition(" ")
                fields[current] = ast.literal_eval(value)
        if fields.get("msgid"):
            msgstr = fields.get("msgstr", "")
            if "msgid_plural" in fields:
                # Translated only when every plural form is (msgstr[0], msgstr[1], ...).
                forms = [value for name, value in fields.items() if name.startswith("msgstr[")]
                msgstr = forms[0] if forms and all(form.strip() for form in forms) else ""
            message = Message(fields["msgid"], fields.get("msgctxt"), msgstr)
            message.flags, message.references = flags, references
            messages[message.key] = message
    return messages


def _need_gettext() -> None:
    if shutil.which("xgettext") and shutil.which("msgfmt"):
        return
    message = "GNU gettext is missing (apt-get install gettext): the catalogue cannot be checked"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def fresh_catalogue(workdir: Path) -> Path:
    """What makemessages finds today in the sender- and desk-facing sources, as a .po with empty
    msgstr."""
    for source in SENDER_FACING + ADMIN_FACING:
        target = workdir / source
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / source, target)
    saved_locale_paths, saved_cwd = settings.LOCALE_PATHS, os.getcwd()
    # makemessages writes into the first of LOCALE_PATHS: keep it inside the copy.
    settings.LOCALE_PATHS = [str(workdir / "locale")]
    try:
        os.chdir(workdir)
        call_command("makemessages", locale=["sv"], add_location="file", no_obsolete=True, verbosity=0)
    finally:
        os.chdir(saved_cwd)
        settings.LOCALE_PATHS = saved_locale_paths
    return workdir / "locale" / "sv" / "LC_MESSAGES" / "django.po"


def update_catalogue(fresh_po: Path) -> None:
    """Merges the msgids found into the committed catalogue: new ones empty, gone ones out."""
    if not CATALOGUE.exists():
        CATALOGUE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(fresh_po, CATALOGUE)
    merge = ["msgmerge", "--quiet", "--no-fuzzy-matching", "--add-location=file", "--backup=none"]
    subprocess.run([*merge, "--update", str(CATALOGUE), str(fresh_po)], check=True)
    subprocess.run(["msgattrib", "--no-obsolete", "-o", str(CATALOGUE), str(CATALOGUE)], check=True)


@pytest.fixture(scope="module")
def fresh_po(tmp_path_factory) -> Path:
    _need_gettext()
    return fresh_catalogue(tmp_path_factory.mktemp("makemessages"))


@pytest.fixture(scope="module")
def fresh(fresh_po) -> dict:
    return read_po(fresh_po)


@pytest.fixture(scope="module")
def committed(request) -> dict:
    if os.environ.get("UPDATE_CATALOGUE"):
        update_catalogue(request.getfixturevalue("fresh_po"))
    assert CATALOGUE.exists(), f"{CATALOGUE.relative_to(ROOT)} is missing"
    return read_po(CATALOGUE)


def _listing(messages) -> str:
    return "\n".join(f"  {message}" for message in messages)


def test_the_swedish_catalogue_has_every_string_a_sender_reads(fresh, committed):
    missing = [message for key, message in fresh.items() if key not in committed]
    assert not missing, f"The Swedish catalogue lacks {len(missing)} string(s):\n{_listing(missing)}\n" + (
        HOW_TO_UPDATE
    )


def test_the_swedish_catalogue_holds_no_stale_strings(fresh, committed):
    stale = [message for key, message in committed.items() if key not in fresh]
    assert not stale, f"No source uses these any more:\n{_listing(stale)}\n{HOW_TO_UPDATE}"


def test_every_swedish_entry_is_translated_and_none_is_fuzzy(committed):
    fuzzy = [message for message in committed.values() if "fuzzy" in message.flags]
    empty = [message for message in committed.values() if not message.msgstr.strip()]
    assert not fuzzy, f"Fuzzy entries (check the Swedish, then drop the flag):\n{_listing(fuzzy)}"
    assert not empty, f"Entries without Swedish:\n{_listing(empty)}\n{HOW_TO_UPDATE}"


def test_the_compiled_catalogue_matches_the_po_file(tmp_path, committed):
    _need_gettext()
    compiled = tmp_path / "django.mo"
    # --check-format: a Swedish string must keep the %(name)s placeholders of its English one.
    result = subprocess.run(
        ["msgfmt", "--check-format", "-o", str(compiled), str(CATALOGUE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert COMPILED.exists(), f"{COMPILED.relative_to(ROOT)} is missing. " + HOW_TO_UPDATE
    with compiled.open("rb") as expected, COMPILED.open("rb") as shipped:
        assert gettext.GNUTranslations(shipped)._catalog == gettext.GNUTranslations(expected)._catalog, (
            "django.mo is older than django.po. " + HOW_TO_UPDATE
        )


# --- nothing visible left unmarked ----------------------------------------------------------

# Stands for a template tag or variable: not a letter, so it never counts as visible text.
PLACEHOLDER = "\ue000"
VISIBLE_ATTRIBUTES = {"alt", "title", "placeholder", "aria-label", "value", "label"}
LETTER = re.compile(r"[^\W\d_]")


def _untranslated_source(text: str) -> str:
    """The template with tags, variables, comments and translated blocks replaced by PLACEHOLDER."""
    kept, depth = [], 0
    for token in Lexer(text).tokenize():
        if token.token_type == TokenType.BLOCK:
            name = token.contents.split()[0] if token.contents else ""
            if name in ("blocktranslate", "blocktrans", "comment"):
                depth += 1
            elif name in ("endblocktranslate", "endblocktrans", "endcomment"):
                depth -= 1
            kept.append(PLACEHOLDER)
        elif token.token_type == TokenType.TEXT and depth == 0:
            kept.append(token.contents)
        else:
            kept.append(PLACEHOLDER)
    return "".join(kept)


class _VisibleText(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        if tag == "input" and ("type", "hidden") in attrs:
            return  # a hidden field's value is for the server (an action's name), never read
        for name, value in attrs:
            if name in VISIBLE_ATTRIBUTES and value and LETTER.search(value.replace(PLACEHOLDER, "")):
                self.found.append(f'<{tag} {name}="{value}">')

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip and LETTER.search(data.replace(PLACEHOLDER, "")):
            self.found.append(data.strip())


def untranslated_text(path: Path) -> list[str]:
    source = _untranslated_source(path.read_text(encoding="utf-8"))
    if path.suffix == ".html":
        parser = _VisibleText()
        parser.feed(source)
        parser.close()
        return parser.found
    return [line.strip() for line in source.splitlines() if LETTER.search(line.replace(PLACEHOLDER, ""))]


def _templates() -> list[Path]:
    paths = []
    for name in CHECKED_TEMPLATES:
        path = ROOT / name
        paths += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return paths


@pytest.mark.parametrize("path", _templates(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_template_shows_no_text_outside_translate_tags(path):
    found = untranslated_text(path)
    assert not found, (
        f"{path.relative_to(ROOT)} shows text not marked for translation; "
        f"wrap it in {{% translate %}} or {{% blocktranslate %}}:\n" + "\n".join(f"  {t!r}" for t in found)
    )


def test_the_template_check_catches_unmarked_text(tmp_path):
    page = tmp_path / "page.html"
    page.write_text(
        '{% load i18n %}<p title="Hello">{% translate "Fine" %} {{ ip }}</p>\n'
        "{% blocktranslate %}Also fine {{ x }}{% endblocktranslate %}<button>Send</button>"
    )
    assert untranslated_text(page) == ['<p title="Hello">', "Send"]
    mail = tmp_path / "mail.txt"
    mail.write_text('{% load i18n %}{% translate "Fine" %}\n{{ url }}\n-- \nRegards\n')
    assert untranslated_text(mail) == ["Regards"]


@pytest.mark.parametrize("form_class", [forms.CheckForm, forms.DelistRequestForm])
def test_every_label_help_text_and_error_of_the_forms_is_marked(form_class):
    for name, form_field in form_class.base_fields.items():
        texts = {"label": form_field.label, "help_text": form_field.help_text or None}
        texts |= {f"error {code}": message for code, message in form_field.error_messages.items()}
        for what, text in texts.items():
            if text is not None:
                where = f"{form_class.__name__}.{name} {what}"
                assert isinstance(text, Promise), f"{where} {text!r} is not marked for translation"


# --- the language a sender reads ------------------------------------------------------------


def test_the_browsers_language_is_honoured(client, db):
    swedish = client.get("/", headers={"accept-language": "sv-SE,sv;q=0.9,en;q=0.5"})
    assert '<html lang="sv">' in swedish.content.decode()
    assert "Begär avlistning" in swedish.content.decode()
    english = client.get("/", headers={"accept-language": "de-DE,en;q=0.5"})
    assert '<html lang="en">' in english.content.decode()
    assert "Request delisting" in english.content.decode()


def test_the_language_switch_works_without_javascript_and_is_remembered(client, db):
    page = client.get("/?ip=5.61.14.7").content.decode()
    assert f'action="{reverse("set_language")}"' in page
    assert 'name="language" value="sv"' in page and 'name="next" value="/?ip=5.61.14.7"' in page

    response = client.post(reverse("set_language"), {"language": "sv", "next": "/?ip=5.61.14.7"})
    assert response.status_code == 302 and response["Location"] == "/?ip=5.61.14.7"
    cookie = response.cookies[settings.LANGUAGE_COOKIE_NAME]
    assert cookie.value == "sv" and int(cookie["max-age"]) >= 30 * 24 * 3600
    # The cookie wins over the browser's language from now on.
    again = client.get("/", headers={"accept-language": "en"}).content.decode()
    assert '<html lang="sv">' in again and 'aria-current="true">Svenska' in again


def test_a_form_error_reads_in_swedish(client, listed):
    data = {"email": "inte-en-adress", "ip": "10.0.0.1"}
    response = client.post(reverse("requests:submit"), data, headers={"accept-language": "sv"})
    html = response.content.decode()
    assert response.status_code == 400
    assert "Fyll i en giltig e-postadress." in html  # Django's own catalogue
    assert "10.0.0.1 är inte en publik adress" in html  # ours
    assert "Det finns ett problem" in html


def test_dates_on_the_status_page_are_in_the_readers_language_and_say_utc(
    client, listed, settings, mailoutbox, django_capture_on_commit_callbacks
):
    settings.DELIST_PROPAGATION_DELAY = 1500
    sv = {"accept-language": "sv"}
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("requests:submit"), {"email": SENDER, "ip": LISTED_IP}, headers=sv)
    with django_capture_on_commit_callbacks(execute=True):
        status = press_delist_button(client, link_path(confirmation_link(mailoutbox[-1])), headers=sv)[
            "Location"
        ]
    request = DelistRequest.objects.get()
    page = client.get(status, headers=sv).content.decode()
    months = "januari februari mars april maj juni juli augusti september oktober november december"
    swedish_month = months.split()[request.effective_at.month - 1]
    assert f"kl. {request.effective_at:%H:%M} UTC den" in page and swedish_month in page
    assert "om ungefär 25" in page and "minuter" in page


def test_a_request_made_in_swedish_gets_swedish_mail_also_when_the_sweep_sends_it_later(
    client, listed, settings, mailoutbox, django_capture_on_commit_callbacks
):
    settings.DELIST_PROPAGATION_DELAY = 60
    sv = {"accept-language": "sv-SE,sv;q=0.9"}
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("requests:submit"), {"email": SENDER, "ip": LISTED_IP}, headers=sv)
    request = DelistRequest.objects.get()
    assert request.language == "sv"
    confirmation = mailoutbox[-1]
    assert confirmation.subject == f"Bekräfta avlistning av {LISTED_IP}"
    assert "Öppna länken" in confirmation.body and "UTC" in confirmation.body
    assert "Avlista IP" in confirmation.body

    with django_capture_on_commit_callbacks(execute=True):
        press_delist_button(client, link_path(confirmation_link(confirmation)))
    request.refresh_from_db()
    assert request.state == State.APPROVED

    # The worker runs in no particular language: the request's own decides.
    with translation.override("en"):
        services.sweep(now=request.effective_at)
        outbox.mails_send_due()
    removed = mailoutbox[-1]
    assert removed.subject == f"{LISTED_IP} har tagits bort från vår blockeringslista"
    assert "Avlistningen är gratis" in removed.body
    html, _type = removed.alternatives[0]
    assert 'lang="sv"' in html and "togs bort från vår blockeringslista" in html
