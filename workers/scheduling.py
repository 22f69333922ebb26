"""Fair scheduling across tenants: one RQ queue per tenant, taken in weighted round-robin.

A tenant that floods the queue must not starve the others, so each tenant's jobs wait in its
own RQ queue (``<queue>.<tenant>``: ``rq info`` shows each tenant's depth) and a worker's
lane takes jobs with :data:`TAKE`, one Lua script that picks among the tenants with waiting
work by stride scheduling: each tenant has a *pass*; the tenant with the smallest pass goes
next and its pass grows by ``1 / weight``. A tenant that joins the ring starts at the
current virtual time (the pass last served), so idling earns no credit and a newcomer is
served within one round, however long the others' queues are.

A tenant's running jobs hold slots in ``running:{tenant}``, a sorted set scored by lease
expiry: taken by :data:`TAKE` (a tenant at ``max_running`` is skipped), refreshed with the
lease, freed when the job ends, is reaped or is dropped. A worker that is killed stops
renewing, so its slots expire by themselves: nothing leaks.

Keys (prefix ``warden:``): ``ready`` zset of tenants with waiting jobs by pass; ``passes``
hash tenant → pass (kept while a tenant is idle); ``vtime`` the virtual time; ``running:{t}``;
``taken`` zset of "<queue name> <rq id>" taken off a queue and not yet started, by time
(a worker that dies between the two steps leaves its entry to the reaper); ``doorbell`` list
idle lanes block on (``BLPOP``), rung by every enqueue. Each worker pool
(workers/pools.py) has its own ring: the jail pool's keys end in ``:jail``; ``running:{t}``
and ``taken`` are shared (a tenant's running cap counts its jobs in every pool).
"""

from __future__ import annotations

from typing import Final

from tenancy.registry import tenant_key
from workers.lua import script
from workers.pools import POOL_KEY, Pool, pool_key

PREFIX: Final = "warden:"
READY: Final = pool_key("ready", Pool.SANDBOX)
TAKEN: Final = PREFIX + "taken"
TAKE_SCAN: Final = 32  # tenants at their running cap a take looks past, at most


def tenant_queue_name(base: str, tenant: str) -> str:
    """The RQ queue of a tenant's jobs. A dot, not a colon: ``rq:queue:<base>:intermediate``
    is RQ's own key, and ``intermediate`` is a valid tenant id."""
    return f"{base}.{tenant}"


def running_key(tenant: str) -> str:
    return f"{PREFIX}running:{tenant}"


def taken_member(queue_name: str, rq_id: str) -> str:
    return f"{queue_name} {rq_id}"


def ring_keys(pool: Pool | str | None) -> list[str]:
    """The keys RING's functions touch for ``pool`` (a script that joins a tenant to the
    pool's ring or rings its doorbell declares them); None or '' is the sandbox pool."""
    p = Pool(pool) if pool else Pool.SANDBOX
    return [pool_key(name, p) for name in ("ready", "vtime", "passes", "doorbell")]


def tenant_take_keys(base: str, tenant: str) -> list[str]:
    """The keys TAKE touches for a tenant in the ring of the pool whose queues are named
    ``<base>.<tenant>``: its queue, the queue's intermediate list, its running slots, its
    record (quotas)."""
    queue = f"rq:queue:{tenant_queue_name(base, tenant)}"
    return [queue, f"{queue}:intermediate", running_key(tenant), tenant_key(tenant)]


# Lua: join_ring(tenant, pool) puts a tenant with waiting work in a pool's ring at no less
# than that ring's virtual time; ring(n, pool) rings the pool's doorbell for n new jobs;
# ring_check(pool) checks their keys are declared (called before a script's first write). Used
# by every script that queues (a nil pool is the sandbox pool: workers/pools.py), which
# declares ring_keys(pool).
RING: Final = POOL_KEY + """
local function join_ring(tenant, pool)
  local ready = key(pool_key('ready', pool))
  if redis.call('ZSCORE', ready, tenant) then return end
  local vt = tonumber(redis.call('GET', key(pool_key('vtime', pool))) or '0')
  local pass = tonumber(redis.call('HGET', key(pool_key('passes', pool)), tenant) or '0')
  if pass < vt then pass = vt end
  redis.call('ZADD', ready, pass, tenant)
end
local function ring_check(pool)  -- stops the script, before it writes, if undeclared
  for _, name in ipairs({'ready', 'vtime', 'passes', 'doorbell'}) do key(pool_key(name, pool)) end
end
local function ring(n, pool)
  local bell = key(pool_key('doorbell', pool))
  for _ = 1, math.min(n, 64) do redis.call('RPUSH', bell, '1') end
  redis.call('LTRIM', bell, -1024, -1)
end
"""

# KEYS[1]=base RQ queue (jobs queued before per-tenant queues) KEYS[2]=its intermediate
# list KEYS[3]=taken, then each pool's ring_keys and tenant_take_keys of the tenants its
# caller read in the first ``scan`` places of that ring. ARGV: now, lease expiry, base queue
# name, default max_running, default weight, scan, then the pools to take from in order,
# each as (pool, its queues' base name).
# Returns {rq id, queue name, tenant}, false (nothing any tenant may run now) or 'stale'
# (nothing taken, and a tenant its caller did not declare reached the ring's first places:
# read it again; such a tenant is passed over, so churn in the ring never stalls a take).
TAKE: Final = script("take", POOL_KEY + """
local now = tonumber(ARGV[1])
local skipped = false
-- The next job of one tenant of a pool's ring, or nil (nothing waiting, or at its cap).
local function take_tenant(pool, ready_key, vtime_key, qname, queue, tenant, pass)
  local running = key('warden:running:' .. tenant)
  local max_running, weight = tonumber(ARGV[4]), tonumber(ARGV[5])
  local quotas = redis.call('HGET', key('warden:tenant:' .. tenant), 'quotas')
  if quotas then
    local q = cjson.decode(quotas)
    max_running = tonumber(q['max_running']) or max_running
    weight = tonumber(q['weight']) or weight
  end
  redis.call('ZREMRANGEBYSCORE', running, '-inf', now)  -- slots of dead workers' jobs
  if redis.call('LLEN', queue) == 0 then
    redis.call('ZREM', ready_key, tenant)
    return nil
  end
  if redis.call('ZCARD', running) >= max_running then return nil end
  local rq = redis.call('LMOVE', queue, key(queue .. ':intermediate'), 'LEFT', 'RIGHT')
  local vt = tonumber(redis.call('GET', vtime_key) or '0')
  if pass > vt then
    vt = pass
    redis.call('SET', vtime_key, tostring(vt))
  end
  local next_pass = vt + 1 / weight
  redis.call('HSET', key(pool_key('passes', pool)), tenant, tostring(next_pass))
  if redis.call('LLEN', queue) == 0 then
    redis.call('ZREM', ready_key, tenant)
  else
    redis.call('ZADD', ready_key, next_pass, tenant)
  end
  redis.call('ZADD', running, ARGV[2], string.match(rq, '^[^-]+'))
  redis.call('ZADD', KEYS[3], now, qname .. ' ' .. rq)
  return {rq, qname, tenant}
end
local function take_from(pool, base)
  local ready_key, vtime_key = key(pool_key('ready', pool)), key(pool_key('vtime', pool))
  local ready = redis.call('ZRANGE', ready_key, 0, tonumber(ARGV[6]) - 1, 'WITHSCORES')
  for i = 1, #ready, 2 do
    local tenant, pass = ready[i], tonumber(ready[i + 1])
    local qname = base .. '.' .. tenant
    local queue = 'rq:queue:' .. qname
    if not declared(queue) then
      skipped = true  -- joined since its caller read the ring: the next take has it
    else
      local taken = take_tenant(pool, ready_key, vtime_key, qname, queue, tenant, pass)
      if taken then return taken end
    end
  end
  return nil
end
for p = 7, #ARGV, 2 do
  local taken = take_from(ARGV[p], ARGV[p + 1])
  if taken then return taken end
end
if skipped then return 'stale' end
local rq = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
if not rq then return false end
redis.call('ZADD', KEYS[3], now, ARGV[3] .. ' ' .. rq)
return {rq, ARGV[3], ''}
""")
