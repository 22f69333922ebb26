"""RFC 9457 problem+json errors, one stable ``type`` per kind of error."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

TYPE_BASE = "https://warden.dev/problems/"
MEDIA_TYPE = "application/problem+json"


class Problem(Exception):  # noqa: N818 - named after RFC 9457
    def __init__(
        self, status: int, kind: str, title: str, detail: str | None = None,
        headers: dict[str, str] | None = None, **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status, self.kind, self.title, self.detail = status, kind, title, detail
        self.headers = headers
        self.extra = extra


def problem_response(
    status: int, kind: str, title: str, detail: str | None = None,
    headers: dict[str, str] | None = None, **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": TYPE_BASE + kind, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


async def on_problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(
        exc.status, exc.kind, exc.title, exc.detail, exc.headers, **exc.extra
    )


async def on_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    return problem_response(
        422, "validation-error", "The request is invalid",
        "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors), errors=errors,
    )


async def on_http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    headers = dict(exc.headers) if exc.headers else None
    return problem_response(exc.status_code, kind, str(exc.detail), headers=headers)


async def on_redis_down(_: Request, exc: Exception) -> JSONResponse:
    """Redis unreachable (restarting, loading its AOF): a retryable 503, not a 500."""
    return problem_response(
        503, "store-unavailable", "The job store is unavailable", "try again shortly",
        headers={"Retry-After": "1"},
    )


async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
    return problem_response(500, "internal-error", "Internal error", "logged on the server")
