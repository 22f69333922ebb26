"""Putting jobs on the RQ queue: record + module + RQ job in one pipeline round trip."""

from __future__ import annotations

import time
import uuid
from typing import Any, Final

import redis
from rq import Queue

from sandboxes.schema import LIMIT_BOUNDS, JobSpec
from tenancy.quotas import Quotas
from workers.scheduling import RING, TAKE, TAKE_SCAN, tenant_queue_name
from workers.store import DEFAULT_TENANT, REPLAY, JobStore, flatten, job_key, new_job_id

_DEFAULTS: Final = Quotas()  # a tenant's scheduling quotas when its record has none

TASK: Final = "workers.tasks.execute"
# RQ's own timeout is only the backstop: the sandbox enforces wall time itself.
BACKSTOP_MARGIN_S: Final = 60


# KEYS[1]=the tenant's RQ queue ARGV: queue cap, tenant's max_queued, jobs, tenant, then each
# command as (argc, command, args...). The length checks and the submission's writes in one
# atomic step (one round trip, and no check-then-enqueue race between API processes): a
# batch is queued whole or not. 1: queued; 0: the queue is at Warden's cap; -1: at the
# tenant's max_queued quota. A tenant with waiting work joins the scheduler's ring.
_GUARDED_ENQUEUE = REPLAY + RING + """
local queued = redis.call('LLEN', KEYS[1]) + tonumber(ARGV[3])
if queued > tonumber(ARGV[2]) then return -1 end
if queued > tonumber(ARGV[1]) then return 0 end
replay(5)
join_ring(ARGV[4])
ring(tonumber(ARGV[3]))
return 1
"""

Submission = tuple[JobSpec, tuple[str, bytes] | None, str]  # spec, module, job id


class QueueFullError(Exception):
    pass


class TenantQueueFullError(Exception):
    """The tenant has ``max_queued`` jobs waiting (its quota, not Warden's capacity)."""

    def __init__(self, queued: int, limit: int) -> None:
        super().__init__(f"{queued} jobs queued, limit {limit}")
        self.queued = queued
        self.limit = limit


def warden_id(rq_id: str) -> str:
    """The Warden job id of an RQ job id: the same on the first run; a re-run (after its
    worker died) gets ``<id>-<suffix>`` so it never collides with the dead run's RQ keys."""
    return rq_id.partition("-")[0]


class JobQueue:
    def __init__(self, client: redis.Redis, store: JobStore, name: str, max_length: int) -> None:
        self.client = client
        self.store = store
        self.name = name
        self.rq = Queue(name, connection=client)  # jobs queued before queues were per tenant
        self.max_length = max_length
        self._queues: dict[str, Queue] = {}
        self._take = client.register_script(TAKE)

    def tenant_rq(self, tenant: str) -> Queue:
        """The RQ queue of ``tenant``'s jobs."""
        queue = self._queues.get(tenant)
        if queue is None:
            queue = Queue(tenant_queue_name(self.name, tenant), connection=self.client)
            self._queues[tenant] = queue
        return queue

    def load_scripts(self) -> None:
        self._take.sha = self.client.script_load(self._take.script)

    def take_args(self, lease_s: float) -> list[Any]:
        """``EVALSHA`` arguments of :data:`TAKE` (for a pipeline; scripts loaded first)."""
        return [self._take.sha, 2, *self._take_keys_args(lease_s)]

    def take(self, lease_s: float) -> tuple[str, str, str] | None:
        """(rq id, queue name, tenant) of the next job any tenant may run now, or None."""
        keys_args = self._take_keys_args(lease_s)
        return taken_reply(self._take(keys=keys_args[:2], args=keys_args[2:]))

    def _take_keys_args(self, lease_s: float) -> list[Any]:
        now = time.time()
        return [self.rq.key, self.intermediate_key, repr(now), now + lease_s, self.name,
                _DEFAULTS.max_running, _DEFAULTS.weight, TAKE_SCAN]

    def queue_names(self) -> list[str]:
        """The base queue and every tenant queue RQ knows of (RQ's own ``rq:queues``)."""
        prefix = self.name + "."
        tenants = sorted(q.name for q in Queue.all(connection=self.client)
                         if q.name.startswith(prefix))
        return [self.name, *tenants]

    def submit(self, spec: JobSpec, module: tuple[str, bytes] | None = None,
               job_id: str | None = None, tenant: str = DEFAULT_TENANT,
               max_queued: int | None = None) -> str:
        """Create the record and enqueue it; QueueFullError when the queue is at its cap,
        TenantQueueFullError when the tenant is at ``max_queued``."""
        job_id = job_id or new_job_id()
        args = self.guarded_enqueue_args([(spec, module, job_id)], tenant, max_queued)
        self.check_enqueued(self.client.eval(_GUARDED_ENQUEUE, *args), tenant, max_queued)
        return job_id

    def check_enqueued(self, reply: Any, tenant: str, max_queued: int | None) -> None:
        """Raise the error a :data:`_GUARDED_ENQUEUE` reply stands for, if any."""
        if int(reply) == 0:
            raise QueueFullError
        if int(reply) < 0:
            limit = max_queued if max_queued is not None else self.max_length
            raise TenantQueueFullError(int(self.client.llen(self.tenant_rq(tenant).key)), limit)

    def commands(self, spec: JobSpec, module: tuple[str, bytes] | None,
                 job_id: str, tenant: str = DEFAULT_TENANT) -> list[tuple[Any, ...]]:
        """The commands of one submission's MULTI (written by RQ's own enqueue code), for
        a client that sends them itself (the API's asyncio Redis)."""
        return _stack(self._pipeline(spec, module, job_id, tenant))

    guarded_enqueue_script: Final = _GUARDED_ENQUEUE

    def guarded_enqueue_args(self, submissions: list[Submission],
                             tenant: str = DEFAULT_TENANT,
                             max_queued: int | None = None) -> list[Any]:
        """``EVAL`` arguments after the script: the submissions' commands, run only if they
        all fit below the queue's cap and the tenant's ``max_queued``."""
        cap = self.max_length if max_queued is None else max_queued
        args: list[Any] = [1, self.tenant_rq(tenant).key, self.max_length, cap,
                           len(submissions), tenant]
        for spec, module, job_id in submissions:
            args.extend(flatten(self.commands(spec, module, job_id, tenant)))
        return args

    def _pipeline(self, spec: JobSpec, module: tuple[str, bytes] | None,
                  job_id: str, tenant: str) -> redis.client.Pipeline:
        pipe = self.client.pipeline(transaction=True)
        self._enqueue(job_id, job_id, spec.limits.wall_time_s, pipe, tenant)  # RQ opens MULTI
        if module is not None:
            self.store.put_module(module[0], module[1], pipe)
        self.store.create(job_id, spec, pipe, tenant)
        return pipe

    @property
    def intermediate_key(self) -> str:
        """Where a take puts a base-queue job between taking and starting it (RQ's name)."""
        return f"{self.rq.key}:intermediate"

    def requeue_commands(self, job_id: str) -> list[tuple[Any, ...]]:
        """What puts a job whose worker died back on its tenant's queue, under a fresh RQ id
        (so it never collides with the dead run's RQ keys); the reaper runs these inside its
        own script, so a job is never left queued in its record but absent from the queue."""
        spec, tenant = self.store.spec(job_id), self.store.tenant(job_id)
        wall_time_s = spec.limits.wall_time_s if spec else LIMIT_BOUNDS["wall_time_s"].maximum
        rq_id = f"{job_id}-{uuid.uuid4().hex[:12]}"
        pipe = self.client.pipeline(transaction=True)
        self._enqueue(job_id, rq_id, wall_time_s, pipe, tenant)
        pipe.hset(job_key(job_id), "rq_id", rq_id)  # a cancel while queued removes this entry
        return _stack(pipe)

    def _enqueue(self, job_id: str, rq_id: str, wall_time_s: float,
                 pipe: redis.client.Pipeline | None, tenant: str) -> None:
        self.tenant_rq(tenant).enqueue_call(
            TASK,
            args=(job_id,),
            timeout=int(wall_time_s) + BACKSTOP_MARGIN_S,
            result_ttl=0,
            failure_ttl=3600,
            job_id=rq_id,
            pipeline=pipe,
        )


def taken_reply(reply: Any) -> tuple[str, str, str] | None:
    """:data:`TAKE`'s reply as (rq id, queue name, tenant); None when nothing was taken."""
    if not reply:
        return None
    rq_id, queue_name, tenant = (v.decode() if isinstance(v, bytes) else str(v) for v in reply)
    return rq_id, queue_name, tenant


def _stack(pipe: redis.client.Pipeline) -> list[tuple[Any, ...]]:
    try:
        return [args for args, _ in pipe.command_stack]
    finally:
        pipe.reset()
