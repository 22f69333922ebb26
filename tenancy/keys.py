"""API keys: high-entropy secrets with a visible, non-secret id; only a hash is stored.

A key reads ``wdn_<id>_<secret>``: ``wdn_<id>`` names the key in listings, logs and the
dashboard (it proves nothing); the secret is 256 random bits. The store keeps SHA-256 of
the whole key: a slow password hash buys nothing for a secret no one can guess, and a fast
one keeps authentication off the request's critical path. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Final

PREFIX: Final = "wdn_"
KEY_ID_PATTERN: Final = r"^wdn_[0-9a-f]{12}$"
_KEY: Final = re.compile(r"^(wdn_[0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class NewKey:
    key_id: str  # visible: "wdn_3f9a1c2b7e4d"
    secret: str  # the whole key, shown once: "wdn_3f9a1c2b7e4d_<43 chars>"
    digest: str  # what the store keeps


def new_key() -> NewKey:
    key_id = PREFIX + secrets.token_hex(6)
    secret = f"{key_id}_{secrets.token_urlsafe(32)}"
    return NewKey(key_id, secret, digest(secret))


def key_from_secret(secret: str) -> NewKey:
    """A key an operator generated (``warden`` keys only: ValueError otherwise)."""
    key_id = key_id_of(secret)
    if key_id is None:
        raise ValueError("not a Warden API key (they read wdn_<id>_<secret>)")
    return NewKey(key_id, secret, digest(secret))


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_id_of(secret: str) -> str | None:
    """The visible id of a well-formed key, or None (not a Warden key at all)."""
    match = _KEY.fullmatch(secret)
    return match.group(1) if match else None


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(secret), stored_digest)
