"""``/judge0``: Judge0's information endpoints (about, config, languages, statuses, system
and worker info). Judge0's clients send a Warden key as ``X-Auth-Token``."""

from __future__ import annotations

import json
import os
import platform
from importlib.metadata import version
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from sandboxes.schema import JobSpec
from service.auth import bearer_key, check_key, rate_exceeded, remember_rate
from service.deps import StateDep
from service.http_errors import Problem
from service.judge0 import catalog
from service.judge0.submissions import (
    FIELD,
    FieldsRefusedError,
    Judge0Submission,
    NotUtf8Error,
    job_id_of,
    parse_fields,
    to_job,
    token_of,
    view,
)
from service.routes.jobs import enqueue_checked, wait_for_record
from service.state import AppState
from service.submit import to_spec, within_ceilings
from tenancy.models import Caller
from workers.store import job_key, new_job_id, record_from_fields

AUTH_HEADER = "X-Auth-Token"


async def judge0_caller(request: Request, state: StateDep) -> Caller:
    """The caller of a Judge0 route: its ``X-Auth-Token`` is a Warden API key (or the
    ``Authorization: Bearer`` header Warden's own routes take); charged to the read rate."""
    return await _caller(request, state, "reads", charge=True)


async def judge0_submitter(request: Request, state: StateDep) -> Caller:
    """Submissions: charged to the submission rate by the enqueue, with the other quotas."""
    return await _caller(request, state, "submissions", charge=False)


async def _caller(request: Request, state: AppState, policy: str, charge: bool) -> Caller:
    try:
        key = request.headers.get(AUTH_HEADER) or bearer_key(request)
        if not key or not key.strip():
            raise Judge0Error(401, f"send your Warden API key in the {AUTH_HEADER} header")
        caller, rate = await check_key(state, key.strip(), policy, charge)
    except Problem as problem:
        raise Judge0Error(problem.status, problem.detail or problem.title) from None
    remember_rate(request, rate)
    if not rate.allowed:
        limited = rate_exceeded(rate)
        raise Judge0Error(429, limited.detail or "too many requests", limited.headers)
    return caller


Judge0Caller = Annotated[Caller, Depends(judge0_caller)]
Judge0Submitter = Annotated[Caller, Depends(judge0_submitter)]


class Judge0Error(Exception):
    """An error in Judge0's own shape: ``{"error": "..."}``, or a 422's field errors."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 body: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}
        self.body = body


async def on_judge0_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Judge0Error)
    content: Any = exc.body if exc.body is not None else {"error": exc.message}
    return JSONResponse(content, exc.status, headers=exc.headers)


class Judge0Batch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    submissions: list[Judge0Submission] = []


router = APIRouter(prefix="/judge0", include_in_schema=False)


@router.get("/about")
async def about(_: Judge0Caller) -> dict[str, str]:
    return catalog.about()


@router.get("/config_info")
async def config_info(state: StateDep, _: Judge0Caller) -> dict[str, Any]:
    return catalog.config_info(state.settings)


@router.get("/languages")
async def languages(_: Judge0Caller) -> list[dict[str, Any]]:
    return catalog.languages()


@router.get("/languages/all")
async def all_languages(_: Judge0Caller) -> list[dict[str, Any]]:
    return [{**lang, "is_archived": False} for lang in catalog.languages()]


@router.get("/languages/{language_id}")
async def language(language_id: str, _: Judge0Caller) -> dict[str, Any]:
    found = catalog.language(int(language_id)) if language_id.isdigit() else None
    if found is None:
        raise Judge0Error(404, f"language with id {language_id} doesn't exist")
    return found


@router.get("/statuses")
async def statuses(_: Judge0Caller) -> list[dict[str, Any]]:
    return catalog.statuses()


@router.get("/system_info")
async def system_info(_: Judge0Caller) -> dict[str, Any]:
    return {"Architecture": platform.machine(), "CPU(s)": os.cpu_count(),
            "Operating system": platform.system(), "Python": platform.python_version(),
            "Sandbox": f"WebAssembly (wasmtime {version('wasmtime')}), unprivileged"}


@router.get("/workers")
async def workers(state: StateDep, _: Judge0Caller) -> list[dict[str, Any]]:
    live = await run_in_threadpool(state.store.live_workers)
    queued = await run_in_threadpool(state.client.llen, state.queue.rq.key)
    return [{"queue": catalog.VERSION, "size": int(queued), "available": live, "idle": 0,
             "working": 0, "paused": 0, "failed": 0}]


# -- submissions ---------------------------------------------------------------------------
def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


async def _enqueue(state: AppState, request: Request, caller: Caller,
                   bodies: list[Judge0Submission], base64_encoded: bool) -> list[str]:
    """Queue Judge0 submissions as Warden jobs (all or none); their job ids."""
    submissions, extra = [], []
    for body in bodies:
        try:
            job, kept = to_job(body, base64_encoded, state.settings.judge_fuel_per_second)
            spec, module = to_spec(job)
            spec = within_ceilings(job, spec, caller)
        except FieldsRefusedError as err:
            raise Judge0Error(422, "", body=err.errors) from None
        except Problem as problem:
            raise _from_problem(problem) from None
        job_id = new_job_id()
        submissions.append((spec, module, job_id))
        extra.append(("HSET", job_key(job_id), FIELD, json.dumps(kept)))
    try:
        await enqueue_checked(state, request, caller, submissions, extra)
    except Problem as problem:
        raise _from_problem(problem) from None
    return [job_id for _, _, job_id in submissions]


def _from_problem(problem: Problem) -> Judge0Error:
    field = {"unknown-language": "language_id", "compiler-flag-not-allowed":
             "compiler_options", "over-ceiling": "cpu_time_limit"}.get(problem.kind)
    message = problem.detail or problem.title
    if field is not None and problem.status in (403, 422):
        return Judge0Error(422, message, body={field: [message]})
    return Judge0Error(problem.status, message, problem.headers)


async def _view(state: AppState, caller: Caller, job_id: str, fields: set[str] | None,
                base64_encoded: bool) -> dict[str, Any] | None:
    assert state.aclient is not None
    raw: dict[bytes, bytes] = await state.aclient.hgetall(job_key(job_id))  # type: ignore[assignment]
    record = record_from_fields(job_id, raw, caller.tenant)
    if record is None:
        return None
    kept = json.loads(raw[FIELD.encode()]) if FIELD.encode() in raw else {}
    kept.setdefault("fuel_per_second", state.settings.judge_fuel_per_second)
    spec = JobSpec.model_validate_json(raw[b"spec"]) if b"spec" in raw else None
    try:
        return view(record, kept, fields, base64_encoded,
                    spec.source if spec else None, spec.grants.stdin if spec else b"")
    except NotUtf8Error:
        raise Judge0Error(400, "some attributes for this submission cannot be converted to "
                          "UTF-8, use base64_encoded=true query parameter") from None


@router.post("/submissions", status_code=201)
async def create_submission(request: Request, state: StateDep, caller: Judge0Submitter,
                            body: Judge0Submission, base64_encoded: str | None = None,
                            wait: str | None = None, fields: str | None = None) -> Any:
    encoded = _flag(base64_encoded)
    (job_id,) = await _enqueue(state, request, caller, [body], encoded)
    if not _flag(wait):
        return {"token": token_of(job_id)}
    await wait_for_record(state, caller, job_id, state.settings.max_wait_s)
    return await _view(state, caller, job_id, parse_fields(fields), encoded)


@router.post("/submissions/batch", status_code=201)
async def create_batch(request: Request, state: StateDep, caller: Judge0Submitter,
                       batch: Judge0Batch, base64_encoded: str | None = None) -> Any:
    if not batch.submissions or len(batch.submissions) > catalog.MAX_BATCH:
        raise Judge0Error(400, "number of submissions in a batch should be less than or "
                          f"equal to {catalog.MAX_BATCH}")
    ids = await _enqueue(state, request, caller, batch.submissions, _flag(base64_encoded))
    return [{"token": token_of(job_id)} for job_id in ids]


@router.get("/submissions/batch")
async def get_batch(state: StateDep, caller: Judge0Caller, tokens: str = "",
                    base64_encoded: str | None = None, fields: str | None = None) -> Any:
    wanted = [t for t in tokens.split(",") if t.strip()]
    if not wanted or len(wanted) > catalog.MAX_BATCH:
        raise Judge0Error(400, "number of submissions in a batch should be less than or "
                          f"equal to {catalog.MAX_BATCH}")
    found = []
    for token in wanted:
        job_id = job_id_of(token)
        found.append(None if job_id is None else await _view(
            state, caller, job_id, parse_fields(fields), _flag(base64_encoded)))
    return {"submissions": found}


@router.get("/submissions/{token}")
async def get_submission(token: str, state: StateDep, caller: Judge0Caller,
                         base64_encoded: str | None = None, fields: str | None = None) -> Any:
    job_id = job_id_of(token)
    found = None if job_id is None else await _view(
        state, caller, job_id, parse_fields(fields), _flag(base64_encoded))
    if found is None:
        raise Judge0Error(404, "Not Found")
    return found
