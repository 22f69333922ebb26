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
idle lanes block on (``BLPOP``), rung by every enqueue.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "warden:"
READY: Final = PREFIX + "ready"
PASSES: Final = PREFIX + "passes"
VTIME: Final = PREFIX + "vtime"
TAKEN: Final = PREFIX + "taken"
DOORBELL: Final = PREFIX + "doorbell"
DOORBELL_MAX: Final = 1024  # rings kept for lanes that are not listening yet
TAKE_SCAN: Final = 32  # tenants at their running cap a take looks past, at most


def tenant_queue_name(base: str, tenant: str) -> str:
    """The RQ queue of a tenant's jobs. A dot, not a colon: ``rq:queue:<base>:intermediate``
    is RQ's own key, and ``intermediate`` is a valid tenant id."""
    return f"{base}.{tenant}"


def running_key(tenant: str) -> str:
    return f"{PREFIX}running:{tenant}"


def taken_member(queue_name: str, rq_id: str) -> str:
    return f"{queue_name} {rq_id}"


# Lua: join_ring(tenant) puts a tenant with waiting work in the ring at no less than the
# virtual time; ring(n) rings the doorbell for n new jobs. Used by every script that queues.
RING: Final = """
local function join_ring(tenant)
  if redis.call('ZSCORE', 'warden:ready', tenant) then return end
  local vt = tonumber(redis.call('GET', 'warden:vtime') or '0')
  local pass = tonumber(redis.call('HGET', 'warden:passes', tenant) or '0')
  if pass < vt then pass = vt end
  redis.call('ZADD', 'warden:ready', pass, tenant)
end
local function ring(n)
  for _ = 1, math.min(n, 64) do redis.call('RPUSH', 'warden:doorbell', '1') end
  redis.call('LTRIM', 'warden:doorbell', -1024, -1)
end
"""

# KEYS[1]=base RQ queue (jobs queued before per-tenant queues) KEYS[2]=its intermediate list
# ARGV: now, lease expiry, base queue name, default max_running, default weight, scan
# Returns {rq id, queue name, tenant} or false (nothing any tenant may run now).
TAKE: Final = """
local now = tonumber(ARGV[1])
local ready = redis.call('ZRANGE', 'warden:ready', 0, tonumber(ARGV[6]) - 1, 'WITHSCORES')
for i = 1, #ready, 2 do
  local tenant, pass = ready[i], tonumber(ready[i + 1])
  local qname = ARGV[3] .. '.' .. tenant
  local queue = 'rq:queue:' .. qname
  local running = 'warden:running:' .. tenant
  local max_running, weight = tonumber(ARGV[4]), tonumber(ARGV[5])
  local quotas = redis.call('HGET', 'warden:tenant:' .. tenant, 'quotas')
  if quotas then
    local q = cjson.decode(quotas)
    max_running = tonumber(q['max_running']) or max_running
    weight = tonumber(q['weight']) or weight
  end
  redis.call('ZREMRANGEBYSCORE', running, '-inf', now)  -- slots of dead workers' jobs
  if redis.call('LLEN', queue) == 0 then
    redis.call('ZREM', 'warden:ready', tenant)
  elseif redis.call('ZCARD', running) < max_running then
    local rq = redis.call('LMOVE', queue, queue .. ':intermediate', 'LEFT', 'RIGHT')
    local vt = tonumber(redis.call('GET', 'warden:vtime') or '0')
    if pass > vt then
      vt = pass
      redis.call('SET', 'warden:vtime', tostring(vt))
    end
    local next_pass = vt + 1 / weight
    redis.call('HSET', 'warden:passes', tenant, tostring(next_pass))
    if redis.call('LLEN', queue) == 0 then
      redis.call('ZREM', 'warden:ready', tenant)
    else
      redis.call('ZADD', 'warden:ready', next_pass, tenant)
    end
    redis.call('ZADD', running, ARGV[2], string.match(rq, '^[^-]+'))
    redis.call('ZADD', 'warden:taken', now, qname .. ' ' .. rq)
    return {rq, qname, tenant}
  end
end
local rq = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
if not rq then return false end
redis.call('ZADD', 'warden:taken', now, ARGV[3] .. ' ' .. rq)
return {rq, ARGV[3], ''}
"""
