"""Putting jobs on the RQ queue: record + module + RQ job in one pipeline round trip."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Final, NamedTuple

import redis
from rq import Queue

from sandboxes.schema import LIMIT_BOUNDS, JobSpec
from tenancy.limits import (
    GCRA,
    STORED_BUCKET_S,
    Admission,
    fuel_key,
    problem_bytes_key,
    rate_key,
    rejection_keys,
    stored_key,
)
from tenancy.quotas import Quotas
from workers.lua import replayed_keys, script, unique
from workers.pools import Pool, pool_key, pool_of, pool_queue_base
from workers.scheduling import (
    RING,
    TAKE,
    TAKE_SCAN,
    TAKEN,
    ring_keys,
    tenant_queue_name,
    tenant_take_keys,
)
from workers.store import DEFAULT_TENANT, REPLAY, JobStore, flatten, job_key, new_job_id

log = logging.getLogger(__name__)

_DEFAULTS: Final = Quotas()  # a tenant's scheduling quotas when its record has none
_INTERNAL_CAP: Final = 1 << 40

TASK: Final = "workers.tasks.execute"
# RQ's own timeout is only the backstop: the sandbox enforces wall time itself.
BACKSTOP_MARGIN_S: Final = 60
_TAKE_TRIES: Final = 5  # a take whose rings changed between its read and its script


# KEYS[1], KEYS[2]=the tenant's RQ queues (sandbox and jail pools: their sum is what it has
# queued), then every other key it touches (guarded_enqueue_args) ARGV: Warden's queue cap,
# then Admission (tenancy/limits.py):
# max_queued, jobs, tenant, submission interval (s), burst, fuel to reserve, daily fuel,
# day, seconds left in it, input bytes, stored-bytes quota, first stored bucket counted,
# current bucket, usage retention (s), the pools the jobs are queued in (space-separated);
# then each command as (argc, command, args...).
# Every check and the submission's writes in one atomic step (one round trip, and no
# check-then-enqueue race between API processes): a batch is admitted whole or not at all,
# and nothing of a refused one is charged. Replies: {1, remaining, reset} queued (the
# submission rate after it); {0} Warden's queue cap; {-1, quota, limit, used, retry,
# remaining, reset} over a quota (-2: one that waiting will never satisfy).
_GUARDED_ENQUEUE = script("enqueue", REPLAY + RING + GCRA + """
local n, tenant, day, retention = tonumber(ARGV[3]), ARGV[4], ARGV[9], tonumber(ARGV[15])
local idem = ARGV[17]  -- an Idempotency-Key's record ('' for none): seen, nothing is queued
if idem ~= '' then
  local seen = redis.call('GET', key(idem))
  if seen then return {2, seen} end
end
replay_check(20)  -- every key of the writes below checked before any is made
for pool in string.gmatch(ARGV[16], '%S+') do ring_check(pool) end
local interval, burst = tonumber(ARGV[5]), tonumber(ARGV[6])
local rate = key('warden:rate:' .. tenant .. ':submissions')
local ok, rem, reset, retry = gcra(rate, interval, burst, n, false)
local function refuse(code, quota, limit, used, wait)
  count_rejection(tenant, quota, day, retention)
  return {code, quota, tostring(limit), tostring(used), tostring(wait), tostring(rem),
          tostring(reset)}
end
if n > burst then return refuse(-2, 'submission_burst', burst, n, 0) end
if not ok then return refuse(-1, 'submissions_per_minute', burst, burst - rem, retry) end
local queued = redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2])
if queued + n > tonumber(ARGV[2]) then return refuse(-1, 'max_queued', ARGV[2], queued, 1) end
if queued + n > tonumber(ARGV[1]) then return {0} end
local fuel_key = key('warden:fuel:' .. tenant .. ':' .. day)
local reserved, reserve, daily = tonumber(redis.call('GET', fuel_key) or '0'),
                                 tonumber(ARGV[7]), tonumber(ARGV[8])
if reserve > daily then return refuse(-2, 'daily_fuel', daily, reserved, 0) end
if reserved + reserve > daily then return refuse(-1, 'daily_fuel', daily, reserved, ARGV[10]) end
local stored_key, oldest = key('warden:stored:' .. tenant), tonumber(ARGV[13])
local buckets = redis.call('HGETALL', stored_key)
local stored = tonumber(redis.call('GET', key('warden:problem-bytes:' .. tenant)) or '0')
for i = 1, #buckets, 2 do
  if tonumber(buckets[i]) < oldest then redis.call('HDEL', stored_key, buckets[i])
  else stored = stored + tonumber(buckets[i + 1]) end
end
local size, quota = tonumber(ARGV[11]), tonumber(ARGV[12])
if size > quota then return refuse(-2, 'stored_bytes', quota, stored, 0) end
if stored + size > quota then return refuse(-1, 'stored_bytes', quota, stored, 600) end
ok, rem, reset = gcra(rate, interval, burst, n, true)
redis.call('INCRBY', fuel_key, reserve)
redis.call('EXPIRE', fuel_key, 3 * 86400)
redis.call('HINCRBY', stored_key, ARGV[14], size)
redis.call('EXPIRE', stored_key, (tonumber(ARGV[14]) - oldest + 2) * 600)
replay(20)
if idem ~= '' then redis.call('SET', key(idem), ARGV[18], 'EX', tonumber(ARGV[19])) end
for pool in string.gmatch(ARGV[16], '%S+') do
  join_ring(tenant, pool)
  ring(n, pool)
end
return {1, tostring(rem), tostring(reset)}
""")

Submission = tuple[JobSpec, tuple[str, bytes] | None, str]  # spec, module, job id


class QueueFullError(Exception):
    pass


class Idempotency(NamedTuple):
    """An ``Idempotency-Key``'s record: written in the step that queues the jobs, so a
    retry finds it exactly when the first attempt's jobs exist (nothing in between)."""

    key: str  # its Redis key (per tenant)
    value: str  # what a retry gets back (the request's fingerprint and its ids)
    ttl_s: int


class AlreadySubmittedError(Exception):
    """An earlier request with the same Idempotency-Key queued its jobs: nothing was
    queued now; ``previous`` is that request's record (``Idempotency.value``)."""

    def __init__(self, previous: str) -> None:
        super().__init__("already submitted under this idempotency key")
        self.previous = previous


class QuotaExceededError(Exception):
    """A tenant quota refused the submission: ``retry_s`` 0 when waiting will not help."""

    def __init__(self, quota: str, limit: float, used: float, retry_s: float,
                 rate: tuple[int, float]) -> None:
        super().__init__(f"{quota}: {used} used, limit {limit}")
        self.quota, self.limit, self.used, self.retry_s = quota, limit, used, retry_s
        self.rate = rate  # the submission rate's (remaining, reset s) at the refusal

    @property
    def permanent(self) -> bool:
        return self.retry_s <= 0


def admitted(reply: Any) -> tuple[int, float]:
    """The submission rate's (remaining, reset s) of an enqueue that queued its jobs, or
    the error its reply stands for."""
    values = [v.decode() if isinstance(v, bytes) else v for v in reply]
    code = int(values[0])
    if code == 2:
        raise AlreadySubmittedError(str(values[1]))
    if code == 1:
        return int(float(values[1])), float(values[2])
    if code == 0:
        raise QueueFullError
    quota, limit, used, retry, remaining, reset = values[1:]
    retry_s = float(retry) if code == -1 else 0.0
    raise QuotaExceededError(str(quota), _number(limit), _number(used), retry_s,
                             (int(float(remaining)), float(reset)))


def _number(text: str) -> float:
    value = float(text)
    return int(value) if value.is_integer() else value


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
        self._queues: dict[tuple[str, Pool], Queue] = {}
        self._take = client.register_script(TAKE)

    def tenant_rq(self, tenant: str, pool: Pool = Pool.SANDBOX) -> Queue:
        """The RQ queue of ``tenant``'s jobs in ``pool``."""
        queue = self._queues.get((tenant, pool))
        if queue is None:
            queue = Queue(tenant_queue_name(pool_queue_base(self.name, pool), tenant),
                          connection=self.client)
            self._queues[(tenant, pool)] = queue
        return queue

    def queued(self, tenant: str) -> list[str]:
        """The keys of ``tenant``'s RQ queues, one per pool (their lengths: what it has
        queued)."""
        return [self.tenant_rq(tenant, pool).key for pool in Pool]

    def load_scripts(self) -> None:
        self._take.sha = self.client.script_load(self._take.script)

    def take_args(self, lease_s: float, pools: tuple[Pool, ...] = (Pool.SANDBOX,)
                  ) -> list[Any]:
        """``EVALSHA`` arguments of :data:`TAKE` (for a pipeline; scripts loaded first):
        reads the rings' first places to declare their tenants' keys."""
        keys, args = self._take_keys_args(lease_s, pools)
        return [self._take.sha, len(keys), *keys, *args]

    def take(self, lease_s: float, pools: tuple[Pool, ...] = (Pool.SANDBOX,)
             ) -> tuple[str, str, str] | None:
        """(rq id, queue name, tenant) of the next job any tenant may run now in one of
        ``pools`` (tried in order), or None."""
        for _ in range(_TAKE_TRIES):
            keys, args = self._take_keys_args(lease_s, pools)
            reply = self._take(keys=keys, args=args)
            if not is_stale(reply):
                return taken_reply(reply)
        # The rings kept changing under us (or the declared keys are wrong: a bug the
        # suite's script-key test would show); the lane comes back in a moment.
        log.warning("take: the rings changed %d times in a row; nothing taken", _TAKE_TRIES)
        return None

    def _take_keys_args(self, lease_s: float, pools: tuple[Pool, ...]
                        ) -> tuple[list[str], list[Any]]:
        pipe = self.client.pipeline(transaction=False)
        for pool in pools:
            pipe.zrange(pool_key("ready", pool), 0, TAKE_SCAN - 1)
        windows: list[list[bytes]] = pipe.execute()
        keys = [self.rq.key, self.intermediate_key, TAKEN]
        for pool, tenants in zip(pools, windows, strict=True):
            keys += ring_keys(pool)
            base = pool_queue_base(self.name, pool)
            for tenant in tenants:
                keys += tenant_take_keys(base, tenant.decode())
        now = time.time()
        args: list[Any] = [repr(now), now + lease_s, self.name, _DEFAULTS.max_running,
                           _DEFAULTS.weight, TAKE_SCAN]
        for pool in pools:
            args += [pool.value, pool_queue_base(self.name, pool)]
        return unique(keys), args

    def queue_names(self) -> list[str]:
        """The base queue and every tenant queue of every pool RQ knows of (RQ's own
        ``rq:queues``)."""
        prefixes = tuple(pool_queue_base(self.name, pool) + "." for pool in Pool)
        tenants = sorted(q.name for q in Queue.all(connection=self.client)
                         if q.name.startswith(prefixes))
        return [self.name, *tenants]

    def submit(self, spec: JobSpec, module: tuple[str, bytes] | None = None,
               job_id: str | None = None, tenant: str = DEFAULT_TENANT,
               admission: Admission | None = None) -> str:
        """Create the record and enqueue it; QueueFullError when the queue is at its cap,
        QuotaExceededError when a tenant quota refuses it."""
        job_id = job_id or new_job_id()
        args = self.guarded_enqueue_args([(spec, module, job_id)], tenant, admission)
        admitted(self.client.eval(_GUARDED_ENQUEUE, *args))
        return job_id

    def commands(self, spec: JobSpec, module: tuple[str, bytes] | None,
                 job_id: str, tenant: str = DEFAULT_TENANT, fuel_day: str | None = None
                 ) -> list[tuple[Any, ...]]:
        """The commands of one submission's MULTI (written by RQ's own enqueue code), for
        a client that sends them itself (the API's asyncio Redis)."""
        return _stack(self._pipeline(spec, module, job_id, tenant, fuel_day))

    guarded_enqueue_script: Final = _GUARDED_ENQUEUE

    def guarded_enqueue_args(self, submissions: list[Submission],
                             tenant: str = DEFAULT_TENANT,
                             admission: Admission | None = None,
                             extra: list[tuple[Any, ...]] | None = None,
                             internal: bool = False,
                             idempotency: Idempotency | None = None) -> list[Any]:
        """``EVAL`` arguments after the script: the submissions' commands, run only if they
        all fit below the queue's cap and the tenant's quotas (``admission``; None: the
        default quotas). ``extra``: more writes made in the same step (a judge submission's
        record); ``internal``: jobs an admitted submission spawns (a judge's tests), past
        Warden's queue cap; ``idempotency``: the request's Idempotency-Key record, checked
        first (AlreadySubmittedError) and written with the jobs."""
        now = time.time()
        a = admission or Admission.of(_DEFAULTS, now, self.store.job_ttl_s, 86_400)
        day = a.day
        fuel = sum(spec.limits.fuel for spec, _, _ in submissions)
        size = sum(input_bytes(spec, module) for spec, module, _ in submissions)
        bucket = int(now // STORED_BUCKET_S)
        oldest = bucket - a.stored_window_s // STORED_BUCKET_S
        cap = _INTERNAL_CAP if internal else self.max_length
        pools = sorted({pool_of(spec).value for spec, _, _ in submissions})
        args: list[Any] = [cap, a.max_queued,
                           len(submissions), tenant, 60 / a.submissions_per_minute,
                           a.submission_burst, fuel, a.daily_fuel, day, a.day_left_s, size,
                           a.stored_bytes, oldest, bucket, a.retention_s, " ".join(pools),
                           *(idempotency or ("", "", 0))]
        commands = [c for spec, module, job_id in submissions
                    for c in self.commands(spec, module, job_id, tenant, day)]
        commands += extra or []
        args.extend(flatten(commands))
        keys = [*self.queued(tenant), rate_key(tenant, "submissions"), fuel_key(tenant, day),
                stored_key(tenant), problem_bytes_key(tenant), *rejection_keys(tenant, day),
                *([idempotency.key] if idempotency else []), *replayed_keys(commands),
                *(k for pool in pools for k in ring_keys(pool))]
        keys = unique(keys)
        return [len(keys), *keys, *args]

    def submit_internal(self, submissions: list[Submission], tenant: str,
                        extra: list[tuple[Any, ...]]) -> None:
        """Queue jobs an admitted submission spawns: no rate or queue-length check (the
        submission was checked, its fuel reserved), their fuel reserved as they queue."""
        day = Admission.of(_DEFAULTS, time.time(), self.store.job_ttl_s, 86_400)
        a = Admission(_INTERNAL_CAP, _INTERNAL_CAP, _INTERNAL_CAP, 10**15, _INTERNAL_CAP,
                      day.day, day.day_left_s, day.stored_window_s, day.retention_s)
        args = self.guarded_enqueue_args(submissions, tenant, a, extra, internal=True)
        admitted(self.client.eval(_GUARDED_ENQUEUE, *args))

    def _pipeline(self, spec: JobSpec, module: tuple[str, bytes] | None,
                  job_id: str, tenant: str, fuel_day: str | None) -> redis.client.Pipeline:
        pipe = self.client.pipeline(transaction=True)
        pool = pool_of(spec)
        self._enqueue(job_id, job_id, spec.limits.wall_time_s, pipe, tenant, pool)  # MULTI
        if module is not None:
            self.store.put_module(module[0], module[1], pipe)
        self.store.create(job_id, spec, pipe, tenant, fuel_day, pool.value)
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
        pool = pool_of(spec) if spec else Pool.SANDBOX
        # at the front: it already waited its turn once, it must not wait behind the backlog
        self._enqueue(job_id, rq_id, wall_time_s, pipe, tenant, pool, at_front=True)
        pipe.hset(job_key(job_id), "rq_id", rq_id)  # a cancel while queued removes this entry
        return _stack(pipe)

    def _enqueue(self, job_id: str, rq_id: str, wall_time_s: float,
                 pipe: redis.client.Pipeline | None, tenant: str, pool: Pool,
                 at_front: bool = False) -> None:
        self.tenant_rq(tenant, pool).enqueue_call(
            TASK,
            args=(job_id,),
            at_front=at_front,
            timeout=int(wall_time_s) + BACKSTOP_MARGIN_S,
            result_ttl=0,
            failure_ttl=3600,
            job_id=rq_id,
            pipeline=pipe,
        )


def input_bytes(spec: JobSpec, module: tuple[str, bytes] | None) -> int:
    """The bytes a job's inputs keep in the store (its stored_bytes charge)."""
    size = len(module[1]) if module is not None else len((spec.source or "").encode())
    return size + len(spec.grants.stdin) + sum(len(f) for f in spec.grants.files.values())


def is_stale(reply: Any) -> bool:
    """Whether :data:`TAKE` met a tenant its caller had not declared (take again)."""
    return isinstance(reply, bytes | str) and reply in (b"stale", "stale")


def taken_reply(reply: Any) -> tuple[str, str, str] | None:
    """:data:`TAKE`'s reply as (rq id, queue name, tenant); None when nothing was taken."""
    if not reply or is_stale(reply):
        return None
    rq_id, queue_name, tenant = (v.decode() if isinstance(v, bytes) else str(v) for v in reply)
    return rq_id, queue_name, tenant


def _stack(pipe: redis.client.Pipeline) -> list[tuple[Any, ...]]:
    try:
        return [args for args, _ in pipe.command_stack]
    finally:
        pipe.reset()
