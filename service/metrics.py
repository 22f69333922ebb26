"""Prometheus ``/metrics``: cluster-wide figures read from Redis at scrape time.

Why a collector over Redis, not per-process metrics: Warden runs many API and worker
processes (pods), and the figures that matter are per job, counted where the job ends.
prometheus-client's multiprocess mode needs a shared directory (not across pods) and leaves
one file per process id that slows every scrape as processes come and go; per-pod scrapes
of workers would also have to be summed by every query. So workers count each job inside
the Lua script that records its end (workers/accounting.py: exactly once), each API process
adds its HTTP request durations to Redis every few seconds (:class:`HttpMetrics`), and any
API process answers a scrape with the whole cluster's figures: scrape the API Service once
(one target), never each pod, or the series repeat.

Tenant labels only with ``WARDEN_METRICS_TENANT_LABELS`` (the tenant set must be bounded:
each tenant multiplies the series); otherwise tenants are summed away.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Final

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from workers.accounting import METRICS, SECONDS_BUCKETS, bucket
from workers.pools import Pool, pool_queue_base
from workers.scheduling import tenant_queue_name
from workers.store import LEASES, WORKER_LANES, WORKERS

HTTP: Final = METRICS + "http"
FLUSH_S: Final = 2.0


def _bounds() -> list[str]:
    return [repr(b) for b in SECONDS_BUCKETS] + ["+Inf"]


def _histogram(name: str, doc: str, labels: list[str],
               series: dict[tuple[str, ...], dict[str, float]]) -> HistogramMetricFamily:
    """A histogram from per-bucket counts (index → count, plus ``sum``) per label set."""
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, counts in sorted(series.items()):
        running, buckets = 0.0, []
        for i, bound in enumerate(_bounds()):
            running += counts.get(str(i), 0)
            buckets.append((bound, running))
        family.add_metric(list(values), buckets, counts.get("sum", 0.0))
    return family


class ClusterCollector(Collector):
    def __init__(self, client: redis.Redis, queue_name: str, tenant_labels: bool) -> None:
        self.r = client
        self.queue_name = queue_name
        self.tenant_labels = tenant_labels

    def collect(self) -> Iterator[Metric]:
        pipe = self.r.pipeline(transaction=False)
        for key in ("jobs", "totals", "rejections", "hist:queue_wait_seconds",
                    "hist:run_seconds", "http"):
            pipe.hgetall(METRICS + key)
        now = time.time()
        pipe.zrangebyscore(WORKERS, now, "+inf")
        pipe.hgetall(WORKER_LANES)
        pipe.zcount(LEASES, now, "+inf")
        pipe.smembers("rq:queues")
        jobs, totals, rejections, wait, run, http, live, lanes, running, queues = (
            pipe.execute())
        yield from self._jobs(jobs, rejections)
        yield from self._totals(totals)
        hist = {"queue_wait_seconds": wait, "run_seconds": run}
        yield _histogram("warden_queue_wait_seconds", "Time jobs waited in the queue", [],
                         {(): _decode(hist["queue_wait_seconds"])})
        yield _histogram("warden_job_run_seconds", "Wall time of job runs", [],
                         {(): _decode(hist["run_seconds"])})
        yield from self._queues(queues)
        live_names = {w for w in live}
        yield GaugeMetricFamily("warden_workers", "Live worker processes",
                                value=len(live_names))
        yield GaugeMetricFamily(
            "warden_lanes", "Lanes (jobs at once) of the live workers",
            value=sum(int(v) for k, v in lanes.items() if k in live_names))
        yield GaugeMetricFamily("warden_lanes_busy", "Lanes running a job now", value=running)
        yield from self._http(http)

    def _jobs(self, jobs: dict[bytes, bytes], rejections: dict[bytes, bytes]
              ) -> Iterator[Metric]:
        labels = ["status", "language"] + (["tenant"] if self.tenant_labels else [])
        family = CounterMetricFamily("warden_jobs", "Jobs that ended", labels=labels)
        for values, count in sorted(self._summed(jobs, 2).items()):
            family.add_metric(list(values), count)
        yield family
        labels = ["quota"] + (["tenant"] if self.tenant_labels else [])
        family = CounterMetricFamily("warden_quota_rejections",
                                     "Requests refused by a tenant quota", labels=labels)
        for values, count in sorted(self._summed(rejections, 1).items()):
            family.add_metric(list(values), count)
        yield family

    def _summed(self, raw: dict[bytes, bytes], kept: int) -> dict[tuple[str, ...], float]:
        """Counts by their "a|b|tenant" field, the tenant dropped unless labelled."""
        out: dict[tuple[str, ...], float] = defaultdict(float)
        for field, value in raw.items():
            parts = tuple(field.decode().split("|"))
            out[parts if self.tenant_labels else parts[:kept]] += float(value)
        return out

    def _totals(self, totals: dict[bytes, bytes]) -> Iterator[Metric]:
        t = _decode(totals)
        yield CounterMetricFamily("warden_fuel_consumed", "Fuel the jobs used",
                                  value=t.get("fuel", 0))
        yield CounterMetricFamily("warden_compile_cache_hits",
                                  "Source jobs whose module came from the compile cache",
                                  value=t.get("compile_cache_hits", 0))
        yield CounterMetricFamily("warden_compile_cache_misses",
                                  "Source jobs that were compiled",
                                  value=t.get("compile_cache_misses", 0))

    def _queues(self, queue_keys: set[bytes]) -> Iterator[Metric]:
        names = sorted(k.decode() for k in queue_keys)
        queues: list[tuple[str, str, str]] = []  # (pool, tenant, key)
        for pool in Pool:
            prefix = "rq:queue:" + tenant_queue_name(pool_queue_base(self.queue_name, pool), "")
            queues += [(pool.value, k[len(prefix):], k) for k in names if k.startswith(prefix)]
        pipe = self.r.pipeline(transaction=False)
        for _, _, key in queues:
            pipe.llen(key)
        pipe.llen("rq:queue:" + self.queue_name)
        depths = pipe.execute()
        labels = ["pool", "tenant"] if self.tenant_labels else ["pool"]
        family = GaugeMetricFamily("warden_queue_depth", "Jobs waiting in the queue, by "
                                   "worker pool", labels=labels)
        by_pool = {pool.value: 0 for pool in Pool}
        by_pool[Pool.SANDBOX.value] += depths[-1]  # jobs queued before per-tenant queues
        for (name, tenant, _), depth in zip(queues, depths, strict=False):
            by_pool[name] += depth
            if self.tenant_labels:
                family.add_metric([name, tenant], depth)
        if not self.tenant_labels:
            for name, depth in by_pool.items():
                family.add_metric([name], depth)
        yield family

    def _http(self, raw: dict[bytes, bytes]) -> Iterator[Metric]:
        series: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
        for field, value in raw.items():
            route, method, code, part = field.decode().rsplit("|", 3)
            series[(route, method, code)][part] = float(value)
        yield _histogram("warden_http_request_duration_seconds",
                         "Time the API took to answer requests", ["route", "method", "code"],
                         series)


def _decode(raw: dict[bytes, bytes]) -> dict[str, float]:
    return {k.decode(): float(v) for k, v in raw.items()}


class HttpMetrics:
    """This API process's request durations, added to Redis every ``FLUSH_S`` (one
    pipeline, not a round trip per request) so a scrape of any API sees every process's."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._pending: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="warden-http-metrics",
                                        daemon=True)
        self._thread.start()

    def observe(self, route: str, method: str, code: int, seconds: float) -> None:
        base = f"{route}|{method}|{code}|"
        with self._lock:
            self._pending[base + str(bucket(seconds))] += 1
            self._pending[base + "sum"] += seconds

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, defaultdict(float)
        if not pending:
            return
        pipe = self.r.pipeline(transaction=False)
        for field, value in pending.items():
            if field.endswith("|sum"):
                pipe.hincrbyfloat(HTTP, field, value)
            else:
                pipe.hincrby(HTTP, field, int(value))
        try:
            pipe.execute()
        except redis.RedisError:
            with self._lock:  # Redis away: keep the counts for the next flush
                for field, value in pending.items():
                    self._pending[field] += value

    def _loop(self) -> None:
        while not self._stop.wait(FLUSH_S):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()


class HttpMetricsMiddleware:
    """Times every HTTP request by its route template (so ids do not become labels), into
    the app state's :class:`HttpMetrics`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        code = 500

        async def send_and_note(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            state = getattr(scope["app"].state, "warden", None)
            if state is not None:
                state.http_metrics.observe(template, scope["method"], code,
                                           time.perf_counter() - started)


def registry(client: redis.Redis, queue_name: str, tenant_labels: bool) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ClusterCollector(client, queue_name, tenant_labels))
    return reg
