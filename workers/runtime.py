"""Per-process worker state: one Sandbox, one JobStore, and the jobs running right now.

Background threads keep running jobs' leases fresh, deliver cancels (Redis pub/sub), and
reap jobs whose worker died (expired leases) so they are re-run or failed within seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import redis

from sandboxes.languages.source_runner import SourceRunner
from sandboxes.runtime.control import CancelToken
from sandboxes.runtime.sandbox import Sandbox
from sandboxes.settings import Settings, get_settings
from workers.health import Health, write_health
from workers.pools import served_pools
from workers.queue import JobQueue
from workers.reaper import Reaper
from workers.store import CANCEL, WORKER_NAME, JobStore

log = logging.getLogger(__name__)

_MODULE_CACHE_BYTES = 32 * 1024 * 1024


@dataclass
class _Running:
    token: str
    cancel: CancelToken
    tenant: str | None = None  # None: the renewal reads it from the job's record


class WorkerRuntime:
    def __init__(self, settings: Settings) -> None:
        if settings.redis_url is None:
            raise RuntimeError("WARDEN_REDIS_URL is not set (warden up sets it for workers)")
        self.settings = settings
        self.usage_retention_s = settings.usage_retention_days * 86_400
        timeout = settings.redis_call_timeout_s
        self.client = redis.Redis.from_url(settings.redis_url, socket_timeout=timeout,
                                           socket_connect_timeout=timeout)
        self.store = JobStore(self.client, settings.job_ttl_s, settings.lease_s)
        self.queue = JobQueue(
            self.client, self.store, settings.queue_name, settings.max_queue_length
        )
        self.sandbox = Sandbox(settings)
        self.sources = SourceRunner(self.sandbox)
        self.languages = tuple(self.sources.served_languages())  # said with each heartbeat
        self.pools = served_pools(self.languages)  # the queues its lanes take from
        # Module bytes by sha256 (content-addressed, so never stale): saves a GET per job.
        self._modules: OrderedDict[str, bytes] = OrderedDict()
        self._modules_bytes = 0
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # Readiness means "taking jobs": the heartbeat starts only once the worker has its
        # signal handlers (a SIGTERM before then kills the process with no retire).
        self._serving = threading.Event()
        self.warmed = threading.Event()  # warm-up done (or not asked for): ready for probes
        if settings.worker_health_file is not None:  # a crashed predecessor's file (the
            settings.worker_health_file.unlink(missing_ok=True)  # emptyDir outlives it)
        if not settings.warm_languages:
            self.warmed.set()
        self._renewer = threading.Thread(
            target=self._renew_loop, name="warden-lease-renewer", daemon=True
        )
        self._renewer.start()
        self.reaper = Reaper(self.store, self.queue, settings.lease_s, settings.max_attempts)
        self.reaper.start(self._stop)
        for target, name in (
            (self._cancel_loop, "cancel-listener"),
            *([(self._warm, "warm-languages")] if settings.warm_languages else []),
        ):
            threading.Thread(target=target, name=f"warden-{name}", daemon=True).start()

    def serve(self) -> None:
        """Start counting this worker for readiness (it now takes jobs and stops cleanly)."""
        self._serving.set()
        try:
            self.store.heartbeat(WORKER_NAME, self.settings.worker_lanes, self.languages)
        except redis.RedisError:
            log.warning("could not send the worker heartbeat")

    def retire(self) -> None:
        """A clean stop: no more heartbeats, and readiness stops counting this worker now."""
        self._serving.clear()
        self._stop.set()
        self._renewer.join(timeout=5)
        try:
            self.store.retire(WORKER_NAME)
        except redis.RedisError:
            log.warning("could not retire the worker heartbeat (it expires within a lease)")

    def module(self, sha256: str) -> bytes | None:
        """A module's bytes: from this process's LRU, else from Redis (then kept)."""
        with self._lock:
            data = self._modules.get(sha256)
            if data is not None:
                self._modules.move_to_end(sha256)
                return data
        data = self.store.get_module(sha256)
        if data is None or len(data) > _MODULE_CACHE_BYTES // 4:
            return data
        with self._lock:
            if sha256 not in self._modules:
                self._modules[sha256] = data
                self._modules_bytes += len(data)
                while self._modules_bytes > _MODULE_CACHE_BYTES:
                    _, old = self._modules.popitem(last=False)
                    self._modules_bytes -= len(old)
        return data

    def track(self, job_id: str, token: str, cancel: CancelToken,
              tenant: str | None = None) -> None:
        with self._lock:
            self._running[job_id] = _Running(token, cancel, tenant)

    def untrack(self, job_id: str) -> None:
        with self._lock:
            self._running.pop(job_id, None)

    def _warm(self) -> None:
        """Compile interpreters and the zig sysroot now, not in the first source job, and
        start a component executor, not in the first component job."""
        try:  # first: the helper a job's own compile takes (warm-up compiles use others)
            self.sandbox.compiler.warm()
        except Exception:
            log.exception("starting a compile helper failed (compiles will retry)")
        if self.sandbox.executors is not None:
            try:
                self.sandbox.executors.warm()
            except Exception:
                log.exception("starting a component executor failed (component jobs will retry)")
        try:  # interpreters last, at the lowest CPU priority: jobs never wait behind them
            self.sources.warm(in_worker=True)
        except Exception:
            log.exception("warming the language toolchains failed (source jobs will retry)")
        self.warmed.set()  # even after a failure: jobs retry the warm-up themselves

    def report_health(self, redis_ok: bool, serving: bool | None = None) -> None:
        """Rewrite the health file probes read (workers/health.py), if one is configured.
        A file that cannot be written is logged, never fatal: the probe then fails."""
        path = self.settings.worker_health_file
        if path is None:
            return
        state = Health(serving=self._serving.is_set() if serving is None else serving,
                       redis=redis_ok, warm=self.warmed.is_set())
        try:
            write_health(path, state)
        except OSError as err:
            log.warning("could not write the health file %s: %s", path, err)

    def _renew_loop(self) -> None:
        """Renew running jobs' leases and this worker's own heartbeat (for /readyz)."""
        while True:
            if self._serving.is_set():
                try:
                    self.store.heartbeat(WORKER_NAME, self.settings.worker_lanes, self.languages)
                except redis.RedisError:
                    log.warning("could not send the worker heartbeat")
            if self._stop.wait(self.settings.lease_s / 3):
                return
            with self._lock:
                running = list(self._running.items())
            for job_id, job in running:
                try:
                    if self.store.renew(job_id, job.token, job.tenant) == 2:
                        job.cancel.cancel()  # a cancel whose pub/sub message was missed
                except redis.RedisError:
                    log.warning("could not renew lease of %s", job_id)

    def _cancel_loop(self) -> None:
        while not self._stop.is_set():
            try:
                # Any: redis-py's typing of pubsub changed between releases (5 to 8)
                client: Any = self.client
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                try:
                    pubsub.subscribe(CANCEL)
                    while not self._stop.is_set():
                        # Polled, not listen(): a silent channel is not a socket timeout
                        message = pubsub.get_message(timeout=1.0)
                        if message is None:
                            continue
                        job_id = message["data"].decode()
                        with self._lock:
                            job = self._running.get(job_id)
                        if job is not None:
                            job.cancel.cancel()
                finally:
                    pubsub.close()
            except redis.RedisError:
                time.sleep(0.5)

_runtime: WorkerRuntime | None = None
_runtime_lock = threading.Lock()


def runtime() -> WorkerRuntime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = WorkerRuntime(get_settings())
        return _runtime
