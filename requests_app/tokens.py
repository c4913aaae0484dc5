"""Confirmation links: the request's status key and 128 random bits; only their SHA-256 is stored.

The link reads `<status key>.<secret>`. The status key finds the request even after the hash is
blanked (it is blanked once the request leaves `pending`), so an old link still gets the page
that says why it no longer works; the key alone confirms nothing, and it is in every mail anyway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from django.conf import settings

TOKEN_BYTES = 16  # 128 bits
# token_urlsafe(16) is 22 characters of the URL-safe alphabet, like the status key.
_PART_LENGTH = 22


def new_nonce() -> str:
    return secrets.token_hex(16)


def confirmation_secret(nonce: str) -> str:
    """The secret of a confirmation mail's link, derived from the mail's nonce and SECRET_KEY.

    Every attempt to send that mail carries the same link, while the database holds only the
    nonce (useless without the key) and the secret's hash.
    """
    digest = hmac.new(
        settings.SECRET_KEY.encode(), f"delist-confirmation:{nonce}".encode(), "sha256"
    ).digest()
    return base64.urlsafe_b64encode(digest[:TOKEN_BYTES]).decode().rstrip("=")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_key(value: str) -> bool:
    """A status key or a token as we make them; anything else never reaches the database."""
    return len(value) == _PART_LENGTH and value.isascii() and all(c.isalnum() or c in "-_" for c in value)


def link_token(status_key: str, secret: str) -> str:
    return f"{status_key}.{secret}"


def split_link_token(value: str) -> tuple[str, str] | None:
    """(status key, secret) of a link's token, or None when it is not one of ours."""
    status_key, dot, secret = value.partition(".")
    if dot and looks_like_key(status_key) and looks_like_key(secret):
        return status_key, secret
    return None
