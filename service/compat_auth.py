"""The caller of a compatibility API (Judge0's, Piston's): a Warden API key carried the way
that API's clients send it, checked and charged as on Warden's own routes, with refusals
raised in the compatibility API's own error shape."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from service.auth import check_key, rate_exceeded, remember_rate
from service.http_errors import Problem
from service.state import AppState
from tenancy.models import Caller

# (status, message, headers) -> the exception the compatibility API answers
ErrorFactory = Callable[[int, str, dict[str, str]], Exception]


async def compat_caller(request: Request, state: AppState, key: str | None, policy: str,
                        charge: bool, error: ErrorFactory, missing: str) -> Caller:
    """``policy``: the rate the request counts against ("reads", or "submissions" which
    the enqueue charges); ``missing``: what to say when no key was sent."""
    try:
        if not key or not key.strip():
            raise error(401, missing, {})
        caller, rate = await check_key(state, key.strip(), policy, charge)
    except Problem as problem:
        raise error(problem.status, problem.detail or problem.title, {}) from None
    remember_rate(request, rate)
    if not rate.allowed:
        limited = rate_exceeded(rate)
        raise error(429, limited.detail or "too many requests", limited.headers or {})
    return caller
