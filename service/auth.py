"""Who is calling: ``Authorization: Bearer <key>`` verified against the registry in Redis.

Every job route depends on ``CallerDep``; the admin API on ``AdminDep``. A key is looked up
by its visible id (one script: the key and its tenant's state), then its hash is compared
in constant time. Nothing is cached, so a revoked key or a disabled tenant stops working
on the next request on every API process. Failures are problems with stable types:
401 ``unauthenticated`` (no key), 401 ``invalid-key`` (unknown, wrong or revoked), 403
``tenant-disabled``, 403 ``admin-only``.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.deps import StateDep
from service.problems import Problem
from tenancy.keys import key_id_of, matches
from tenancy.models import Caller
from tenancy.registry import AUTH_SCRIPT, api_key_key, caller_from_auth_reply

_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="warden"'}
SESSION_COOKIE: Final = "warden_session"


def _invalid(detail: str) -> Problem:
    return Problem(401, "invalid-key", "The API key is not valid", detail,
                   headers={"WWW-Authenticate": 'Bearer realm="warden", error="invalid_token"'})


def bearer_key(request: Request) -> str | None:
    """The key a request carries in its Authorization header, or None."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, key = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Problem(401, "unauthenticated", "An API key is required",
                      "the Authorization header must be `Bearer <key>`", headers=_CHALLENGE)
    return key.strip()


async def verify_key(state: StateDep, key: str) -> Caller:
    """The caller a key belongs to, or the problem that refuses it."""
    key_id = key_id_of(key)
    if key_id is None:
        raise _invalid("not a Warden API key (they read wdn_<id>_<secret>)")
    assert state.aclient is not None
    script = state.extra.get("auth_script")
    if script is None:
        script = state.extra["auth_script"] = state.aclient.register_script(AUTH_SCRIPT)
    reply = await script(keys=[api_key_key(key_id)])  # type: ignore[operator]
    found = caller_from_auth_reply(reply, key_id)
    if found is None or not matches(key, found[1]):
        raise _invalid(f"no key {key_id} with this secret")
    caller, _, refusal = found
    if refusal == "revoked":
        raise _invalid(f"key {key_id} has been revoked")
    if refusal == "disabled":
        raise Problem(403, "tenant-disabled", "The tenant is disabled",
                      f"tenant {caller.tenant!r} has been disabled by an administrator")
    return caller


# Documents the scheme in OpenAPI (securitySchemes, per-operation security); the header is
# parsed here, so a wrong scheme is a clear problem rather than FastAPI's bare 403.
_BEARER: Final = HTTPBearer(auto_error=False, scheme_name="apiKey",
                            description="An API key: `Authorization: Bearer wdn_<id>_<secret>`")


async def current_caller(
    request: Request, state: StateDep,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)] = None,
) -> Caller:
    key = bearer_key(request)
    if key is None:
        raise Problem(401, "unauthenticated", "An API key is required",
                      "send `Authorization: Bearer <key>` (warden up prints the first key "
                      "and stores it in its data dir)", headers=_CHALLENGE)
    caller = await verify_key(state, key)
    request.state.caller = caller
    return caller


CallerDep = Annotated[Caller, Depends(current_caller)]


async def current_admin(caller: CallerDep) -> Caller:
    if not caller.admin:
        raise Problem(403, "admin-only", "This needs an admin key",
                      f"key {caller.key_id} is not an admin key")
    return caller


AdminDep = Annotated[Caller, Depends(current_admin)]
