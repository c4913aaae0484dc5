"""Mail printed to the terminal (EMAIL_URL=consolemail://, the embedded default), framed so a
person finds the confirmation link at a glance among the log lines.

Django's console backend writes the raw MIME message to sys.stdout: quoted-printable text and
HTML parts in which the link may be wrapped, and inside a Celery worker sys.stdout is a proxy
that logs each line as a WARNING. This one writes the text part as the recipient reads it, in one
piece, to the process's real standard output.
"""

from __future__ import annotations

import sys

from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.backends import console

RULE = "=" * 72


def framed(message: EmailMessage) -> str:
    """The mail as printed: a banner with its envelope, the text body, and a closing banner."""
    headers = [
        f"To: {', '.join(message.to)}",
        f"From: {message.from_email}",
        f"Subject: {message.subject}",
    ]
    alternatives = [mimetype for _content, mimetype in getattr(message, "alternatives", [])]
    closing = "END OF MAIL" + (f" (also sent as {', '.join(alternatives)})" if alternatives else "")
    body = message.body.strip("\n")
    return "\n".join(["", RULE, "MAIL", *headers, RULE, "", body, "", RULE, closing, RULE, ""]) + "\n"


class EmailBackend(console.EmailBackend):
    def __init__(self, *args, **kwargs):
        # The real standard output: Celery's redirected sys.stdout would make each line a log line.
        kwargs.setdefault("stream", sys.__stdout__ or sys.stdout)
        super().__init__(*args, **kwargs)

    def write_message(self, message: EmailMessage | EmailMultiAlternatives) -> None:
        # One write per mail, so lines of other processes on the same terminal never land inside it.
        self.stream.write(framed(message))
