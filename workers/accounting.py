"""What a job cost, counted once when it ends: tenant usage per day, cluster-wide metrics,
and the settlement of the fuel it reserved at submit.

The counting is Lua (:data:`ACCOUNT`) run inside the script that records the job's end, so
it happens exactly once, with the transition: a lost lease records nothing and counts
nothing; a retried script cannot count twice.

Metrics keys (prefix ``warden:metrics:``, read by service/metrics.py at scrape time):
``jobs`` hash "<status>|<language>|<tenant>" → count; ``rejections`` hash
"<quota>|<tenant>" → count; ``totals`` hash (fuel, compile_cache_hits,
compile_cache_misses); ``hist:<name>`` hash bucket index → count, plus ``sum`` and ``count``.
"""

from __future__ import annotations

import bisect
from datetime import date
from typing import Final

from sandboxes.schema import JobSpec, RunResult
from tenancy.limits import fuel_key
from tenancy.usage import WASM, usage_key, utc_day

METRICS: Final = "warden:metrics:"
# Upper bounds (seconds) of the queue-wait and run-time histograms' buckets; +Inf is last.
SECONDS_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                          2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
HISTOGRAMS: Final = ("queue_wait_seconds", "run_seconds")
METRIC_KEYS: Final = (METRICS + "jobs", METRICS + "totals",
                      *(f"{METRICS}hist:{name}" for name in HISTOGRAMS))

# Lua: account(job, a) with a = the ARGV index of ACCOUNT_ARGS's first value. Usage of the
# job's tenant for the day, metrics, and the fuel reservation settled to what was used; the
# script declares account_keys.
ACCOUNT: Final = """
-- The keys account(job, a) will touch, checked before the script's first write.
local function account_check(job, a)
  local f = redis.call('HMGET', job, 'tenant', 'fuel_day', 'fuel_reserved')
  local tenant = f[1]
  if not tenant or tenant == '' then tenant = 'default' end
  key('warden:usage:' .. tenant .. ':' .. ARGV[a])
  if f[2] and f[3] then key('warden:fuel:' .. tenant .. ':' .. f[2]) end
  for _, name in ipairs({'jobs', 'totals', 'hist:queue_wait_seconds', 'hist:run_seconds'}) do
    key('warden:metrics:' .. name)
  end
end
local function account(job, a)
  local day, retention = ARGV[a], tonumber(ARGV[a + 1])
  local status, lang = ARGV[a + 2], ARGV[a + 3]
  local fuel, wall, compile = tonumber(ARGV[a + 4]), ARGV[a + 5], ARGV[a + 6]
  local out, cached = ARGV[a + 7], ARGV[a + 8]
  local f = redis.call('HMGET', job, 'tenant', 'fuel_day', 'fuel_reserved', 'created_at',
                       'started_at')
  local tenant = f[1]
  if not tenant or tenant == '' then tenant = 'default' end
  local usage = key('warden:usage:' .. tenant .. ':' .. day)
  redis.call('HINCRBY', usage, 'jobs', 1)
  redis.call('HINCRBY', usage, 'status:' .. status, 1)
  redis.call('HINCRBY', usage, 'lang:' .. lang, 1)
  redis.call('HINCRBY', usage, 'fuel', fuel)
  redis.call('HINCRBYFLOAT', usage, 'wall_time_s', wall)
  redis.call('HINCRBYFLOAT', usage, 'compile_time_s', compile)
  redis.call('HINCRBY', usage, 'output_bytes', out)
  redis.call('EXPIRE', usage, retention)
  if f[2] and f[3] then
    local refund = tonumber(f[3]) - fuel
    if refund > 0 then
      redis.call('DECRBY', key('warden:fuel:' .. tenant .. ':' .. f[2]), refund)
    end
    redis.call('HDEL', job, 'fuel_reserved')
  end
  redis.call('HINCRBY', key('warden:metrics:jobs'), status .. '|' .. lang .. '|' .. tenant, 1)
  redis.call('HINCRBY', key('warden:metrics:totals'), 'fuel', fuel)
  if cached ~= '' then
    redis.call('HINCRBY', key('warden:metrics:totals'), 'compile_cache_' .. cached, 1)
  end
  local function observe(name, value, bucket)
    local h = key('warden:metrics:hist:' .. name)
    redis.call('HINCRBY', h, bucket, 1)
    redis.call('HINCRBYFLOAT', h, 'sum', value)
    redis.call('HINCRBY', h, 'count', 1)
  end
  if f[4] and f[5] and ARGV[a + 9] ~= '' then
    observe('queue_wait_seconds', tonumber(f[5]) - tonumber(f[4]), ARGV[a + 9])
  end
  if ARGV[a + 10] ~= '' then observe('run_seconds', wall, ARGV[a + 10]) end
end
"""
ACCOUNT_ARGC: Final = 11


def account_keys(tenant: str, fuel_day: str | None, day: str) -> list[str]:
    """The keys ACCOUNT touches for a job of ``tenant`` whose fuel was reserved from
    ``fuel_day``'s budget (None: none was), ending on ``day``."""
    keys = [usage_key(tenant, date.fromisoformat(day)), *METRIC_KEYS]
    return keys if fuel_day is None else [*keys, fuel_key(tenant, fuel_day)]


def bucket(seconds: float) -> int:
    """The histogram bucket index of a value (``len(SECONDS_BUCKETS)``: +Inf)."""
    return bisect.bisect_left(SECONDS_BUCKETS, seconds)


def language_of(spec: JobSpec | None) -> str:
    return (spec.language if spec is not None else None) or WASM


def account_args(spec: JobSpec | None, result: RunResult | None, finished_at: float,
                 retention_s: int, queue_wait_s: float | None) -> list[str | int | float]:
    """:data:`ACCOUNT`'s arguments for a job that ends with ``result`` (None: it failed
    outside its run and used nothing)."""
    status = result.status.value if result is not None else "failed"
    fuel = result.fuel_used if result is not None else 0
    wall = result.wall_time_s if result is not None else 0.0
    compile_s = (result.compile_time_s or 0.0) if result is not None else 0.0
    out = len(result.stdout) + len(result.stderr) if result is not None else 0
    cached = "" if result is None or result.compile_cached is None else (
        "hits" if result.compile_cached else "misses")
    return [utc_day(finished_at).isoformat(), retention_s, status, language_of(spec),
            max(0, fuel), repr(wall), repr(compile_s), out, cached,
            "" if queue_wait_s is None else bucket(queue_wait_s),
            "" if result is None else bucket(wall)]
