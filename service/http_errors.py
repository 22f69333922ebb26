"""RFC 9457 problem+json errors, one stable ``type`` per kind of error."""

from __future__ import annotations

import json
import logging
import math
from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from judge.problem import INVALID_PROBLEM, INVALID_SUBMISSION
from sandboxes.schema import FILE_INSIDE_FILE, FILES_TOO_LARGE, error_message

log = logging.getLogger(__name__)

TYPE_BASE = "https://warden.dev/problems/"
MEDIA_TYPE = "application/problem+json"


class FieldError(BaseModel):
    """One invalid input: where it is and what is wrong with it."""

    loc: list[str] = Field(description="Path to the input: `body`, `query` or `path`, then "
                                       "field names and list indexes")
    msg: str


class ProblemDetails(BaseModel):
    """The body of every error answer (RFC 9457), documented once in the OpenAPI schema."""

    model_config = ConfigDict(extra="allow", title="Problem")

    type: str = Field(description="Stable URI naming the kind of error: branch on this",
                      examples=[TYPE_BASE + "job-not-found"])
    title: str = Field(description="Short human summary of the kind of error")
    status: int = Field(ge=400, le=599, description="The HTTP status code")
    detail: str | None = Field(default=None, description="What went wrong in this request")
    errors: list[FieldError] | None = Field(
        default=None, description="Validation errors: every invalid input")
    index: int | None = Field(
        default=None, ge=0, description="Batches: the index of the job that was refused")


class Problem(Exception):  # noqa: N818 - named after RFC 9457
    def __init__(
        self, status: int, kind: str, title: str, detail: str | None = None,
        headers: dict[str, str] | None = None, **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status, self.kind, self.title, self.detail = status, kind, title, detail
        self.headers = headers
        self.extra = extra


def quota_exceeded(quota: str, limit: float, used: float, detail: str,
                   retry_after_s: float | None = None, status: int = 429) -> Problem:
    """A tenant over one of its quotas: the type names the quota (``.../quota/<name>``), the
    body says the limit and the current use; 429 with ``Retry-After`` when waiting helps,
    403 when it will not. ``violated-policies`` as in IANA's quota-exceeded problem type."""
    headers = None if retry_after_s is None else {
        "Retry-After": str(max(1, math.ceil(retry_after_s)))}
    return Problem(status, f"quota/{quota}", f"Over the {quota.replace('_', ' ')} quota",
                   detail, headers=headers, quota=quota, limit=limit, used=used,
                   **{"violated-policies": [quota]})


def problem_body(
    status: int, kind: str, title: str, detail: str | None = None, **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": TYPE_BASE + kind, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return body


def problem_response(
    status: int, kind: str, title: str, detail: str | None = None,
    headers: dict[str, str] | None = None, **extra: Any,
) -> JSONResponse:
    body = problem_body(status, kind, title, detail, **extra)
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def problem_bytes(status: int, kind: str, title: str, detail: str | None = None) -> bytes:
    """A problem body for code that answers below FastAPI (ASGI middleware)."""
    return json.dumps(problem_body(status, kind, title, detail)).encode()


async def on_problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Problem)
    return problem_response(
        exc.status, exc.kind, exc.title, exc.detail, exc.headers, **exc.extra
    )


_CONTENT_ERRORS = {FILES_TOO_LARGE: "files-too-large", FILE_INSIDE_FILE: "file-inside-file",
                   INVALID_PROBLEM: "invalid-problem", INVALID_SUBMISSION: "invalid-submission"}


_GRANTS_TITLE = "The request breaks a rule of its grants"
_CONTENT_TITLES = {"invalid-problem": "The problem breaks a rule of problems",
                   "invalid-submission": "The submission breaks a rule of submissions"}


async def on_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    for error in exc.errors():
        if error.get("type") == "json_invalid":  # the body is not JSON at all: 400, not 422
            loc = error.get("loc", ())
            where = f" at character {loc[-1]}" if len(loc) > 1 else ""
            reason = str((error.get("ctx") or {}).get("error", "malformed"))
            return problem_response(
                400, "malformed-json", "The body is not valid JSON",
                f"invalid JSON{where}: {reason}",
            )
        if (error.get("type") == "missing" and tuple(error.get("loc", ())) == ("body",)
                and not (await request.body()).strip()):  # read already: cached
            return problem_response(  # an empty body: not JSON at all either
                400, "malformed-json", "The body is not valid JSON",
                "the body is empty: send a JSON object",
            )
    errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": error_message(e)}
              for e in exc.errors()]
    extra: dict[str, Any] = {"errors": errors}
    jobs = [int(loc[2]) for loc in (e["loc"] for e in errors)
            if len(loc) > 2 and loc[:2] == ["body", "jobs"] and loc[2].isdigit()]
    if jobs:  # a batch: the (first) job that was refused
        extra["index"] = min(jobs)
    detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors)
    kinds = {_CONTENT_ERRORS.get(str(e.get("type"))) for e in exc.errors()}
    if len(kinds) == 1 and None not in kinds:  # a rule no JSON Schema states: its own type
        (kind,) = kinds
        assert kind is not None
        return problem_response(422, kind, _CONTENT_TITLES.get(kind, _GRANTS_TITLE), detail,
                                **extra)
    return problem_response(422, "validation-error", "The request is invalid", detail, **extra)


def _allowed_methods(request: Request, exc: StarletteHTTPException) -> str:
    """The methods of the path template the router matched first, as the OpenAPI path item
    lists them: the router's own ``Allow`` names only the first route it matched
    (GET /v1/jobs/{id} would hide DELETE)."""
    allowed = {m.strip() for m in (exc.headers or {}).get("Allow", "").split(",") if m.strip()}
    scope = {"type": "http", "path": request.scope["path"], "method": "",
             "root_path": request.scope.get("app_root_path", "")}
    template: str | None = None
    for route in iter_route_contexts(request.app.router.routes):  # included routers too
        if not route.methods or route.matches(scope)[0] is Match.NONE:
            continue
        template = template or route.path_format
        if route.path_format == template:
            allowed |= set(route.methods)
    return ", ".join(sorted(allowed))


async def on_http(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's and FastAPI's own errors (no route, wrong method, unreadable body) as
    problems that say what was asked."""
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    headers = dict(exc.headers) if exc.headers else {}
    detail = str(exc.detail) if exc.detail and exc.detail != phrase else None
    path = request.url.path
    if status == 400 and isinstance(exc.__cause__, ValueError):  # FastAPI's body parse error
        return problem_response(
            400, "malformed-json", "The body is not valid JSON",
            f"the body could not be read as UTF-8 JSON ({exc.__cause__.__class__.__name__})",
        )
    if status == 404:
        return problem_response(
            404, "not-found", phrase, detail or f"nothing is served at {path}", headers or None
        )
    if status == 405:
        headers["Allow"] = _allowed_methods(request, exc)
        return problem_response(
            405, "method-not-allowed", phrase,
            detail or f"{request.method} is not allowed on {path}; allowed: {headers['Allow']}",
            headers,
        )
    kind = "bad-request" if status == 400 else "http-error"
    return problem_response(status, kind, phrase, detail, headers or None)


async def on_redis_down(_: Request, exc: Exception) -> JSONResponse:
    """Redis unreachable (restarting, loading its AOF): a retryable 503, not a 500."""
    return problem_response(
        503, "store-unavailable", "The job store is unavailable", "try again shortly",
        headers={"Retry-After": "1"},
    )


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error in %s %s", request.method, request.url.path,
              exc_info=(type(exc), exc, exc.__traceback__))
    return problem_response(500, "internal-error", "Internal error", "logged on the server")
