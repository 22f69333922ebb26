"""The function RQ runs: take a job by its lease, run it in the sandbox, record it once."""

from __future__ import annotations

import logging
import time

from sandboxes.runtime.control import CancelToken
from sandboxes.schema import JobSpec, JobState, RunResult, RunStatus
from workers.accounting import account_args
from workers.judging import JUDGE_FIELD, judge_worker
from workers.runtime import runtime
from workers.store import job_key

log = logging.getLogger(__name__)


def execute(job_id: str) -> None:
    rt = runtime()
    token = rt.store.start(job_id)
    if token is None:
        return  # cancelled while queued, or another attempt already took it
    cancel = CancelToken()
    rt.track(job_id, token, cancel)
    try:
        if rt.store.cancel_requested(job_id):
            cancel.cancel()
        spec = rt.store.spec(job_id)
        task = rt.client.hget(job_key(job_id), JUDGE_FIELD)
        if spec is not None and isinstance(task, bytes):
            result = judge_worker(rt).run(job_id, task.decode(), spec, cancel)
        else:
            result = run_spec(spec, cancel) if spec is not None else None
        account = account_args(spec, result, time.time(), rt.usage_retention_s, None)
        if result is None:
            rt.store.finish(job_id, token, JobState.FAILED, None, "job spec or module expired",
                            account)
            return
        state = JobState.CANCELLED if result.status is RunStatus.CANCELLED else JobState.FINISHED
        if not rt.store.finish(job_id, token, state, result, account=account):
            log.warning("job %s: lease lost before its result was recorded", job_id)
    except Exception:
        log.exception("job %s failed outside the sandbox", job_id)
        rt.store.finish(job_id, token, JobState.FAILED, None, "internal error (see worker log)")
    finally:
        rt.untrack(job_id)


def run_spec(spec: JobSpec, cancel: CancelToken) -> RunResult | None:
    rt = runtime()
    if spec.module_sha256 is not None:
        module = rt.module(spec.module_sha256)
        if module is None:
            return None
        return rt.sandbox.run(module, spec.limits, spec.grants, cancel)
    if spec.language is not None and spec.source is not None:
        return rt.sources.run(
            spec.language, spec.source, spec.limits, spec.grants, spec.compiler_flags, cancel
        )
    return RunResult(status=RunStatus.INTERNAL_ERROR, message="job has neither module nor source")
