"""``/piston/api/v2``: Piston's runtimes and execute. Piston is synchronous: ``execute``
queues a Warden job and answers when it has ended. Piston has no auth of its own: its
clients send the Warden key as ``Authorization`` (``Bearer <key>`` or the bare key)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from sandboxes.schema import JobState
from service.compat_auth import compat_caller
from service.deps import StateDep
from service.http_errors import Problem
from service.idempotency import forget
from service.piston import catalog
from service.piston.execute import PistonError, response, to_job
from service.routes.jobs import enqueue_checked, wait_for_record
from service.state import AppState
from service.submit import language_unavailable, to_spec, within_ceilings
from tenancy.models import Caller
from workers.store import new_job_id


def _key(request: Request) -> str | None:
    header = request.headers.get("authorization", "").strip()
    scheme, _, rest = header.partition(" ")
    return rest.strip() if scheme.lower() == "bearer" else header or None


async def _piston_caller(request: Request, state: AppState, policy: str,
                         charge: bool) -> Caller:
    return await compat_caller(request, state, _key(request), policy, charge, PistonError,
                               "send your Warden API key in the Authorization header")


async def piston_reader(request: Request, state: StateDep) -> Caller:
    return await _piston_caller(request, state, "reads", charge=True)


async def piston_submitter(request: Request, state: StateDep) -> Caller:
    return await _piston_caller(request, state, "submissions", charge=False)


async def on_piston_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PistonError)
    return JSONResponse({"message": exc.message}, exc.status, headers=exc.headers)


router = APIRouter(prefix="/piston/api/v2", include_in_schema=False)


@router.get("/runtimes")
async def runtimes(_: Annotated[Caller, Depends(piston_reader)]) -> list[dict[str, Any]]:
    return catalog.runtimes()


@router.post("/execute")
async def execute(request: Request, state: StateDep,
                  caller: Annotated[Caller, Depends(piston_submitter)]) -> Any:
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise PistonError(415, "requests must be of type application/json")
    try:
        body = json.loads(await request.body(), parse_constant=_no_constant)
    except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
        raise PistonError(400, f"the request body is not valid JSON: {err}"[:300]) from None
    fuel_per_second = state.settings.judge_fuel_per_second
    job, language = to_job(body, fuel_per_second, state.settings.max_wait_s)
    unavailable = language_unavailable(language.id, await state.served_languages())
    if unavailable is not None:
        raise PistonError(503, unavailable.detail or unavailable.title, unavailable.headers)
    job_id = new_job_id()
    fut = state.waiter.register(job_id)
    try:
        try:
            spec, _ = to_spec(job)
            spec = within_ceilings(job, spec, caller)
            (queued,) = await enqueue_checked(state, request, caller, [(spec, None, job_id)])
        except Problem as problem:
            raise PistonError(problem.status if problem.status != 422 else 400,
                              problem.detail or problem.title, problem.headers) from None
    except BaseException:
        state.waiter.discard(job_id, fut)
        raise
    waiting: asyncio.Future[None] | None = fut
    replayed = queued != job_id
    if replayed:  # a retry with the same Idempotency-Key: the first one's job, which may
        state.waiter.discard(job_id, fut)  # have ended already: read its record first
        job_id, waiting = queued, None
    record = await wait_for_record(state, caller, job_id, state.settings.max_wait_s, waiting)
    busy = (f"the job did not end within {state.settings.max_wait_s:g} s (the queue is busy); "
            "it was cancelled: try again")
    if not record.state.terminal:
        outcome = await run_in_threadpool(state.store.cancel, job_id, state.queue.rq.key)
        ended = await state.record(job_id, caller.tenant)
        if outcome not in ("finished", "failed") or ended is None:
            # the key must not replay this cancel for a day: a retry runs it afresh
            await run_in_threadpool(forget, state.client, request, caller.tenant)
            raise PistonError(503, busy)
        record = ended  # it ended between the wait and the cancel
    elif replayed and record.state is JobState.CANCELLED:
        # a retry of a run an earlier request's wait cancelled: the same answer, not a 500
        await run_in_threadpool(forget, state.client, request, caller.tenant)
        raise PistonError(503, busy)
    return response(record, language, fuel_per_second)


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")
