"""Warden's own Redis keys: the authoritative job record, module bytes, leases, events.

RQ only carries job ids to workers. Every state change is one Lua script, so a transition
happens once: a result is recorded only by the worker holding the job's current lease, and a
job whose worker died is re-queued or failed by exactly one reaper.

Keys (prefix ``warden:``): ``job:{id}`` hash (spec, state, timestamps, result, attempts,
lease); ``module:{sha256}`` module bytes, stored once; ``leases`` zset of running job ids by
lease expiry; ``jobs`` zset of job ids by creation time (listing, newest first; ids whose
record has expired are dropped when a listing meets them, and the set keeps the newest
``MAX_LISTED`` at most). Channels: ``events`` (a job reached a terminal state; message = id) and
``cancel`` (cancel a running job; message = id).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import Any, Final, NamedTuple

import redis

from sandboxes.schema import JobRecord, JobSpec, JobState, RunResult, RunStatus
from tenancy.limits import fuel_key
from workers.accounting import ACCOUNT, account_keys
from workers.callback_queue import CALLBACK_DUE, CALLBACKS, callback_status
from workers.lua import replayed_keys, script, unique
from workers.pools import JAIL_SUFFIX
from workers.scheduling import RING, TAKEN, ring_keys, running_key, taken_member

PREFIX: Final = "warden:"
LEASES: Final = PREFIX + "leases"
EVENTS: Final = PREFIX + "events"
CANCEL: Final = PREFIX + "cancel"
# Sorted set of live workers scored by heartbeat expiry: readiness counts the unexpired ones
# (RQ keeps a SIGKILLed worker registered for minutes).
WORKERS: Final = PREFIX + "workers"
WORKER_LANES: Final = PREFIX + "worker-lanes"  # worker → its lanes (for /metrics)
WORKER_LANGUAGES: Final = PREFIX + "worker-languages"  # worker → the languages it serves
JOBS: Final = PREFIX + "jobs"
DEFAULT_TENANT: Final = "default"  # the tenant of jobs submitted before tenants existed
MAX_LISTED: Final = 1_000_000
MODULE_TTL_S: Final = 7 * 86_400
WORKER_NAME: Final = f"{socket.gethostname()}:{os.getpid()}"


# Lua: a function that runs the commands ``flatten`` encoded, from ARGV[first] on; each
# touches one key, its first argument, which its caller declares (lua.replayed_keys).
REPLAY: Final = """
local function replay(first)
  local i = first
  while i <= #ARGV do
    local n = tonumber(ARGV[i])
    key(ARGV[i + 2])
    redis.call(unpack(ARGV, i + 1, i + n))
    i = i + n + 1
  end
end
local function replay_check(first)  -- their keys, checked before the script's first write
  local i = first
  while i <= #ARGV do
    key(ARGV[i + 2])
    i = i + tonumber(ARGV[i]) + 1
  end
end
"""


def flatten(commands: list[tuple[Any, ...]]) -> list[Any]:
    """Commands as ``REPLAY`` runs them in a script: (argc, command, args...) each."""
    flat: list[Any] = []
    for command in commands:
        flat.append(len(command))
        flat.extend(command)
    return flat


def new_job_id() -> str:
    return uuid.uuid4().hex


CURSOR_PATTERN: Final = r"^[0-9]+(\.[0-9]+)?:[A-Za-z0-9_-]{1,128}$"


def format_cursor(last: tuple[float, str]) -> str:
    """A listing cursor: the last examined job's creation time (unix s) and id."""
    return f"{last[0]!r}:{last[1]}"


def parse_cursor(cursor: str | None) -> tuple[float, str] | None:
    """``format_cursor``'s inverse; the API checks CURSOR_PATTERN before it comes here."""
    if cursor is None:
        return None
    score, _, job_id = cursor.partition(":")
    return float(score), job_id


def tenant_jobs_key(tenant: str) -> str:
    """The tenant's own listing: its job ids by creation time."""
    return f"{PREFIX}jobs:{tenant}"


def job_key(job_id: str) -> str:
    return f"{PREFIX}job:{job_id}"


def module_key(sha256: str) -> str:
    return f"{PREFIX}module:{sha256}"


# Lua: the running-slot key of a job's tenant (workers/scheduling.py); jobs from before
# tenants are the default tenant's. Its caller declares it (running_key of the tenant).
SLOT: Final = """
local function tenant_of(job)
  local tenant = redis.call('HGET', job, 'tenant')
  if not tenant or tenant == '' then return 'default' end
  return tenant
end
local function slot(job)
  return key('warden:running:' .. tenant_of(job))
end
"""

# KEYS[1]=job KEYS[2]=leases KEYS[3]=the tenant's running slots ARGV: token, now,
# lease_expiry, job_id, worker. The running slot TAKE gave the job now follows its lease; a
# job that is no longer queued (cancelled in between) frees it.
_START = script("start", SLOT + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
local running = slot(KEYS[1])
if state ~= 'queued' then
  redis.call('ZREM', running, ARGV[4])
  return state
end
redis.call('HSET', KEYS[1], 'state', 'running', 'lease', ARGV[1], 'started_at', ARGV[2],
           'worker', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('ZADD', running, 'XX', ARGV[3], ARGV[4])
return 'ok'
""")

# KEYS[1]=job KEYS[2]=leases KEYS[3]=events, then the running slots, ACCOUNT's keys and
# the callbacks (finish_keys) ARGV: token, state, result_json, error, now, ttl, job_id, then
# ACCOUNT's arguments (workers/accounting.py): the job is counted in the same step, exactly
# once.
_FINISH = script("finish", SLOT + ACCOUNT + CALLBACK_DUE + """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'lease') ~= ARGV[1] then return 0 end
local running = slot(KEYS[1])  -- every key checked before the first write
if #ARGV >= 8 then account_check(KEYS[1], 8) end
key('warden:callbacks')
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'result', ARGV[3], 'error', ARGV[4],
           'finished_at', ARGV[5], 'lease', '')
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('ZREM', KEYS[2], ARGV[7])
redis.call('ZREM', running, ARGV[7])
if #ARGV >= 8 then account(KEYS[1], 8) end
callback_due(KEYS[1], ARGV[7], ARGV[5])
redis.call('PUBLISH', KEYS[3], ARGV[7])
return 1
""")

# KEYS[1]=job KEYS[2]=events KEYS[3]=cancel KEYS[4]=base RQ queue KEYS[5]=the jail pool's
# base, then the job's tenant queues, fuel day, RQ job and the callbacks (cancel_keys)
# ARGV: now, ttl, job_id, result. A queued job also leaves its tenant's RQ queue (of either
# pool, or the base queue it was put on before queues were per tenant) and its RQ job hash:
# it no longer takes a queue slot. 'retry': its RQ id changed since its caller read it.
_CANCEL = script("cancel", CALLBACK_DUE + """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'queued' then
  local rq = redis.call('HGET', KEYS[1], 'rq_id')
  if not rq or rq == '' then rq = ARGV[3] end
  if not declared('rq:job:' .. rq) then return 'retry' end
  local tenant = redis.call('HGET', KEYS[1], 'tenant')
  if not tenant or tenant == '' then tenant = 'default' end
  -- every key checked before the first write
  local queue, jail_queue = key(KEYS[4] .. '.' .. tenant), key(KEYS[5] .. '.' .. tenant)
  local fuel = redis.call('HMGET', KEYS[1], 'fuel_day', 'fuel_reserved')
  local fuel_key = fuel[1] and fuel[2] and key('warden:fuel:' .. tenant .. ':' .. fuel[1])
  key('warden:callbacks')
  redis.call('LREM', queue, 0, rq)
  redis.call('LREM', KEYS[4], 0, rq)
  redis.call('LREM', jail_queue, 0, rq)
  if fuel_key then  -- it will use none of the fuel it reserved
    redis.call('DECRBY', fuel_key, fuel[2])
    redis.call('HDEL', KEYS[1], 'fuel_reserved')
  end
  redis.call('DEL', 'rq:job:' .. rq)
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[1], 'result', ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  callback_due(KEYS[1], ARGV[3], ARGV[1])
  redis.call('PUBLISH', KEYS[2], ARGV[3])
  return 'dequeued'
elseif state == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  redis.call('PUBLISH', KEYS[3], ARGV[3])
  return 'cancelling'
end
return state or 'missing'
""")

# KEYS[1]=job KEYS[2]=leases KEYS[3]=events, then its running slots, its pool's ring, the
# callbacks and the requeue commands' keys (reap_keys) ARGV: now, max_attempts, ttl,
# job_id, cancelled result, then the commands that queue it again (argc, command, args...),
# run only when it is re-run
_REAP = script("reap", REPLAY + SLOT + RING + CALLBACK_DUE + """
local expiry = redis.call('ZSCORE', KEYS[2], ARGV[4])
if not expiry or tonumber(expiry) > tonumber(ARGV[1]) then return 'alive' end
local running = slot(KEYS[1])  -- every key checked before the first write
local pool = redis.call('HGET', KEYS[1], 'pool')
ring_check(pool)
replay_check(6)
key('warden:callbacks')
redis.call('ZREM', KEYS[2], ARGV[4])
redis.call('ZREM', running, ARGV[4])
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 'gone' end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[1], 'lease', '',
             'result', ARGV[5])
elseif attempts < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'queued', 'lease', '')
  replay(6)  -- the RQ enqueue, in the same step
  join_ring(tenant_of(KEYS[1]), pool)
  ring(1, pool)
  return 'requeue'
else
  redis.call('HSET', KEYS[1], 'state', 'failed', 'finished_at', ARGV[1], 'lease', '',
             'error', 'the worker running this job died ' .. attempts .. ' time(s)')
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
callback_due(KEYS[1], ARGV[4], ARGV[1])
redis.call('PUBLISH', KEYS[3], ARGV[4])
return 'ended'
""")

# KEYS[1]=taken KEYS[2]=job KEYS[3]=base RQ queue, then the queue, its intermediate list,
# the running slots and the pool's ring of the job (unstick_keys) ARGV: taken member, queue
# name, rq id, job id. A job taken off its queue by a worker that died (or lost Redis)
# before starting it: back at the head of its queue if it is still queued (its slot freed),
# else the stale entries are dropped.
_UNSTICK = script("unstick", SLOT + RING + """
local queue = key('rq:queue:' .. ARGV[2])  -- every key checked before the first write
local intermediate = key(queue .. ':intermediate')
local running = slot(KEYS[2])
local pool = redis.call('HGET', KEYS[2], 'pool')
ring_check(pool)
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('LREM', intermediate, 1, ARGV[3]) == 0 then return 0 end
redis.call('ZREM', running, ARGV[4])
if redis.call('HGET', KEYS[2], 'state') ~= 'queued' then return 0 end
redis.call('LPUSH', queue, ARGV[3])
if queue ~= KEYS[3] then join_ring(tenant_of(KEYS[2]), pool) end
ring(1, pool)
return 1
""")

# KEYS[1]=job KEYS[2]=leases KEYS[3]=the tenant's running slots ARGV: token, expiry,
# job_id. 2: renewed, and a cancel was asked for (the worker missed the pub/sub message,
# e.g. while reconnecting): stop the job now.
_RENEW = script("renew", SLOT + """
if redis.call('HGET', KEYS[1], 'lease') ~= ARGV[1] then return 0 end
local running = slot(KEYS[1])
redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[3])
redis.call('ZADD', running, 'XX', ARGV[2], ARGV[3])
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then return 2 end
return 1
""")


# KEYS[1]=job KEYS[2]=all jobs KEYS[3]=the tenant's jobs, then more listings ARGV: job_id.
# Only an ended job is deleted (a queued or running one still has a worker's or the queue's
# reference to it): its state is answered instead.
_DELETE = script("delete", """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state == 'queued' or state == 'running' then return state end
redis.call('DEL', KEYS[1])
for i = 2, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 'deleted'
""")


class JobStore:
    """All reads and writes of Warden's job keys (sync client; the API calls it in threads)."""

    def __init__(self, client: redis.Redis, job_ttl_s: int, lease_s: float) -> None:
        self.r = client
        self.job_ttl_s = job_ttl_s
        self.lease_s = lease_s
        self._start = client.register_script(_START)
        self._finish = client.register_script(_FINISH)
        self._cancel = client.register_script(_CANCEL)
        self._reap = client.register_script(_REAP)
        self._renew = client.register_script(_RENEW)
        self._unstick = client.register_script(_UNSTICK)
        self._delete = client.register_script(_DELETE)

    # -- pipelined transitions (the worker's hot path) ------------------------------------
    # Script objects called on a pipeline make redis-py send SCRIPT EXISTS before every
    # execute (one more round trip per job): these queue a bare EVALSHA instead. A NOSCRIPT
    # answer (Redis restarted, SCRIPT FLUSH) comes back as an exception in the pipeline's
    # results; ``load_scripts`` then reloads them and the caller retries that one script.
    def load_scripts(self) -> None:
        for loaded in (self._start, self._finish, self._cancel, self._reap, self._renew):
            loaded.sha = self.r.script_load(loaded.script)

    def start_args(self, job_id: str, tenant: str | None = None) -> tuple[str, list[Any]]:
        """(token, EVALSHA arguments) of the queued → running transition of a job of
        ``tenant`` (None: read from its record)."""
        token = uuid.uuid4().hex
        now = time.time()
        tenant = tenant or self.tenant(job_id)
        return token, [self._start.sha, 3, job_key(job_id), LEASES, running_key(tenant),
                       token, repr(now), now + self.lease_s, job_id, WORKER_NAME]

    def finish_args(
        self, job_id: str, token: str, state: JobState, result_json: str, error: str | None = None,
        account: list[Any] | None = None, tenant: str = DEFAULT_TENANT,
        fuel_day: str | None = None,
    ) -> list[Any]:
        """EVALSHA arguments of the running → terminal transition (result already JSON;
        ``account``: ACCOUNT's arguments, see workers/accounting.py) of a job of
        ``tenant`` whose fuel was reserved from ``fuel_day`` (both as its record has them)."""
        keys = finish_keys(job_id, tenant, fuel_day, account)
        return [self._finish.sha, len(keys), *keys,
                token, state.value, result_json, error or "", repr(time.time()),
                self.job_ttl_s, job_id, *(account or [])]

    # -- modules -----------------------------------------------------------------------
    def put_module(self, sha256: str, wasm: bytes, pipe: Any = None) -> None:
        (pipe or self.r).set(module_key(sha256), wasm, ex=MODULE_TTL_S)

    def get_module(self, sha256: str) -> bytes | None:
        data = self.r.get(module_key(sha256))
        return data if isinstance(data, bytes) else None

    # -- records -----------------------------------------------------------------------
    def create(self, job_id: str, spec: JobSpec, pipe: Any = None,
               tenant: str = DEFAULT_TENANT, fuel_day: str | None = None,
               pool: str = "sandbox") -> None:
        """The queued record; ``fuel_day``: the UTC day whose fuel budget the job's fuel
        limit is reserved from (settled when it ends, released if cancelled queued);
        ``pool``: the worker pool it is queued for (workers/pools.py), read when it is
        queued again."""
        client = pipe or self.r
        now = time.time()
        fields: dict[Any, Any] = {
            "spec": spec.model_dump_json(),
            "state": JobState.QUEUED.value,
            "created_at": repr(now),
            "attempts": 0,
            "tenant": tenant,
            "pool": pool,
        }
        if fuel_day is not None:
            fields |= {"fuel_day": fuel_day, "fuel_reserved": spec.limits.fuel}
        client.hset(job_key(job_id), mapping=fields)
        for listing in (JOBS, tenant_jobs_key(tenant)):
            client.zadd(listing, {job_id: now})
            client.zremrangebyrank(listing, 0, -MAX_LISTED - 1)

    def list_recent(
        self, limit: int, state: JobState | None = None, cursor: str | None = None,
        tenant: str | None = None,
    ) -> tuple[list[JobRecord], str | None]:
        """Up to ``limit`` records after ``cursor``, newest first, in ``state`` if given, and
        the cursor of the next page (None: no more). A filtered page examines at most
        ``_SCAN_FACTOR * limit`` jobs, so it may come back short with a cursor to go on
        from. The cursor is the last examined job's (creation time, id): jobs created in
        the same instant are ordered by id, so none is skipped or repeated at a page edge.
        With ``tenant``: that tenant's jobs only (its own listing)."""
        listing = JOBS if tenant is None else tenant_jobs_key(tenant)
        found: list[JobRecord] = []
        stale: list[str] = []
        last = parse_cursor(cursor)
        scanned, more = 0, True
        while len(found) < limit and scanned < _SCAN_FACTOR * limit:
            batch = self._listed_after(listing, last, limit + 1)  # one more: is there another page?
            records = self.get_many([job_id for job_id, _ in batch])
            for (job_id, score), record in zip(batch, records, strict=True):
                if len(found) == limit or scanned == _SCAN_FACTOR * limit:
                    break  # an unexamined job is left: there is a next page
                last, scanned = (score, job_id), scanned + 1
                if record is None:
                    stale.append(job_id)
                elif state is None or record.state is state:
                    found.append(record)
            else:
                if len(batch) <= limit:
                    more = False  # the oldest job has been examined
                    break
        if stale:
            self.r.zrem(listing, *stale)
        return found, (format_cursor(last) if more and last is not None else None)

    def _listed_after(self, listing: str, after: tuple[float, str] | None, count: int
                      ) -> list[tuple[str, float]]:
        """Up to ``count`` (id, created) of the listing after ``after``, in its order: by
        creation time descending, ties by id descending (Redis's reverse order), so the
        jobs at or before the cursor are the first ones of its instant."""
        top, offset = ("+inf" if after is None else repr(after[0])), 0
        listed: list[tuple[str, float]] = []
        while len(listed) < count:
            raw: list[tuple[bytes, float]] = self.r.zrevrangebyscore(  # type: ignore[assignment]
                listing, top, "-inf", start=offset, num=count, withscores=True)
            for member, score in raw:
                job_id = member.decode()
                if after is None or score < after[0] or job_id < after[1]:
                    listed.append((job_id, score))
            if len(raw) < count:
                break
            offset += len(raw)
        return listed[:count]

    def spec(self, job_id: str) -> JobSpec | None:
        raw = self.r.hget(job_key(job_id), "spec")
        return JobSpec.model_validate_json(raw) if raw else None

    def tenant(self, job_id: str) -> str:
        raw = self.r.hget(job_key(job_id), "tenant")
        return (raw.decode() if isinstance(raw, bytes) else "") or DEFAULT_TENANT

    def context(self, job_id: str) -> JobContext:
        """What names a job's other keys, as its record has it (what a script that moves
        the job declares)."""
        raw = self.r.hmget(job_key(job_id), "tenant", "pool", "fuel_day", "rq_id")
        return JobContext.of(raw)

    def get(self, job_id: str) -> JobRecord | None:
        fields: dict[bytes, bytes] = self.r.hgetall(job_key(job_id))  # type: ignore[assignment]
        return _record(job_id, fields) if fields else None

    def get_many(self, ids: list[str], tenant: str | None = None) -> list[JobRecord | None]:
        """Records in the order asked; None for an unknown id (or another tenant's)."""
        pipe = self.r.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(job_key(job_id))
        return [record_from_fields(i, f, tenant)
                for i, f in zip(ids, pipe.execute(), strict=True)]

    # -- transitions -------------------------------------------------------------------
    def start(self, job_id: str) -> str | None:
        """Take the job (queued → running) with a fresh lease; its token, or None."""
        token = uuid.uuid4().hex
        now = time.time()
        outcome = self._start(
            keys=[job_key(job_id), LEASES, running_key(self.tenant(job_id))],
            args=[token, repr(now), now + self.lease_s, job_id, WORKER_NAME],
        )
        return token if outcome == b"ok" else None

    def renew(self, job_id: str, token: str, tenant: str | None = None) -> int:
        """0: the lease is lost; 1: renewed; 2: renewed, and the job is to be cancelled.
        ``tenant``: the job's (None: read from its record)."""
        expiry = time.time() + self.lease_s
        keys = [job_key(job_id), LEASES, running_key(tenant or self.tenant(job_id))]
        return int(self._renew(keys=keys, args=[token, expiry, job_id]))

    def finish(
        self, job_id: str, token: str, state: JobState, result: RunResult | None,
        error: str | None = None, account: list[Any] | None = None,
    ) -> bool:
        """Record the outcome once; False if this worker no longer holds the job."""
        context = self.context(job_id)
        return bool(
            self._finish(
                keys=finish_keys(job_id, context.tenant, context.fuel_day, account),
                args=[
                    token, state.value, result.model_dump_json() if result else "",
                    error or "", repr(time.time()), self.job_ttl_s, job_id, *(account or []),
                ],
            )
        )

    def cancel(self, job_id: str, rq_queue_key: str) -> str:
        """'dequeued' (it was queued: cancelled now), 'cancelling' (running: its worker
        stops it), 'missing', or the terminal state it had already reached.
        ``rq_queue_key``: the base queue's key (a tenant's queue is ``<key>.<tenant>``, or
        ``<key>-jail.<tenant>`` in the jail pool)."""
        result = RunResult(status=RunStatus.CANCELLED, message="cancelled before it ran")
        for _ in range(_RETRIES):
            c = self.context(job_id)
            keys = [job_key(job_id), EVENTS, CANCEL, rq_queue_key, rq_queue_key + JAIL_SUFFIX,
                    f"{rq_queue_key}.{c.tenant}", f"{rq_queue_key}{JAIL_SUFFIX}.{c.tenant}",
                    f"rq:job:{c.rq_id or job_id}", CALLBACKS,
                    *([fuel_key(c.tenant, c.fuel_day)] if c.fuel_day else [])]
            outcome = self._cancel(
                keys=unique(keys),
                args=[repr(time.time()), self.job_ttl_s, job_id, result.model_dump_json()],
            )
            if outcome != b"retry":
                return outcome.decode() if isinstance(outcome, bytes) else str(outcome)
        raise RuntimeError(f"job {job_id}: re-queued {_RETRIES} times while being cancelled")

    def delete(self, job_id: str, tenant: str, listings: tuple[str, ...] = ()) -> str:
        """Delete an ended job's record (and its entries in ``listings``): 'deleted', or
        the state that keeps it ('queued', 'running'), or 'missing'."""
        keys = [job_key(job_id), JOBS, tenant_jobs_key(tenant), *listings]
        outcome = self._delete(keys=keys, args=[job_id])
        return outcome.decode() if isinstance(outcome, bytes) else str(outcome)

    def expired_leases(self) -> list[str]:
        members: list[bytes] = self.r.zrangebyscore(LEASES, "-inf", time.time())  # type: ignore[assignment]
        return [m.decode() for m in members]

    def reap(self, job_id: str, max_attempts: int,
             requeue: list[tuple[Any, ...]] | None = None) -> str:
        """For an expired lease: 'requeue', 'ended' (failed/cancelled), or 'alive'/'gone'."""
        cancelled = RunResult(
            status=RunStatus.CANCELLED, message="cancelled; its worker stopped while it ran"
        )
        c = self.context(job_id)
        keys = [job_key(job_id), LEASES, EVENTS, running_key(c.tenant), *ring_keys(c.pool),
                CALLBACKS, *replayed_keys(requeue or [])]
        outcome = self._reap(
            keys=unique(keys),
            args=[time.time(), max_attempts, self.job_ttl_s, job_id, cancelled.model_dump_json(),
                  *flatten(requeue or [])],
        )
        return outcome.decode() if isinstance(outcome, bytes) else str(outcome)

    def rq_id(self, job_id: str) -> str:
        """The RQ id of the job's current run: its own id, or the one a re-queue gave it."""
        value = self.r.hget(job_key(job_id), "rq_id")
        return value.decode() if isinstance(value, bytes) and value else job_id

    def stuck_takes(self, older_than_s: float) -> list[tuple[str, str]]:
        """(queue name, rq id) of jobs taken off a queue longer ago than ``older_than_s`` and
        never started: a live worker starts a job within milliseconds of taking it."""
        members: list[bytes] = self.r.zrangebyscore(  # type: ignore[assignment]
            TAKEN, "-inf", time.time() - older_than_s, start=0, num=1000)
        found = []
        for member in members:
            queue_name, _, rq_id = member.decode().partition(" ")
            found.append((queue_name, rq_id))
        return found

    def unstick(self, base_queue_key: str, queue_name: str, rq_id: str, job_id: str) -> bool:
        """Put a job a dead worker took (but never started) back on its queue; True if so."""
        c = self.context(job_id)
        queue = f"rq:queue:{queue_name}"
        keys = [TAKEN, job_key(job_id), base_queue_key, queue, f"{queue}:intermediate",
                running_key(c.tenant), *ring_keys(c.pool)]
        return bool(self._unstick(
            keys=unique(keys),
            args=[taken_member(queue_name, rq_id), queue_name, rq_id, job_id]))

    def heartbeat(self, worker: str, lanes: int = 1,
                  languages: tuple[str, ...] | None = None) -> None:
        """This worker is alive for another lease, with ``lanes`` and the source
        ``languages`` it can serve (None: not said)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.zadd(WORKERS, {worker: time.time() + self.lease_s})
        pipe.hset(WORKER_LANES, worker, lanes)
        if languages is not None:
            pipe.hset(WORKER_LANGUAGES, worker, ",".join(languages))
        pipe.execute()

    def retire(self, worker: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.zrem(WORKERS, worker)
        pipe.hdel(WORKER_LANES, worker)
        pipe.hdel(WORKER_LANGUAGES, worker)
        pipe.execute()

    def served_languages(self) -> set[str] | None:
        """The languages some live worker serves; None when no live worker said (none is
        up: a job then waits in its queue for one)."""
        live: list[bytes] = self.r.zrangebyscore(  # type: ignore[assignment]
            WORKERS, time.time(), "+inf")
        if not live:
            return None
        values: list[bytes | None] = self.r.hmget(  # type: ignore[assignment]
            WORKER_LANGUAGES, live)
        said = [v.decode() for v in values if v is not None]
        if not said:
            return None
        return {lang for value in said for lang in value.split(",") if lang}

    def live_workers(self) -> int:
        now = time.time()
        self.r.zremrangebyscore(WORKERS, "-inf", now)
        return int(self.r.zcount(WORKERS, now, "+inf"))

    def cancel_requested(self, job_id: str) -> bool:
        return self.r.hget(job_key(job_id), "cancel_requested") == b"1"


_SCAN_FACTOR: Final = 10
_RETRIES: Final = 5  # a script whose declared keys went stale between its read and its run


class JobContext(NamedTuple):
    """The fields of a job's record that name its other keys (tenant, pool, fuel day, RQ
    id); never changed once written, but for ``rq_id`` (a re-queue gives a new one)."""

    tenant: str
    pool: str | None
    fuel_day: str | None
    rq_id: str | None

    @classmethod
    def of(cls, raw: list[Any]) -> JobContext:
        tenant, pool, fuel_day, rq_id = (
            v.decode() if isinstance(v, bytes) else None for v in raw)
        return cls(tenant or DEFAULT_TENANT, pool, fuel_day, rq_id or None)


def finish_keys(job_id: str, tenant: str, fuel_day: str | None,
                account: list[Any] | None) -> list[str]:
    """FINISH's KEYS for a job of ``tenant`` (``account``: ACCOUNT's arguments; its first
    is the day the job is counted in)."""
    keys = [job_key(job_id), LEASES, EVENTS, running_key(tenant), CALLBACKS]
    if account:
        keys += account_keys(tenant, fuel_day, str(account[0]))
    return unique(keys)


def record_from_fields(job_id: str, fields: dict[bytes, bytes],
                       tenant: str | None = None) -> JobRecord | None:
    """A record from its hash's fields (HGETALL), None if the hash does not exist or (with
    ``tenant``) belongs to another tenant: to that caller, it does not exist."""
    if not fields or (tenant is not None and not owned_by(fields, tenant)):
        return None
    return _record(job_id, fields)


def owned_by(fields: dict[bytes, bytes], tenant: str) -> bool:
    """Whether a job hash is ``tenant``'s (jobs from before tenants are the default's)."""
    return fields.get(b"tenant", DEFAULT_TENANT.encode()).decode() == tenant


def _record(job_id: str, fields: dict[bytes, bytes]) -> JobRecord:
    def text(name: str) -> str | None:
        value = fields.get(name.encode())
        return value.decode() if value else None

    def number(name: str) -> float | None:
        value = text(name)
        return float(value) if value else None

    result = text("result")
    return JobRecord(
        id=job_id,
        state=JobState(text("state") or JobState.FAILED.value),
        created_at=number("created_at") or 0.0,
        started_at=number("started_at"),
        finished_at=number("finished_at"),
        attempts=int(text("attempts") or 0),
        result=RunResult.model_validate_json(result) if result else None,
        error=text("error"),
        callback=callback_status(fields),
    )
