"""Putting jobs on the RQ queue: record + module + RQ job in one pipeline round trip."""

from __future__ import annotations

import uuid
from typing import Any, Final

import redis
from rq import Queue

from sandboxes.schema import LIMIT_BOUNDS, JobSpec
from workers.store import DEFAULT_TENANT, REPLAY, JobStore, flatten, job_key, new_job_id

TASK: Final = "workers.tasks.execute"
# RQ's own timeout is only the backstop: the sandbox enforces wall time itself.
BACKSTOP_MARGIN_S: Final = 60


# KEYS[1]=RQ queue ARGV: max_length, jobs, then each command as (argc, command, args...).
# The queue-length check and the submission's writes in one atomic step (one round trip,
# and no check-then-enqueue race between API processes): a batch is queued whole or not.
_GUARDED_ENQUEUE = REPLAY + """
if redis.call('LLEN', KEYS[1]) + tonumber(ARGV[2]) > tonumber(ARGV[1]) then return 0 end
replay(3)
return 1
"""

Submission = tuple[JobSpec, tuple[str, bytes] | None, str]  # spec, module, job id


class QueueFullError(Exception):
    pass


def warden_id(rq_id: str) -> str:
    """The Warden job id of an RQ job id: the same on the first run; a re-run (after its
    worker died) gets ``<id>-<suffix>`` so it never collides with the dead run's RQ keys."""
    return rq_id.partition("-")[0]


class JobQueue:
    def __init__(self, client: redis.Redis, store: JobStore, name: str, max_length: int) -> None:
        self.client = client
        self.store = store
        self.rq = Queue(name, connection=client)
        self.max_length = max_length

    def submit(self, spec: JobSpec, module: tuple[str, bytes] | None = None,
               job_id: str | None = None, tenant: str = DEFAULT_TENANT) -> str:
        """Create the record and enqueue it; QueueFullError when the queue is at its cap."""
        job_id = job_id or new_job_id()
        args = self.guarded_enqueue_args([(spec, module, job_id)], tenant)
        if not self.client.eval(_GUARDED_ENQUEUE, *args):
            raise QueueFullError
        return job_id

    def commands(self, spec: JobSpec, module: tuple[str, bytes] | None,
                 job_id: str, tenant: str = DEFAULT_TENANT) -> list[tuple[Any, ...]]:
        """The commands of one submission's MULTI (written by RQ's own enqueue code), for
        a client that sends them itself (the API's asyncio Redis)."""
        return _stack(self._pipeline(spec, module, job_id, tenant))

    guarded_enqueue_script: Final = _GUARDED_ENQUEUE

    def guarded_enqueue_args(self, submissions: list[Submission],
                             tenant: str = DEFAULT_TENANT) -> list[Any]:
        """``EVAL`` arguments after the script: the submissions' commands, run only if they
        all fit below the queue's cap (the script returns 0 when they do not)."""
        args: list[Any] = [1, self.rq.key, self.max_length, len(submissions)]
        for spec, module, job_id in submissions:
            args.extend(flatten(self.commands(spec, module, job_id, tenant)))
        return args

    def _pipeline(self, spec: JobSpec, module: tuple[str, bytes] | None,
                  job_id: str, tenant: str) -> redis.client.Pipeline:
        pipe = self.client.pipeline(transaction=True)
        self._enqueue(job_id, job_id, spec.limits.wall_time_s, pipe)  # RQ opens the MULTI
        if module is not None:
            self.store.put_module(module[0], module[1], pipe)
        self.store.create(job_id, spec, pipe, tenant)
        return pipe

    @property
    def intermediate_key(self) -> str:
        """Where a worker's BLMOVE puts a job between taking and starting it (RQ's name)."""
        return f"{self.rq.key}:intermediate"

    def requeue_commands(self, job_id: str) -> list[tuple[Any, ...]]:
        """What puts a job whose worker died back on the queue, under a fresh RQ id (so it
        never collides with the dead run's RQ keys); the reaper runs these inside its own
        script, so a job is never left queued in its record but absent from the queue."""
        spec = self.store.spec(job_id)
        wall_time_s = spec.limits.wall_time_s if spec else LIMIT_BOUNDS["wall_time_s"].maximum
        rq_id = f"{job_id}-{uuid.uuid4().hex[:12]}"
        pipe = self.client.pipeline(transaction=True)
        self._enqueue(job_id, rq_id, wall_time_s, pipe)
        pipe.hset(job_key(job_id), "rq_id", rq_id)  # a cancel while queued removes this entry
        return _stack(pipe)

    def _enqueue(self, job_id: str, rq_id: str, wall_time_s: float,
                 pipe: redis.client.Pipeline | None) -> None:
        self.rq.enqueue_call(
            TASK,
            args=(job_id,),
            timeout=int(wall_time_s) + BACKSTOP_MARGIN_S,
            result_ttl=0,
            failure_ttl=3600,
            job_id=rq_id,
            pipeline=pipe,
        )


def _stack(pipe: redis.client.Pipeline) -> list[tuple[Any, ...]]:
    try:
        return [args for args, _ in pipe.command_stack]
    finally:
        pipe.reset()
