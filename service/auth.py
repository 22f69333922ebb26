"""Who is calling: ``Authorization: Bearer <key>`` verified against the registry in Redis.

Every job route depends on ``CallerDep``; the admin API on ``AdminDep``. A key is looked up
by its visible id (one script: the key and its tenant's state), then its hash is compared
in constant time. Nothing is cached, so a revoked key or a disabled tenant stops working
on the next request on every API process. Failures are problems with stable types:
401 ``unauthenticated`` (no key), 401 ``invalid-key`` (unknown, wrong or revoked), 403
``tenant-disabled``, 403 ``admin-only``.
"""

from __future__ import annotations

import time
from typing import Annotated, Final

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.deps import StateDep
from service.http_errors import Problem, quota_exceeded
from service.state import AppState
from tenancy.keys import digest, key_id_of, matches
from tenancy.limits import RateState, rate_state
from tenancy.models import Caller
from tenancy.quotas import Quotas
from tenancy.registry import AUTH_SCRIPT, auth_keys, auth_reply_tenant, caller_from_auth_reply
from tenancy.usage import utc_day

_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="warden"'}
SESSION_COOKIE: Final = "warden_session"
_KEY_TENANTS_MAX: Final = 10_000  # key id → tenant, remembered (a key never moves)


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


async def verify_key(state: AppState, key: str) -> Caller:
    """The caller a key belongs to (one request charged to its read rate: the dashboard's
    sign-in), or the problem that refuses it."""
    caller, rate = await check_key(state, key, "reads", charge=True)
    if not rate.allowed:
        raise rate_exceeded(rate)
    return caller


async def check_key(state: AppState, key: str, policy: str = "reads",
                    charge: bool = True) -> tuple[Caller, RateState]:
    """The caller a key belongs to and its ``policy`` rate after this request (charged one
    request unless ``charge`` is false), or the problem that refuses it."""
    key_id = key_id_of(key)
    if key_id is None:
        raise _invalid("not a Warden API key (they read wdn_<id>_<secret>)")
    assert state.aclient is not None
    script = state.extra.get("auth_script")
    if script is None:
        script = state.extra["auth_script"] = state.aclient.register_script(AUTH_SCRIPT)
    day = utc_day(time.time()).isoformat()
    tenants = state.extra.setdefault("key_tenants", {})
    assert isinstance(tenants, dict)
    tenant = tenants.get(key_id, "")  # a key's tenant never changes: its keys are declared
    for _ in range(2):
        reply = await script(  # type: ignore[operator]
            keys=auth_keys(key_id, tenant, policy, day),
            args=[digest(key), policy, "1" if charge else "0", day, state.usage_retention_s])
        answered = auth_reply_tenant(reply)
        if answered is None:
            break
        tenant = answered
    else:
        raise RuntimeError(f"key {key_id}: its tenant's keys could not be declared")
    if reply and tenant:
        if len(tenants) >= _KEY_TENANTS_MAX:
            tenants.clear()
        tenants[key_id] = tenant
    found = caller_from_auth_reply(reply, key_id)
    if found is None or not matches(key, found[1]):
        raise _invalid(f"no key {key_id} with this secret")
    caller, _, refusal = found
    if refusal == "revoked":
        raise _invalid(f"key {key_id} has been revoked")
    if refusal == "disabled":
        raise Problem(403, "tenant-disabled", "The tenant is disabled",
                      f"tenant {caller.tenant!r} has been disabled by an administrator")
    return caller, _rate(caller, policy, reply[6:])


def submission_rate(quotas: Quotas, remaining: int, reset_s: float) -> RateState:
    """The submission rate an enqueue reported (its script charges it, with the batch)."""
    return rate_state("submissions", "submissions_per_minute", quotas.submissions_per_minute,
                      quotas.submission_burst, ["1", str(remaining), str(reset_s), "0"])


def _rate(caller: Caller, policy: str, reply: list[object]) -> RateState:
    q = caller.quotas
    if policy == "submissions":
        return rate_state(policy, "submissions_per_minute", q.submissions_per_minute,
                          q.submission_burst, reply)
    return rate_state(policy, "reads_per_minute", q.reads_per_minute, q.read_burst, reply)


def rate_exceeded(rate: RateState, used: int | None = None) -> Problem:
    """429 for a request over a rate quota (``used``: requests in the refused batch)."""
    per_minute = rate.burst * 60 // rate.window_s
    return quota_exceeded(
        rate.quota, rate.burst, rate.burst - rate.remaining,
        f"{rate.policy} are limited to a burst of {rate.burst}, refilled at about "
        f"{per_minute} per minute" + (f"; this request asked for {used}" if used else ""),
        retry_after_s=rate.retry_s)


def remember_rate(request: Request, rate: RateState | None) -> None:
    """The rate the RateLimit headers of this response report (service/ratelimit_headers.py)."""
    if rate is not None:
        request.state.rate = rate


# Documents the scheme in OpenAPI (securitySchemes, per-operation security); the header is
# parsed here, so a wrong scheme is a clear problem rather than FastAPI's bare 403.
_BEARER: Final = HTTPBearer(auto_error=False, scheme_name="apiKey",
                            description="An API key: `Authorization: Bearer wdn_<id>_<secret>`")


async def _authenticate(request: Request, state: AppState, policy: str, charge: bool) -> Caller:
    key = bearer_key(request)
    if key is None:
        raise Problem(401, "unauthenticated", "An API key is required",
                      "send `Authorization: Bearer <key>` (warden up prints the first key "
                      "and stores it in its data dir)", headers=_CHALLENGE)
    caller, rate = await check_key(state, key, policy, charge)
    request.state.caller = caller
    remember_rate(request, rate)
    if not rate.allowed:
        raise rate_exceeded(rate)
    return caller


async def current_caller(
    request: Request, state: StateDep,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)] = None,
) -> Caller:
    """Every route but submissions: one request charged to the tenant's read rate."""
    return await _authenticate(request, state, "reads", charge=True)


async def current_submitter(
    request: Request, state: StateDep,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)] = None,
) -> Caller:
    """Submissions: charged to the submission rate by the enqueue, with the other quotas
    (a batch of N is N submissions, admitted or refused whole); here only authenticated."""
    return await _authenticate(request, state, "submissions", charge=False)


SubmitterDep = Annotated[Caller, Depends(current_submitter)]
CallerDep = Annotated[Caller, Depends(current_caller)]


async def current_admin(caller: CallerDep) -> Caller:
    if not caller.admin:
        raise Problem(403, "admin-only", "This needs an admin key",
                      f"key {caller.key_id} is not an admin key")
    return caller


AdminDep = Annotated[Caller, Depends(current_admin)]
