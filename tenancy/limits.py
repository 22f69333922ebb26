"""Rate limits as Lua run inside Redis: exact across every API process, one round trip.

Rates are GCRA (the generic cell rate algorithm, a token bucket stored as one number, the
"theoretical arrival time"): a tenant may make ``burst`` requests at once and then one per
``60 / per_minute`` seconds. The `limits` library was considered: its Redis strategies are
fixed and sliding windows, which have no burst separate from the rate and cost a round trip
of their own; GCRA runs inside the scripts Warden already sends (authentication for reads,
the enqueue for submissions), so a limit costs no extra round trip and a batch is admitted
or refused whole, atomically with its other quotas. Time is Redis's own clock (``TIME``),
the same for every API process.

Keys (prefix ``warden:``): ``rate:{tenant}:reads``, ``rate:{tenant}:submissions`` (the
bucket's arrival time, expiring once full); ``fuel:{tenant}:{day}`` fuel reserved and used
that UTC day; ``stored:{tenant}`` hash of input bytes submitted per 10-minute bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from tenancy.quotas import Quotas
from tenancy.usage import usage_key

PREFIX: Final = "warden:"
STORED_BUCKET_S: Final = 600


def rate_key(tenant: str, policy: str) -> str:
    return f"{PREFIX}rate:{tenant}:{policy}"


def fuel_key(tenant: str, day: str) -> str:
    return f"{PREFIX}fuel:{tenant}:{day}"


def stored_key(tenant: str) -> str:
    return f"{PREFIX}stored:{tenant}"


def problem_bytes_key(tenant: str) -> str:
    """The bytes of problem packages the tenant owns (counted with its stored bytes)."""
    return f"{PREFIX}problem-bytes:{tenant}"


REJECTIONS: Final = f"{PREFIX}metrics:rejections"  # "<quota>|<tenant>" → count


def rejection_keys(tenant: str, day: str) -> list[str]:
    """The keys ``count_rejection`` touches (a script that may refuse declares them)."""
    return [usage_key(tenant, date.fromisoformat(day)), REJECTIONS]


# Lua: now() is Redis's clock in seconds. gcra(bucket, interval, burst, cost, commit) →
# allowed, remaining, reset (s until the bucket is full), retry (s until cost fits).
GCRA: Final = """
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end
local function gcra(bucket, interval, burst, cost, commit)
  local t = now()
  local tat = tonumber(redis.call('GET', bucket) or '0')
  if tat < t then tat = t end
  local new_tat = tat + cost * interval
  local allow_at = new_tat - burst * interval
  if allow_at > t + 1e-6 then
    return false, math.max(0, math.floor((t + burst * interval - tat) / interval + 1e-6)),
           tat - t, allow_at - t
  end
  if commit then
    redis.call('SET', bucket, tostring(new_tat), 'PX', math.ceil((new_tat - t) * 1000) + 1000)
  end
  return true, math.floor((t + burst * interval - new_tat) / interval + 1e-6), new_tat - t, 0
end
local function count_rejection(tenant, quota, day, retention)
  local usage = key('warden:usage:' .. tenant .. ':' .. day)
  local rejections = key('warden:metrics:rejections')
  redis.call('HINCRBY', usage, 'rejected:' .. quota, 1)
  redis.call('EXPIRE', usage, retention)
  redis.call('HINCRBY', rejections, quota .. '|' .. tenant, 1)
end
"""


@dataclass(frozen=True)
class Admission:
    """What a submission is checked against, besides Warden's own queue cap: the tenant's
    quotas and the time they are counted in (the API's UTC day, the stored-bytes window)."""

    max_queued: int
    submissions_per_minute: int
    submission_burst: int
    daily_fuel: int
    stored_bytes: int
    day: str
    day_left_s: float
    stored_window_s: int
    retention_s: int

    @classmethod
    def of(cls, quotas: Quotas, now: float, stored_window_s: int,
           retention_s: int) -> Admission:
        midnight = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0,
                                                            microsecond=0)
        day_left = (midnight + timedelta(days=1)).timestamp() - now
        return cls(quotas.max_queued, quotas.submissions_per_minute, quotas.submission_burst,
                   quotas.daily_fuel, quotas.stored_bytes, midnight.date().isoformat(),
                   day_left, stored_window_s, retention_s)


@dataclass(frozen=True)
class RateState:
    """One rate policy after a request: for the RateLimit headers and a 429."""

    policy: str  # "reads" or "submissions"
    quota: str  # the quota's name in Quotas (…_per_minute)
    burst: int
    window_s: int  # time for an empty bucket to fill again
    remaining: int
    reset_s: float
    allowed: bool = True
    retry_s: float = 0.0


def rate_state(policy: str, quota: str, per_minute: int, burst: int,
               reply: list[Any]) -> RateState:
    """A RateState from the (allowed, remaining, reset, retry) a script returned as text."""
    allowed, remaining, reset_s, retry_s = (
        v.decode() if isinstance(v, bytes) else str(v) for v in reply)
    window = max(1, round(burst * 60 / per_minute))
    return RateState(policy, quota, burst, window, int(float(remaining)), float(reset_s),
                     allowed == "1", float(retry_s))
