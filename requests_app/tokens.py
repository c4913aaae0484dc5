"""Confirmation tokens: 128 random bits in the link, only their SHA-256 in the database."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_BYTES = 16  # 128 bits


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def looks_like_token(token: str) -> bool:
    # token_urlsafe(16) is 22 characters of the URL-safe alphabet; anything else is not ours.
    return len(token) == 22 and all(c.isalnum() or c in "-_" for c in token)
