"""/v1/jobs: submit, read (optionally waiting), cancel, batch."""

from __future__ import annotations

import asyncio
import math
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BeforeValidator, WithJsonSchema
from starlette.concurrency import run_in_threadpool

from sandboxes.schema import (
    MAX_BATCH,
    BatchAccepted,
    BatchSubmission,
    JobAccepted,
    JobList,
    JobRecord,
    JobSpec,
    JobState,
    JobSubmission,
)
from service.auth import CallerDep, SubmitterDep, remember_rate, submission_rate
from service.callbacks import bodies
from service.callbacks.targets import submitted_url_problem
from service.deps import StateDep
from service.http_errors import Problem, quota_exceeded
from service.idempotency import idempotency_of, replayed_ids
from service.openapi import problem_responses
from service.render import Encoding, EncodingQuery, list_response, record_response
from service.state import AppState
from service.submit import language_unavailable, to_spec, within_ceilings
from service.waiting import wait_until_ended
from tenancy.models import Caller
from workers.callback_queue import callback_fields
from workers.queue import AlreadySubmittedError, QueueFullError, QuotaExceededError, Submission
from workers.store import CURSOR_PATTERN, job_key, new_job_id

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

def _wait_flag(value: object) -> object:
    """``?wait=true`` waits as long as allowed, ``?wait=false`` does not wait."""
    if isinstance(value, str):
        word = value.strip()
        if word == "true":
            return math.inf
        if word == "false":
            return 0.0
    return value


WaitQuery = Annotated[
    float,
    BeforeValidator(_wait_flag),
    Query(ge=0),
    WithJsonSchema({
        "anyOf": [{"type": "number", "minimum": 0}, {"type": "boolean"}],
        "description": "Seconds to wait for the job to end (0 or false: do not wait; true: "
                       "the longest wait allowed, WARDEN_MAX_WAIT_S)",
    }),
]


async def _json_body(request: Request) -> None:  # async: no threadpool hop per request
    """415 for a body that is not declared as JSON (rather than a confusing 422)."""
    declared = request.headers.get("content-type", "")
    media = declared.split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/")
                                       and media.endswith("+json")):
        return
    raise Problem(
        415, "unsupported-media-type", "The request body must be JSON",
        f"send Content-Type: application/json (got {declared or 'no Content-Type'})",
    )


JsonBody = Depends(_json_body)


def _not_found(job_id: str) -> Problem:
    return Problem(404, "job-not-found", "No such job", f"job {job_id!r} does not exist")


def _over_quota(err: QuotaExceededError) -> Problem:
    """429 for a quota that waiting frees (Retry-After), 403 for one it never will."""
    waits = not err.permanent
    detail = {
        "max_queued": f"{err.used} of your jobs are queued (limit {err.limit}): wait for "
                      "some to start",
        "submissions_per_minute": f"submissions are limited to a burst of {err.limit}; "
                                  "the bucket refills over a minute",
        "submission_burst": f"a batch of {err.used} is more than the burst of {err.limit} "
                            "your tenant may submit at once: split it",
        "daily_fuel": f"{err.used} of the {err.limit} fuel of today (UTC) is used or "
                      "reserved by jobs not yet ended" + (
                          "" if waits else "; this request alone reserves more"),
        "stored_bytes": f"your jobs keep {err.used} bytes of inputs (limit {err.limit})"
                        + ("" if waits else "; this request alone is larger"),
    }.get(err.quota, err.quota)
    return quota_exceeded(err.quota, err.limit, err.used, detail,
                          retry_after_s=err.retry_s if waits else None,
                          status=429 if waits else 403)


async def enqueue_checked(state: AppState, request: Request, caller: Caller,
                          submissions: list[Submission],
                          extra: list[tuple[Any, ...]] | None = None,
                          ids: list[str] | None = None) -> list[str]:
    """Queue under the caller's quotas; the RateLimit headers report the submission rate.
    ``extra``: more writes in the same atomic step (a judge submission's record). Returns
    ``ids`` (what the response names: by default the jobs' ids), or, for a retry with the
    same Idempotency-Key (service/idempotency.py), the ids the first request made; nothing
    is queued then."""
    q = caller.quotas
    ids = ids if ids is not None else [job_id for _, _, job_id in submissions]
    window_s = min(state.settings.idempotency_window_s, state.settings.job_ttl_s)
    idempotency = await idempotency_of(request, caller.tenant, ids, window_s)
    try:
        remaining, reset_s = await state.submit(submissions, caller.tenant, q, extra,
                                                idempotency)
    except AlreadySubmittedError as err:
        return await replayed_ids(request, err)
    except QuotaExceededError as err:
        remember_rate(request, submission_rate(q, *err.rate))
        raise _over_quota(err) from None
    except QueueFullError:
        raise _queue_full() from None
    remember_rate(request, submission_rate(q, remaining, reset_s))
    return ids


def _queue_full() -> Problem:
    return Problem(
        503, "queue-full", "The job queue is full", "try again shortly",
        headers={"Retry-After": "1"},
    )


# Submissions this small are validated on the event loop (~0.15 ms for a few KiB of wasm):
# a threadpool hop costs more than that. Larger ones are decoded and validated off the loop.
_INLINE_BYTES = 64 * 1024


def _inline(sub: JobSubmission) -> bool:
    size = len(sub.wasm_base64 or "") + len(sub.wat or "") + len(sub.source or "")
    size += len(sub.grants.stdin) + sum(len(f) for f in sub.grants.files.values())
    return size <= _INLINE_BYTES


def callback_writes(state: AppState, url: str | None, job_id: str,
                    style: str = bodies.WARDEN) -> list[tuple[Any, ...]]:
    """The writes that make the job's end deliver a callback (none without a URL); a 422
    for a URL that is never accepted."""
    if url is None:
        return []
    problem = submitted_url_problem(url, state.settings.callbacks_enabled)
    if problem is not None:
        raise Problem(422, "invalid-callback-url", "The callback URL is not accepted",
                      f"callback_url: {problem}")
    fields = callback_fields(url, bodies.METHODS[style], style)
    return [("HSET", job_key(job_id), *[x for pair in fields.items() for x in pair])]


async def _submit(state: AppState, request: Request, caller: Caller, sub: JobSubmission,
                  job_id: str) -> str:
    """Queue ``sub`` as ``job_id``; the id of the job it is (another for a retry with the
    same Idempotency-Key)."""
    writes = callback_writes(state, sub.callback_url, job_id)
    if sub.language is not None:
        unavailable = language_unavailable(sub.language, await state.served_languages())
        if unavailable is not None:
            raise unavailable
    if _inline(sub):
        spec, module = to_spec(sub)
    else:
        spec, module = await run_in_threadpool(to_spec, sub)  # WAT parsing, validation: CPU
    spec = within_ceilings(sub, spec, caller)
    (queued,) = await enqueue_checked(state, request, caller, [(spec, module, job_id)], writes)
    return queued


async def wait_for_record(
    state: AppState, caller: Caller, job_id: str, wait_s: float,
    fut: asyncio.Future[None] | None = None,
) -> JobRecord:
    """The record once it is terminal or ``wait_s`` has passed (``wait_until_ended``)."""
    return await wait_until_ended(
        state, job_id, wait_s, lambda: state.record(job_id, caller.tenant),
        lambda record: record.state.terminal, lambda: _not_found(job_id), fut)


def _still_running(record: JobRecord) -> int:
    """200 for a job that has ended, 202 for one still queued or running after a wait."""
    return 200 if record.state.terminal else 202


# response_model=None: the 202 is documented once, as either shape (FastAPI would put the
# route's model beside the anyOf as a `$ref`, which OpenAPI 3.1 applies too).
@router.post("", status_code=202, response_model=None,
             responses={200: {"model": JobRecord, "description": "With `wait`: the job ended"},
                        202: {"model": JobAccepted | JobRecord,
                              "description": "Queued (no `wait`: its id; with `wait`: the "
                                             "record of a job still queued or running)"}},
             dependencies=[JsonBody])
async def submit_job(
    sub: JobSubmission, state: StateDep, caller: SubmitterDep, request: Request,
    response: Response, wait: WaitQuery = 0,
    encoding: EncodingQuery = Encoding.BASE64,
) -> JobAccepted | Response:
    """Queue a job. With ``wait`` > 0, the record once it ends (200), or when the wait runs
    out (202, state queued or running)."""
    job_id = new_job_id()
    fut = state.waiter.register(job_id) if wait > 0 else None
    try:
        queued = await _submit(state, request, caller, sub, job_id)
    except BaseException:
        if fut is not None:
            state.waiter.discard(job_id, fut)
        raise
    replayed = queued != job_id  # a retry: the first request's job, whatever its state now
    if replayed:
        if fut is not None:  # it may have ended already: the wait reads its record first
            state.waiter.discard(job_id, fut)
            fut = None
        job_id = queued
    if wait <= 0:
        response.headers["Location"] = f"/v1/jobs/{job_id}"
        if not replayed:
            return JobAccepted(id=job_id, state=JobState.QUEUED)
        earlier = await state.record(job_id, caller.tenant)
        if earlier is None:  # the first request's job was deleted or has expired
            raise _not_found(job_id)
        return JobAccepted(id=job_id, state=earlier.state)
    record = await wait_for_record(state, caller, job_id, wait, fut)
    reply = record_response(record, encoding, _still_running(record))
    reply.headers["Location"] = f"/v1/jobs/{job_id}"
    return reply


@router.post("/batch", status_code=202, response_model=None,
             responses={200: {"model": JobList, "description": "With `wait`: all ended"},
                        202: {"model": BatchAccepted | JobList,
                              "description": "Queued (with `wait`: the records, some still "
                                             "queued or running)"}},
             dependencies=[JsonBody])
async def submit_batch(
    batch: BatchSubmission, state: StateDep, caller: SubmitterDep, request: Request,
    wait: WaitQuery = 0, encoding: EncodingQuery = Encoding.BASE64,
) -> BatchAccepted | Response:
    """Queue up to 100 jobs: all are validated, and must fit in the queue, before any is
    queued (one atomic step: never some queued and the rest refused). A job that is
    refused names its index. With ``wait``, the records once all have ended (200) or the
    wait runs out (202)."""
    if any(sub.language is not None for sub in batch.jobs):
        served = await state.served_languages()
        for index, sub in enumerate(batch.jobs):
            unavailable = language_unavailable(sub.language, served)
            if unavailable is not None:
                unavailable.detail = f"jobs[{index}]: {unavailable.detail}"
                raise unavailable
    prepared = await run_in_threadpool(_batch_specs, batch, caller)
    submissions = [(spec, module, new_job_id()) for spec, module in prepared]
    writes: list[tuple[Any, ...]] = []
    for index, (sub, (_, _, job_id)) in enumerate(zip(batch.jobs, submissions, strict=True)):
        try:
            writes += callback_writes(state, sub.callback_url, job_id)
        except Problem as problem:
            problem.detail = f"jobs[{index}]: {problem.detail}"
            problem.extra["index"] = index
            raise
    ids = await enqueue_checked(state, request, caller, submissions, writes)
    if wait <= 0:
        return BatchAccepted(ids=ids)
    records = await asyncio.gather(*(wait_for_record(state, caller, job_id, wait)
                                     for job_id in ids))
    page = JobList(jobs=list(records))
    ended = all(record.state.terminal for record in records)
    return list_response(page, encoding, 200 if ended else 202)


def _batch_specs(batch: BatchSubmission,
                 caller: Caller) -> list[tuple[JobSpec, tuple[str, bytes] | None]]:
    specs = []
    for index, sub in enumerate(batch.jobs):
        try:
            spec, module = to_spec(sub)
            specs.append((within_ceilings(sub, spec, caller), module))
        except Problem as problem:  # say which job of the batch it was
            problem.detail = f"jobs[{index}]: {problem.detail or problem.title}"
            problem.extra["index"] = index
            for error in problem.extra.get("errors", ()):  # ["body", ...] of one job
                error["loc"] = ["body", "jobs", str(index), *error["loc"][1:]]
            raise
    return specs


@router.get("", response_model=JobList)
async def get_jobs(
    state: StateDep, caller: CallerDep,
    ids: Annotated[str | None, Query(description="Comma-separated job ids (at most "
                                                 f"{MAX_BATCH}); without: list jobs")] = None,
    job_state: Annotated[JobState | None, Query(alias="state",
                                                description="Listing: only jobs in this "
                                                            "state")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_BATCH, description="Listing: page size")] = 20,
    cursor: Annotated[str | None, Query(pattern=CURSOR_PATTERN,
                                        description="Listing: `next_cursor` of the page "
                                                    "before")] = None,
    encoding: EncodingQuery = Encoding.BASE64,
) -> Response:
    """Several jobs by id, in the order asked (unknown ids come back as null); or, without
    ``ids``, the most recent jobs, newest first, a page at a time."""
    if ids is not None:
        wanted = [i for i in ids.split(",") if i]
        if len(wanted) > MAX_BATCH:
            raise Problem(422, "too-many-ids", "Too many job ids",
                          f"{len(wanted)} ids given; at most {MAX_BATCH} per request")
        page = JobList(jobs=await run_in_threadpool(state.store.get_many, wanted,
                                                    caller.tenant))
        return list_response(page, encoding)
    records, after = await run_in_threadpool(state.store.list_recent, limit, job_state, cursor,
                                             caller.tenant)
    page = JobList(jobs=list(records), next_cursor=after)
    return list_response(page, encoding)


@router.get("/{job_id}", response_model=JobRecord,
            responses={202: {"model": JobRecord,
                             "description": "With `wait`: still queued or running when the "
                                            "wait ran out"}})
async def get_job(
    job_id: str, state: StateDep, caller: CallerDep, wait: WaitQuery = 0,
    encoding: EncodingQuery = Encoding.BASE64,
) -> Response:
    """The job's record; with ``wait``, once it ends (200) or the wait runs out (202).
    Another tenant's job is a 404, as if it did not exist."""
    record = await wait_for_record(state, caller, job_id, wait)
    return record_response(record, encoding, _still_running(record) if wait > 0 else 200)


@router.delete("/{job_id}", response_model=JobRecord,
               responses={202: {"model": JobRecord,
                                "description": "Still stopping when the wait ran out"},
                          **problem_responses(409, descriptions={
                              409: "The job had already finished or failed"})})
async def cancel_job(
    job_id: str, state: StateDep, caller: CallerDep, wait: WaitQuery = 5,
    encoding: EncodingQuery = Encoding.BASE64,
) -> Response:
    """Cancel a queued job at once, or stop a running one within an epoch tick (200 with
    the cancelled record; 202 if it is still stopping after ``wait``). A job that has
    already finished or failed is a 409; cancelling a cancelled job again changes nothing."""
    if await state.record(job_id, caller.tenant) is None:  # the tenant never changes
        raise _not_found(job_id)
    outcome = await run_in_threadpool(state.store.cancel, job_id, state.queue.rq.key)
    if outcome == "missing":
        raise _not_found(job_id)
    if outcome in (JobState.FINISHED.value, JobState.FAILED.value):
        raise Problem(409, "job-finished", "The job has already ended",
                      f"job {job_id!r} is {outcome}: there is nothing to cancel")
    record = await wait_for_record(state, caller, job_id, wait if outcome == "cancelling" else 0)
    return record_response(record, encoding, _still_running(record))
