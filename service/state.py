"""The API process's shared objects: Redis, the job store and queue, and the waiter."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio as aioredis
from prometheus_client.registry import CollectorRegistry
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff

from sandboxes.schema import JobRecord
from sandboxes.settings import Settings
from service.metrics import HttpMetrics
from service.metrics import registry as metrics_registry
from tenancy.limits import Admission
from tenancy.quotas import Quotas
from tenancy.registry import TenantRegistry
from workers.problem_store import ProblemStore
from workers.queue import Idempotency, JobQueue, Submission, admitted
from workers.store import DEFAULT_TENANT, EVENTS, JobStore, job_key, record_from_fields


class Waiter:
    """One pub/sub subscription per API process; waiting requests get futures, not polls."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._waiting: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        threading.Thread(target=self._listen, name="warden-waiter", daemon=True).start()
        self._ready.wait(5)

    def _listen(self) -> None:
        while True:
            try:
                # Any: redis-py's typing of pubsub changed between releases (5 to 8)
                client: Any = self._client
                pubsub = client.pubsub()
                pubsub.subscribe(EVENTS)
                for message in pubsub.listen():
                    if message["type"] == "subscribe":
                        # Live from here on. After a reconnect, events published while the
                        # connection was down are lost: waiters re-read their job now (Redis
                        # is back), then wait again.
                        self._ready.set()
                        self._wake_all()
                    elif message["type"] == "message":
                        self._wake(message["data"].decode())
            except Exception:
                # Redis errors, and redis-py's own on a connection closed under it (ValueError:
                # I/O operation on closed file): a dead waiter would turn every wait into a
                # full timeout, so subscribe again whatever happened.
                threading.Event().wait(0.5)

    def _wake(self, job_id: str) -> None:
        with self._lock:
            waiters = self._waiting.pop(job_id, [])
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut)

    def _wake_all(self) -> None:
        with self._lock:
            ids = list(self._waiting)
        for job_id in ids:
            self._wake(job_id)

    def register(self, job_id: str) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._waiting.setdefault(job_id, []).append((loop, fut))
        return fut

    def discard(self, job_id: str, fut: asyncio.Future[None]) -> None:
        with self._lock:
            waiters = self._waiting.get(job_id, [])
            waiters[:] = [(lp, f) for lp, f in waiters if f is not fut]
            if not waiters:
                self._waiting.pop(job_id, None)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


_SERVED_TTL_S = 1.0


@dataclass
class AppState:
    settings: Settings
    client: redis.Redis
    store: JobStore
    queue: JobQueue
    waiter: Waiter
    tenants: TenantRegistry
    # The hot path (submit, read a record) uses asyncio Redis: no threadpool hop per call.
    aclient: aioredis.Redis | None = None
    _enqueue_sha: str | None = None
    extra: dict[str, object] = field(default_factory=dict)
    _served: tuple[float, set[str] | None] | None = None  # (read at, served_languages)
    http_metrics: HttpMetrics = field(init=False)
    metrics: CollectorRegistry = field(init=False)
    problems: ProblemStore = field(init=False)

    def __post_init__(self) -> None:
        self.problems = ProblemStore(self.client, self.settings.job_ttl_s)
        self.http_metrics = HttpMetrics(self.client)
        self.metrics = metrics_registry(self.client, self.settings.queue_name,
                                        self.settings.metrics_tenant_labels)

    @property
    def usage_retention_s(self) -> int:
        return self.settings.usage_retention_days * 86_400

    @classmethod
    def connect(cls, settings: Settings) -> AppState:
        if settings.redis_url is None:
            raise RuntimeError("WARDEN_REDIS_URL is not set (warden up sets it for the API)")
        client = redis.Redis.from_url(
            settings.redis_url, max_connections=256, health_check_interval=30
        )
        store = JobStore(client, settings.job_ttl_s, settings.lease_s)
        queue = JobQueue(client, store, settings.queue_name, settings.max_queue_length)
        with contextlib.suppress(redis.RedisError):
            queue.rq.get_redis_server_version()  # RQ asks once; not later, on the loop
        # Unlike the sync pool, the asyncio one hands out a connection the server closed
        # (Redis restarted) without noticing: retry such a command once on a new one.
        aclient = aioredis.Redis.from_url(
            settings.redis_url, max_connections=256, health_check_interval=30,
            retry=AsyncRetry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 2),
        )
        return cls(settings, client, store, queue, Waiter(client), TenantRegistry(client),
                   aclient)

    async def submit(self, submissions: list[Submission], tenant: str = DEFAULT_TENANT,
                     quotas: Quotas | None = None,
                     extra: list[tuple[Any, ...]] | None = None,
                     idempotency: Idempotency | None = None) -> tuple[int, float]:
        """``queue.submit`` in one async round trip: a script checks the queue's cap and
        the tenant's quotas and runs the submissions' writes (built by RQ's own enqueue
        code) atomically, so a batch is queued whole or not at all. The submission rate's
        (remaining, reset s) after it; QueueFullError, QuotaExceededError,
        AlreadySubmittedError (an Idempotency-Key seen before: nothing queued)."""
        assert self.aclient is not None
        script = self.queue.guarded_enqueue_script
        admission = Admission.of(quotas or Quotas(), time.time(), self.settings.job_ttl_s,
                                 self.usage_retention_s)
        args = self.queue.guarded_enqueue_args(submissions, tenant, admission, extra,
                                               idempotency=idempotency)
        if self._enqueue_sha is None:
            self._enqueue_sha = await self.aclient.script_load(script)
        try:
            reply = await self.aclient.evalsha(self._enqueue_sha, *args)
        except redis.exceptions.NoScriptError:  # Redis restarted: scripts are gone
            self._enqueue_sha = await self.aclient.script_load(script)
            reply = await self.aclient.evalsha(self._enqueue_sha, *args)
        return admitted(reply)

    async def served_languages(self) -> set[str] | None:
        """What the live workers serve (``JobStore.served_languages``), read at most once
        a second per API process; None when unknown (no worker up, or Redis unreadable)."""
        now = time.monotonic()
        if self._served is not None and now - self._served[0] < _SERVED_TTL_S:
            return self._served[1]
        served: set[str] | None
        try:
            served = await asyncio.to_thread(self.store.served_languages)
        except redis.RedisError:
            served = None
        self._served = (now, served)
        return served

    async def record(self, job_id: str, tenant: str | None = None) -> JobRecord | None:
        """``store.get`` on the asyncio client; None for another tenant's job."""
        assert self.aclient is not None
        fields: dict[bytes, bytes] = await self.aclient.hgetall(  # type: ignore[assignment]
            job_key(job_id)
        )
        return record_from_fields(job_id, fields, tenant)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.http_metrics.close()
            self.client.close()
