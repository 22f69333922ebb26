"""/v1/problems (judge problems, tenant-scoped), their submissions, and /v1/blobs (test data
by content hash). The judging itself happens on the workers (``workers.judging``)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from judge.grading import Plan, failed_whole
from judge.problem import (
    PROBLEM_ID_PATTERN,
    BlobStored,
    ProblemList,
    ProblemRecord,
    ProblemUpload,
    SubmissionAccepted,
    SubmissionCreate,
    SubmissionList,
    SubmissionRecord,
    TestResult,
)
from judge.runner import TimingConfig, submission_limits
from judge.verdicts import Verdict
from sandboxes.schema import JobState, JobSubmission, Limits
from service.auth import CallerDep, SubmitterDep
from service.deps import StateDep
from service.http_errors import Problem, quota_exceeded
from service.openapi import problem_responses
from service.routes.jobs import JsonBody, WaitQuery, enqueue_checked
from service.state import AppState
from service.submit import to_spec, within_ceilings
from service.waiting import wait_until_ended
from tenancy.models import Caller
from workers.judging import JUDGE_FIELD, JudgeTask
from workers.problem_store import (
    ProblemContentionError,
    StorageQuotaError,
    sha256_of,
    submission_view,
)
from workers.store import job_key, new_job_id

router = APIRouter(prefix="/v1", tags=["problems"])

ProblemId = Annotated[str, Path(pattern=PROBLEM_ID_PATTERN)]
SubmissionId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
_MAX_FUEL_RESERVE: Final = 1_000_000_000_000
_MAX_BLOB_BYTES: Final = 64 * 1024 * 1024


def _no_problem(problem_id: str) -> Problem:
    return Problem(404, "problem-not-found", "No such problem",
                   f"problem {problem_id!r} does not exist")


def _no_submission(submission_id: str) -> Problem:
    return Problem(404, "submission-not-found", "No such submission",
                   f"submission {submission_id!r} does not exist")


def _storage_full(err: StorageQuotaError) -> Problem:
    return quota_exceeded("stored_bytes", err.limit, err.used,
                          f"your problems keep {err.used} bytes of test data; these "
                          f"{err.asked} more would pass the limit of {err.limit}",
                          retry_after_s=None, status=403)


# -- blobs ---------------------------------------------------------------------------------
@router.post("/blobs", response_model=BlobStored, status_code=201)
async def put_blob(request: Request, state: StateDep, caller: SubmitterDep) -> BlobStored:
    """Store test data (the raw request body, any content type) once by its sha256; a
    problem then names it. Counted against the tenant's ``stored_bytes`` quota."""
    data = await request.body()
    if len(data) > _MAX_BLOB_BYTES:
        raise Problem(413, "blob-too-large", "The blob is too large",
                      f"{len(data)} bytes; a blob (one test file) is at most "
                      f"{_MAX_BLOB_BYTES} bytes")
    sha = sha256_of(data)
    try:
        charged = await run_in_threadpool(state.problems.put_blobs, caller.tenant,
                                          caller.quotas.stored_bytes, {sha: data}, set())
    except StorageQuotaError as err:
        raise _storage_full(err) from None
    return BlobStored(sha256=sha, size=len(data), charged_bytes=charged)


# -- problems ------------------------------------------------------------------------------
@router.put("/problems/{problem_id}", response_model=ProblemRecord,
            responses={201: {"model": ProblemRecord, "description": "Created"},
                       **problem_responses(409, descriptions={
                           409: "Other uploads of this problem kept racing this one"})},
            dependencies=[JsonBody])
async def put_problem(problem_id: ProblemId, upload: ProblemUpload, state: StateDep,
                      caller: SubmitterDep) -> Response:
    """Create a problem (201) or replace it with a new version (200). Every blob it names
    must be the tenant's own: in ``blobs`` here, or stored before (``POST /v1/blobs``)."""
    return await run_in_threadpool(_put_problem, state, caller, problem_id, upload)


def _put_problem(state: AppState, caller: Caller, problem_id: str,
                 upload: ProblemUpload) -> Response:
    for sha, data in upload.blobs.items():
        if sha256_of(data) != sha:
            raise Problem(422, "blob-hash-mismatch", "A blob's bytes do not match its hash",
                          f"blobs.{sha}: the sha256 of the bytes given is {sha256_of(data)}")
    needed = upload.problem.blobs()
    owned = state.problems.owned_blobs(caller.tenant, needed - set(upload.blobs))
    missing = sorted(needed - set(upload.blobs) - owned)
    if missing:
        raise Problem(422, "missing-blobs", "The problem names test data not stored",
                      f"{len(missing)} blob(s) are neither in `blobs` nor stored by your "
                      f"tenant (POST /v1/blobs), e.g. {missing[0]}", missing=missing[:100])
    try:
        state.problems.put_blobs(caller.tenant, caller.quotas.stored_bytes,
                                 {s: d for s, d in upload.blobs.items() if s in needed}, owned)
    except StorageQuotaError as err:
        raise _storage_full(err) from None
    try:
        version = state.problems.put_problem(caller.tenant, problem_id, upload.problem, None)
    except ProblemContentionError:
        raise Problem(409, "problem-busy", "The problem is being replaced by other uploads",
                      f"{problem_id}: other uploads kept adding versions; try again",
                      headers={"Retry-After": "1"}) from None
    record = state.problems.record(caller.tenant, problem_id, version)
    assert record is not None
    return JSONResponse(record.model_dump(mode="json"), status_code=201 if version == 1 else 200,
                        headers={"Location": f"/v1/problems/{problem_id}"})


@router.get("/problems", response_model=ProblemList)
async def list_problems(state: StateDep, caller: CallerDep) -> ProblemList:
    """The tenant's problem ids, oldest first."""
    return ProblemList(problems=await run_in_threadpool(state.problems.list_problems,
                                                         caller.tenant))


@router.get("/problems/{problem_id}", response_model=ProblemRecord)
async def get_problem(problem_id: ProblemId, state: StateDep, caller: CallerDep,
                      version: int | None = None) -> ProblemRecord:
    """The problem (its latest version, or ``version``). Another tenant's is a 404."""
    record = await run_in_threadpool(state.problems.record, caller.tenant, problem_id,
                                     version)
    if record is None:
        raise _no_problem(problem_id)
    return record


@router.delete("/problems/{problem_id}", status_code=204)
async def delete_problem(problem_id: ProblemId, state: StateDep,
                         caller: SubmitterDep) -> Response:
    """Delete every version; test data no other problem of the tenant uses is freed."""
    if not await run_in_threadpool(state.problems.delete_problem, caller.tenant, problem_id):
        raise _no_problem(problem_id)
    return Response(status_code=204)


# -- submissions ---------------------------------------------------------------------------
@router.post("/problems/{problem_id}/submissions", status_code=202, response_model=None,
             responses={200: {"model": SubmissionRecord, "description": "With `wait`: judged"},
                        202: {"model": SubmissionAccepted | SubmissionRecord,
                              "description": "Queued (with `wait`: still judging)"}},
             dependencies=[JsonBody])
async def submit(problem_id: ProblemId, body: SubmissionCreate, state: StateDep,
                 caller: SubmitterDep, request: Request,
                 wait: WaitQuery = 0) -> Response:
    """Judge a submission: compiled once, then every test case, spread over the workers.
    The problem's current version is the one it is judged against (and it says which)."""
    record = await run_in_threadpool(state.problems.record, caller.tenant, problem_id)
    if record is None:
        raise _no_problem(problem_id)
    problem = record.problem
    s = state.settings
    timing = TimingConfig(s.judge_fuel_per_second, s.judge_wall_factor, s.judge_wall_extra_s)
    tests = len(Plan(problem).order)
    per_test = submission_limits(problem, body.language, timing)
    given = body.model_dump(exclude_none=True, exclude={"compiler_flags"})
    job = JobSubmission(**given, compiler_flags=body.compiler_flags,
                        limits=Limits(module_bytes=per_test.module_bytes))
    spec, module = await run_in_threadpool(to_spec, job)
    spec = within_ceilings(job, spec, caller)
    reserve = min(per_test.fuel * tests, _MAX_FUEL_RESERVE)  # the whole judging's fuel
    spec = spec.model_copy(update={"limits": spec.limits.model_copy(update={"fuel": reserve})})
    submission_id, job_id = new_job_id(), new_job_id()
    task = JudgeTask(submission=submission_id, phase="compile")
    extra: list[tuple[Any, ...]] = [
        ("HSET", job_key(job_id), JUDGE_FIELD, task.model_dump_json()),
        *state.problems.submission_commands(submission_id, caller.tenant, problem_id,
                                            record.version, body.language, tests, job_id),
    ]
    fut = state.waiter.register(submission_id) if wait > 0 else None
    try:
        (queued,) = await enqueue_checked(state, request, caller, [(spec, module, job_id)],
                                          extra, ids=[submission_id])
    except BaseException:
        if fut is not None:
            state.waiter.discard(submission_id, fut)
        raise
    replayed = queued != submission_id  # a retry with the same Idempotency-Key: the first
    if replayed:                           # one's submission, maybe judged already, so the
        if fut is not None:                # wait reads its record first
            state.waiter.discard(submission_id, fut)
            fut = None
        submission_id = queued
    location = {"Location": f"/v1/problems/{problem_id}/submissions/{submission_id}"}
    if wait <= 0:
        now = ((await _wait(state, caller, problem_id, submission_id, 0)).state
               if replayed else JobState.QUEUED)
        accepted = SubmissionAccepted(id=submission_id, state=now)
        return JSONResponse(accepted.model_dump(mode="json"), 202, headers=location)
    view = await _wait(state, caller, problem_id, submission_id, wait, fut)
    return JSONResponse(view.model_dump(mode="json"), 200 if view.state.terminal else 202,
                        headers=location)


@router.get("/problems/{problem_id}/submissions/{submission_id}",
            response_model=SubmissionRecord,
            responses={202: {"model": SubmissionRecord,
                             "description": "With `wait`: still judging"}})
async def get_submission(problem_id: ProblemId, submission_id: SubmissionId,
                         state: StateDep, caller: CallerDep, wait: WaitQuery = 0) -> Response:
    """A submission: per test verdict, time, fuel, memory and checker message; overall
    verdict, score and first failing test once judged. With ``wait``: once judged (200)
    or when the wait runs out (202)."""
    view = await _wait(state, caller, problem_id, submission_id, wait)
    status = 200 if view.state.terminal or wait <= 0 else 202
    return JSONResponse(view.model_dump(mode="json"), status)


@router.get("/problems/{problem_id}/submissions", response_model=SubmissionList)
async def list_submissions(problem_id: ProblemId, state: StateDep, caller: CallerDep,
                           limit: int = 20) -> SubmissionList:
    """The problem's most recent submissions, newest first (their tests left out); 404
    for a problem the tenant does not have (as every other route under it)."""
    if await run_in_threadpool(state.problems.record, caller.tenant, problem_id) is None:
        raise _no_problem(problem_id)
    limit = max(1, min(limit, 100))
    ids = await run_in_threadpool(state.problems.list_submissions, caller.tenant,
                                  problem_id, limit)
    views = []
    for submission_id in ids:
        view = await run_in_threadpool(_view, state, caller, problem_id, submission_id, False)
        if view is not None:
            views.append(view)
    return SubmissionList(submissions=views)


def _view(state: AppState, caller: Caller, problem_id: str, submission_id: str,
          with_tests: bool = True) -> SubmissionRecord | None:
    fields = state.problems.submission_fields(submission_id)
    if not fields or fields.get("tenant") != caller.tenant \
            or fields.get("problem_id") != problem_id:
        return None
    if fields.get("state") == JobState.QUEUED.value:
        why = state.problems.compile_lost(fields)
        problem = None if why is None else state.problems.problem(
            caller.tenant, problem_id, int(fields["version"]))
        if why is not None and problem is not None:
            state.problems.finish(submission_id, failed_whole(problem, Verdict.IE, why),
                                  JobState.FAILED, why)
            fields = state.problems.submission_fields(submission_id) or fields
    running = fields.get("state") == JobState.RUNNING.value
    results = state.problems.test_results(submission_id) if with_tests or running else {}
    if running and _settle_lost(state, caller, submission_id, fields, results):
        fields = state.problems.submission_fields(submission_id) or fields
        results = state.problems.test_results(submission_id)
    view = submission_view(submission_id, fields, list(results.values()))
    return view if with_tests else view.model_copy(update={"tests": []})


def _settle_lost(state: AppState, caller: Caller, submission_id: str,
                 fields: dict[str, str], results: dict[str, TestResult]) -> bool:
    """A test whose job failed for good (its workers kept dying) is IE; once every test is
    accounted for, the submission is graded here, so it never stays running for ever.
    Whether anything was recorded."""
    lost = state.problems.lost_tests(submission_id, set(results))
    if not lost:
        return False
    problem = state.problems.problem(caller.tenant, fields["problem_id"],
                                     int(fields["version"]))
    done = total = 0
    for result in lost:
        done, total = state.problems.record_test(submission_id, result)
    if problem is not None and total and done >= total:
        plan = Plan(problem)
        state.problems.finish(submission_id, plan.grade(state.problems.test_results(
            submission_id)))
    return True


async def _wait(state: AppState, caller: Caller, problem_id: str, submission_id: str,
                wait_s: float, fut: asyncio.Future[None] | None = None) -> SubmissionRecord:
    return await wait_until_ended(
        state, submission_id, wait_s,
        lambda: run_in_threadpool(_view, state, caller, problem_id, submission_id),
        lambda view: view.state.terminal, lambda: _no_submission(submission_id), fut)
