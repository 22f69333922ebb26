"""Dashboard sessions and CSRF tokens, kept in Redis so every API process shares them.

Signing in with an API key creates ``warden:session:<id>``, a hash (key_id, tenant, admin,
csrf, created_at) that expires 8 h later; the browser holds only a random token in the
``warden_session`` cookie. ``<id>`` is the SHA-256 of that token: as with API keys, what
Redis holds is not a credential a reader could replay. The API key itself is never kept.

CSRF: every form posts a token. A signed-in form carries the session's own random token;
the sign-in form, which has no session yet, carries HMAC(secret, nonce) where the nonce is
in a cookie of its own (a signed double submit: a cookie planted by a sibling site cannot
be paired with a token without the secret, kept in Redis). The cookies are SameSite=Strict
as well, so a cross-site POST arrives without them in the first place.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Final

import redis.asyncio as aioredis
from starlette.concurrency import run_in_threadpool

from service.state import AppState
from tenancy.models import Caller, KeyInfo, TenantInfo
from tenancy.registry import TenantRegistry

PREFIX: Final = "warden:session:"
SIGNING_KEY_NAME: Final = "warden:dashboard:login-secret"  # Redis key of the signing secret
TTL_S: Final = 8 * 3600
LOGIN_COOKIE: Final = "warden_login"
LOGIN_TTL_S: Final = 3600  # a sign-in form older than this must be reloaded
_TOKEN: Final = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def well_formed(token: str | None) -> bool:
    """A cookie value that could be one of ours (anything else is not looked up at all)."""
    return token is not None and _TOKEN.fullmatch(token) is not None


def session_key(token: str) -> str:
    return PREFIX + hashlib.sha256(token.encode()).hexdigest()


def same(expected: str, given: object) -> bool:
    """A submitted token equals the expected one (constant time; a non-text field is not)."""
    return isinstance(given, str) and hmac.compare_digest(expected.encode(), given.encode())


@dataclass(frozen=True)
class Session:
    token: str  # the cookie's value
    key_id: str
    tenant: str
    admin: bool
    csrf: str


async def create(client: aioredis.Redis, caller: Caller) -> Session:
    """A new session for a verified caller: a fresh token every time (no fixation)."""
    session = Session(new_token(), caller.key_id, caller.tenant, caller.admin, new_token())
    async with client.pipeline(transaction=True) as pipe:
        pipe.hset(session_key(session.token), mapping={
            "key_id": session.key_id, "tenant": session.tenant,
            "admin": "1" if session.admin else "0", "csrf": session.csrf,
            "created_at": repr(time.time()),
        })
        pipe.expire(session_key(session.token), TTL_S)
        await pipe.execute()
    return session


async def load(client: aioredis.Redis, token: str | None) -> Session | None:
    """The session a cookie names, or None (unknown, expired, malformed)."""
    if token is None or not well_formed(token):
        return None
    fields: dict[bytes, bytes] = await client.hgetall(  # type: ignore[assignment]
        session_key(token))
    try:
        return Session(token, fields[b"key_id"].decode(), fields[b"tenant"].decode(),
                       fields[b"admin"] == b"1", fields[b"csrf"].decode())
    except KeyError:  # gone (expired, signed out) or written by something else
        return None


async def delete(client: aioredis.Redis, token: str) -> None:
    if well_formed(token):
        await client.delete(session_key(token))


def _standing(registry: TenantRegistry, session: Session
              ) -> tuple[KeyInfo | None, TenantInfo | None]:
    key = registry.get_key(session.key_id)
    return key, registry.get_tenant(session.tenant)


async def current(state: AppState, token: str | None) -> Session | None:
    """The session, if its key is still valid and its tenant enabled: checked on every
    request, so a revocation or a disabled tenant signs the browser out at once."""
    assert state.aclient is not None
    session = await load(state.aclient, token)
    if session is None:
        return None
    key, tenant = await run_in_threadpool(_standing, state.tenants, session)
    if (key is None or key.revoked_at is not None or key.tenant != session.tenant
            or tenant is None or tenant.disabled):
        await delete(state.aclient, session.token)
        return None
    if session.admin and not key.admin:
        return Session(session.token, session.key_id, session.tenant, False, session.csrf)
    return session


async def login_secret(client: aioredis.Redis) -> bytes:
    """The key that signs sign-in form tokens: made once, shared by every API process."""
    secret = await client.get(SIGNING_KEY_NAME)
    if secret is None:
        await client.set(SIGNING_KEY_NAME, secrets.token_hex(32), nx=True)
        secret = await client.get(SIGNING_KEY_NAME)  # whoever set it first
        assert secret is not None
    return secret if isinstance(secret, bytes) else secret.encode()


def login_token(secret: bytes, nonce: str) -> str:
    """The CSRF token of a sign-in form whose browser holds ``nonce`` in its cookie."""
    return hmac.new(secret, b"login:" + nonce.encode(), hashlib.sha256).hexdigest()
