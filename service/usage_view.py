"""Reading usage and current quota use out of Redis, for /v1/usage, /v1/quotas and the
dashboard (one implementation for both)."""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Final

from service.state import AppState
from tenancy.limits import STORED_BUCKET_S, fuel_key, rate_key, stored_key
from tenancy.quotas import Quotas
from tenancy.usage import (
    DayUsage,
    QuotaStatus,
    QuotaUse,
    Usage,
    UsageReport,
    add,
    fields_to_usage,
    usage_key,
    utc_day,
)
from workers.pools import Pool
from workers.scheduling import running_key

MAX_DAYS: Final = 366


async def usage_report(state: AppState, tenant: str, from_day: date, to_day: date
                       ) -> UsageReport:
    """Each day of [from_day, to_day] (zeros for days with nothing), and their total."""
    assert state.aclient is not None
    days = [from_day + timedelta(days=i) for i in range((to_day - from_day).days + 1)]
    pipe = state.aclient.pipeline(transaction=False)
    for day in days:
        pipe.hgetall(usage_key(tenant, day))
    total = Usage()
    found: list[DayUsage] = []
    for day, fields in zip(days, await pipe.execute(), strict=True):
        usage = fields_to_usage(fields)
        add(total, usage)
        found.append(DayUsage(day=day, **usage.model_dump()))
    return UsageReport(tenant=tenant, from_day=from_day, to_day=to_day, days=found,
                       total=total)


async def quota_status(state: AppState, tenant: str, quotas: Quotas) -> QuotaStatus:
    """The tenant's quotas against what it uses right now (read without charging)."""
    assert state.aclient is not None
    now = time.time()
    today = utc_day(now).isoformat()
    pipe = state.aclient.pipeline(transaction=False)
    pipe.zcount(running_key(tenant), now, "+inf")
    for key in state.queue.queued(tenant):
        pipe.llen(key)
    pipe.get(fuel_key(tenant, today))
    pipe.hgetall(stored_key(tenant))
    pipe.get(rate_key(tenant, "submissions"))
    pipe.get(rate_key(tenant, "reads"))
    pipe.time()
    replies = await pipe.execute()
    running, queued = replies[0], sum(replies[1:1 + len(Pool)])
    fuel, buckets, sub_tat, read_tat, redis_time = replies[1 + len(Pool):]
    oldest = int(now // STORED_BUCKET_S) - state.settings.job_ttl_s // STORED_BUCKET_S
    stored = sum(int(v) for k, v in buckets.items() if int(k) >= oldest)
    clock = float(redis_time[0]) + float(redis_time[1]) / 1e6

    def bucket_used(tat: bytes | None, per_minute: int, burst: int) -> float:
        """Requests the bucket is short of full (GCRA: the arrival time past now)."""
        if tat is None:
            return 0
        return min(burst, max(0.0, (float(tat) - clock) / (60 / per_minute)))

    def use(quota: str, limit: float, used: float) -> QuotaUse:
        return QuotaUse(quota=quota, limit=limit, used=used, remaining=max(0, limit - used))

    q = quotas
    return QuotaStatus(tenant=tenant, quotas=quotas, use=[
        use("submissions_per_minute", q.submission_burst,
            round(bucket_used(sub_tat, q.submissions_per_minute, q.submission_burst), 2)),
        use("reads_per_minute", q.read_burst,
            round(bucket_used(read_tat, q.reads_per_minute, q.read_burst), 2)),
        use("max_running", q.max_running, int(running)),
        use("max_queued", q.max_queued, int(queued)),
        use("daily_fuel", q.daily_fuel, int(fuel or 0)),
        use("stored_bytes", q.stored_bytes, stored),
    ])
