"""``/judge0``: Judge0's information endpoints (about, config, languages, statuses, system
and worker info). Judge0's clients send a Warden key as ``X-Auth-Token``."""

from __future__ import annotations

import json
import os
import platform
import re
import time
from importlib.metadata import version
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from service.auth import bearer_key
from service.callbacks import bodies
from service.compat_auth import compat_caller
from service.deps import StateDep
from service.http_errors import Problem
from service.judge0 import catalog
from service.judge0.submissions import (
    FIELD,
    FieldsRefusedError,
    InvalidFieldsError,
    Judge0Submission,
    NotUtf8Error,
    by_judge0_id,
    job_id_of,
    listing_key,
    parse_fields,
    to_job,
    token_of,
    view_of_fields,
)
from service.routes.jobs import callback_writes, enqueue_checked, wait_for_record
from service.state import AppState
from service.submit import language_unavailable, to_spec, within_ceilings
from tenancy.models import Caller
from workers.queue import Submission
from workers.store import job_key, new_job_id

# Judge0's texts
_BATCH_TOO_LARGE = f"number of submissions in a batch should be less than or equal to " \
                   f"{catalog.MAX_BATCH}"
_BATCH_EMPTY = "there should be at least one submission in a batch"
_NOT_UTF8 = "some attributes for this submission cannot be converted to UTF-8, use " \
            "base64_encoded=true query parameter"
_NOT_UTF8_MANY = "some attributes for one or more submissions cannot be converted to " \
                 "UTF-8, use base64_encoded=true query parameter"
LISTED_PER_TENANT = 100_000
MAX_PAGE = LISTED_PER_TENANT  # GET /submissions pages through a tenant's newest ones

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
    except Problem as problem:
        raise Judge0Error(problem.status, problem.detail or problem.title) from None
    return await compat_caller(request, state, key, policy, charge, Judge0Error,
                               f"send your Warden API key in the {AUTH_HEADER} header")


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


def _prepare(state: AppState, caller: Caller, body: Judge0Submission,
             base64_encoded: bool) -> tuple[Submission, list[tuple[Any, ...]]]:
    """One submission as a queued job and the write that keeps its Judge0 attributes;
    Judge0Error for one Judge0 would refuse."""
    try:
        job, kept = to_job(body, base64_encoded, state.settings.judge_fuel_per_second)
        spec, module = to_spec(job)
        spec = within_ceilings(job, spec, caller)
    except FieldsRefusedError as err:
        raise Judge0Error(422, "", body=err.errors) from None
    except Problem as problem:
        raise _from_problem(problem) from None
    job_id = new_job_id()
    writes: list[tuple[Any, ...]] = [("HSET", job_key(job_id), FIELD, json.dumps(kept))]
    try:
        writes += callback_writes(state, body.callback_url or None, job_id, bodies.JUDGE0)
    except Problem as problem:
        message = (problem.detail or "").removeprefix("callback_url: ")
        raise Judge0Error(422, message, body={"callback_url": [message]}) from None
    return (spec, module, job_id), writes


async def _prepared(state: AppState, caller: Caller, body: Judge0Submission,
                    base64_encoded: bool) -> tuple[Submission, list[tuple[Any, ...]]]:
    """``_prepare``, off the event loop when there is an archive to unpack."""
    language = by_judge0_id(body.language_id) if body.language_id is not None else None
    unavailable = language_unavailable(language.id if language else None,
                                       await state.served_languages())
    if unavailable is not None:
        raise Judge0Error(503, unavailable.detail or unavailable.title, unavailable.headers)
    if body.additional_files:
        return await run_in_threadpool(_prepare, state, caller, body, base64_encoded)
    return _prepare(state, caller, body, base64_encoded)


async def _enqueue(state: AppState, request: Request, caller: Caller,
                   prepared: list[tuple[Submission, list[tuple[Any, ...]]]]) -> list[str]:
    """Queue prepared submissions (all or none, in one step with their records and their
    place in the tenant's Judge0 listing); their job ids."""
    now = time.time()
    listing = listing_key(caller.tenant)
    extra: list[tuple[Any, ...]] = [write for _, writes in prepared for write in writes]
    # a batch in its order: newest first lists its last submission first
    extra += [("ZADD", listing, repr(now + i * 1e-6), job_id)
              for i, ((_, _, job_id), _) in enumerate(prepared)]
    extra.append(("ZREMRANGEBYRANK", listing, 0, -LISTED_PER_TENANT - 1))
    try:  # the first request's ids for a retry with the same Idempotency-Key
        return await enqueue_checked(state, request, caller, [sub for sub, _ in prepared],
                                     extra)
    except Problem as problem:
        raise _from_problem(problem) from None


def _from_problem(problem: Problem) -> Judge0Error:
    field = {"unknown-language": "language_id", "compiler-flag-not-allowed":
             "compiler_options", "over-ceiling": "cpu_time_limit"}.get(problem.kind)
    message = problem.detail or problem.title
    if field is not None and problem.status in (403, 422):
        return Judge0Error(422, message, body={field: [message]})
    return Judge0Error(problem.status, message, problem.headers)


def _shown(state: AppState, caller: Caller, job_id: str, raw: dict[bytes, bytes],
           fields: tuple[str, ...] | None, base64_encoded: bool,
           not_utf8: str = _NOT_UTF8) -> dict[str, Any] | None:
    """The caller's submission as Judge0 shows it; None if the caller has no such one."""
    try:
        return view_of_fields(job_id, raw, fields, base64_encoded,
                              state.settings.judge_fuel_per_second, caller.tenant)
    except NotUtf8Error:
        raise Judge0Error(400, not_utf8) from None


def _shown_all(state: AppState, caller: Caller, ids: list[str], raws: list[dict[bytes, bytes]],
               fields: tuple[str, ...] | None, base64_encoded: bool
               ) -> list[dict[str, Any] | None]:
    return [_shown(state, caller, job_id, raw, fields, base64_encoded, _NOT_UTF8_MANY)
            for job_id, raw in zip(ids, raws, strict=True)]


async def _view(state: AppState, caller: Caller, job_id: str, fields: tuple[str, ...] | None,
                base64_encoded: bool, not_utf8: str = _NOT_UTF8) -> dict[str, Any] | None:
    assert state.aclient is not None
    raw: dict[bytes, bytes] = await state.aclient.hgetall(job_key(job_id))  # type: ignore[assignment]
    return _shown(state, caller, job_id, raw, fields, base64_encoded, not_utf8)


def _fields(text: str | None) -> tuple[str, ...] | None:
    try:
        return parse_fields(text)
    except InvalidFieldsError as err:
        raise Judge0Error(400, str(err)) from None


@router.post("/submissions", status_code=201)
async def create_submission(request: Request, state: StateDep, caller: Judge0Submitter,
                            body: Judge0Submission, base64_encoded: str | None = None,
                            wait: str | None = None, fields: str | None = None) -> Any:
    encoded, wanted = _flag(base64_encoded), _fields(fields)
    prepared = await _prepared(state, caller, body, encoded)
    (job_id,) = await _enqueue(state, request, caller, [prepared])
    if wait != "true":
        return {"token": token_of(job_id)}
    await wait_for_record(state, caller, job_id, state.settings.max_wait_s)
    try:
        return await _view(state, caller, job_id, wanted, encoded)
    except Judge0Error as err:  # Judge0 answers the token beside the conversion error
        return JSONResponse({"error": err.message, "token": token_of(job_id)}, 201)


@router.post("/submissions/batch", status_code=201)
async def create_batch(request: Request, state: StateDep, caller: Judge0Submitter,
                       batch: Judge0Batch, base64_encoded: str | None = None) -> Any:
    """Judge0's batch: each submission is accepted or refused on its own (a refused one
    answers its errors in its place); 201 if any was accepted, else 422."""
    if len(batch.submissions) > catalog.MAX_BATCH:
        raise Judge0Error(400, _BATCH_TOO_LARGE)
    if not batch.submissions:
        raise Judge0Error(400, _BATCH_EMPTY)
    encoded = _flag(base64_encoded)
    answers: list[Any] = []
    accepted: list[tuple[Submission, list[tuple[Any, ...]]]] = []
    for body in batch.submissions:
        try:
            accepted.append(await _prepared(state, caller, body, encoded))
            answers.append(None)
        except Judge0Error as err:
            if err.status != 422:
                raise
            answers.append(err.body if err.body is not None else {"base": [err.message]})
    tokens = await _enqueue(state, request, caller, accepted) if accepted else []
    if len(tokens) != len(accepted):  # a retry whose entries are now accepted otherwise
        raise Judge0Error(422, "this Idempotency-Key came with a batch whose accepted "
                               "submissions differ from the first one's: send a new key")
    ids = iter(tokens)
    answers = [{"token": token_of(next(ids))} if a is None else a for a in answers]
    return JSONResponse(answers, 201 if accepted else 422)


@router.get("/submissions/batch")
async def get_batch(state: StateDep, caller: Judge0Caller, tokens: str = "",
                    base64_encoded: str | None = None, fields: str | None = None) -> Any:
    wanted = [t for t in tokens.strip().split(",") if t]
    if len(wanted) > catalog.MAX_BATCH:
        raise Judge0Error(400, _BATCH_TOO_LARGE)
    if not wanted:
        raise Judge0Error(400, _BATCH_EMPTY)
    names, encoded = _fields(fields), _flag(base64_encoded)
    found = []
    for token in wanted:
        job_id = job_id_of(token)
        found.append(None if job_id is None else await _view(
            state, caller, job_id, names, encoded, _NOT_UTF8_MANY))
    return {"submissions": found}


def _ruby_int(text: str | None, default: int) -> int:
    """Judge0 reads ``page`` and ``per_page`` with Ruby's ``to_i``: leading digits, else 0."""
    if text is None:
        return default
    match = re.match(r"\s*([+-]?\d{1,18})", text)
    return int(match.group(1)) if match else 0


@router.get("/submissions")
async def list_submissions(state: StateDep, caller: Judge0Caller, page: str | None = None,
                           per_page: str | None = None, base64_encoded: str | None = None,
                           fields: str | None = None) -> Any:
    """The tenant's Judge0 submissions, newest first, a page at a time, with Judge0's
    ``meta``."""
    number, size = _ruby_int(page, 1), _ruby_int(per_page, 20)
    if number <= 0 or number > MAX_PAGE:
        raise Judge0Error(400, f"invalid page: {number}")
    if size <= 0 or size > catalog.MAX_PER_PAGE:
        raise Judge0Error(400, f"invalid per_page: {size} (1 to {catalog.MAX_PER_PAGE})")
    names, encoded = _fields(fields), _flag(base64_encoded)
    assert state.aclient is not None
    listing = listing_key(caller.tenant)
    found: list[dict[str, Any]] = []
    for _ in range(3):  # expired jobs leave the listing as a page meets them
        start = (number - 1) * size
        members: list[bytes] = await state.aclient.zrevrange(  # type: ignore[assignment]
            listing, start, start + size - 1)
        ids = [member.decode() for member in members]
        async with state.aclient.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(job_key(job_id))
            raws: list[dict[bytes, bytes]] = await pipe.execute()
        # parsing a page of records (stdin and outputs inline) is CPU: off the event loop
        shown = await run_in_threadpool(_shown_all, state, caller, ids, raws, names, encoded)
        found = [one for one in shown if one is not None]
        stale = [i for i, one in zip(ids, shown, strict=True) if one is None]
        if not stale:
            break
        await state.aclient.zrem(listing, *stale)
    total = int(await state.aclient.zcard(listing))
    pages = -(-total // size)
    return {"submissions": found,
            "meta": {"current_page": number, "next_page": number + 1 if number < pages else None,
                     "prev_page": number - 1 if number > 1 else None, "total_pages": pages,
                     "total_count": total}}


@router.get("/submissions/{token}")
async def get_submission(token: str, state: StateDep, caller: Judge0Caller,
                         base64_encoded: str | None = None, fields: str | None = None) -> Any:
    job_id = job_id_of(token)
    names = _fields(fields)
    found = None if job_id is None else await _view(
        state, caller, job_id, names, _flag(base64_encoded))
    if found is None:
        raise Judge0Error(404, "Not Found")
    return found


@router.delete("/submissions/{token}")
async def delete_submission(token: str, state: StateDep, caller: Judge0Caller,
                            fields: str | None = None) -> Any:
    """Delete an ended submission; it is answered as it was (always base64, as Judge0
    does, so that any output can be shown)."""
    job_id = job_id_of(token)
    names = _fields(fields)
    shown = None if job_id is None else await _view(state, caller, job_id, names, True)
    if shown is None or job_id is None:
        raise Judge0Error(404, "Not Found")
    outcome = await run_in_threadpool(state.store.delete, job_id, caller.tenant,
                                      (listing_key(caller.tenant),))
    if outcome in ("queued", "running"):
        status = 1 if outcome == "queued" else 2
        raise Judge0Error(400, f"submission cannot be deleted because its status is {status} "
                               f"({catalog.STATUSES[status - 1][1]})")
    if outcome == "missing":
        raise Judge0Error(404, "Not Found")
    return shown
