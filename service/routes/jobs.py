"""/v1/jobs: submit, read (optionally waiting), cancel, batch."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from sandboxes.schema import JobRecord, JobSubmission
from service.deps import StateDep
from service.problems import Problem
from service.state import AppState
from service.submit import to_spec
from workers.queue import QueueFullError

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

MAX_BATCH = 100
WaitQuery = Annotated[
    float, Query(ge=0, description="Seconds to wait for the job to end (0: do not wait)")
]


class JobAccepted(BaseModel):
    id: str
    state: str


class BatchSubmission(BaseModel):
    model_config = ConfigDict(extra="forbid")
    jobs: list[JobSubmission] = Field(min_length=1, max_length=MAX_BATCH)


class BatchAccepted(BaseModel):
    ids: list[str]


class JobList(BaseModel):
    jobs: list[JobRecord | None]


def _not_found(job_id: str) -> Problem:
    return Problem(404, "job-not-found", "No such job", f"job {job_id!r} does not exist")


async def _submit(state: AppState, sub: JobSubmission) -> str:
    spec, module = to_spec(sub)
    try:
        return await run_in_threadpool(state.queue.submit, spec, module)
    except QueueFullError:
        raise Problem(
            503, "queue-full", "The job queue is full", "try again shortly",
            headers={"Retry-After": "1"},
        ) from None


async def _wait_for(state: AppState, job_id: str, wait_s: float) -> JobRecord:
    wait_s = min(wait_s, state.settings.max_wait_s)
    fut = state.waiter.register(job_id) if wait_s > 0 else None
    try:
        record = await run_in_threadpool(state.store.get, job_id)
        if record is None:
            raise _not_found(job_id)
        if fut is None or record.state.terminal:
            return record
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(fut, wait_s)
        record = await run_in_threadpool(state.store.get, job_id)
        if record is None:
            raise _not_found(job_id)
        return record
    finally:
        if fut is not None:
            state.waiter.discard(job_id, fut)


@router.post("", status_code=202, response_model=JobRecord | JobAccepted,
             responses={200: {"model": JobRecord}, 202: {"model": JobAccepted}})
async def submit_job(
    sub: JobSubmission, state: StateDep, response: Response, wait: WaitQuery = 0
) -> JobRecord | JobAccepted:
    """Queue a job. With ``wait`` > 0, answer 200 with the record once it ends (or the wait
    runs out, then with its current state)."""
    job_id = await _submit(state, sub)
    if wait <= 0:
        response.headers["Location"] = f"/v1/jobs/{job_id}"
        return JobAccepted(id=job_id, state="queued")
    record = await _wait_for(state, job_id, wait)
    response.status_code = 200
    return record


@router.post("/batch", status_code=202)
async def submit_batch(batch: BatchSubmission, state: StateDep) -> BatchAccepted:
    """Queue up to 100 jobs; all are validated before any is queued."""
    prepared = [to_spec(sub) for sub in batch.jobs]

    def submit_all() -> list[str]:
        return [state.queue.submit(spec, module) for spec, module in prepared]

    try:
        return BatchAccepted(ids=await run_in_threadpool(submit_all))
    except QueueFullError:
        raise Problem(
            503, "queue-full", "The job queue is full", headers={"Retry-After": "1"}
        ) from None


@router.get("")
async def get_jobs(
    state: StateDep, ids: Annotated[str, Query(description="Comma-separated job ids")]
) -> JobList:
    """Several jobs at once; unknown ids come back as null."""
    wanted = [i for i in ids.split(",") if i][:MAX_BATCH]
    return JobList(jobs=await run_in_threadpool(state.store.get_many, wanted))


@router.get("/{job_id}")
async def get_job(job_id: str, state: StateDep, wait: WaitQuery = 0) -> JobRecord:
    return await _wait_for(state, job_id, wait)


@router.delete("/{job_id}")
async def cancel_job(job_id: str, state: StateDep, wait: WaitQuery = 5) -> JobRecord:
    """Cancel a queued job at once, or stop a running one within an epoch tick."""
    outcome = await run_in_threadpool(state.store.cancel, job_id)
    if outcome == "missing":
        raise _not_found(job_id)
    return await _wait_for(state, job_id, wait if outcome == "cancelling" else 0)
