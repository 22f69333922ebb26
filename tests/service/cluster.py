"""A real Warden for tests: embedded Redis on a free port, the API and workers as processes."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis

from tenancy.bootstrap import ensure_first_key
from tenancy.quotas import Quotas
from tenancy.registry import TenantRegistry
from workers.processes import stop_gracefully
from workers.redis_server import EmbeddedRedis, free_port
from workers.store import job_key

ROOT = Path(__file__).resolve().parents[2]
UNLIMITED = Quotas(submissions_per_minute=1_000_000, submission_burst=1_000_000,
                   reads_per_minute=10_000_000, read_burst=10_000_000, max_queued=1_000_000,
                   max_running=100_000)
PROBLEM_TYPE_BASE = "https://warden.dev/problems/"
TERMINAL = ("finished", "failed", "cancelled")


def assert_problem(r: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    """An RFC 9457 problem+json answer of this status and stable type, with no trace."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].split(";")[0] == "application/problem+json", r.headers
    body: dict[str, Any] = r.json()
    assert body["type"] == PROBLEM_TYPE_BASE + kind, body
    assert body["status"] == status, body
    assert isinstance(body["title"], str) and body["title"], body
    assert "Traceback" not in r.text and 'File "' not in r.text, r.text
    return body


def stdout_of(record: dict[str, Any]) -> bytes:
    return base64.b64decode(record["result"]["stdout"])


def unix(timestamp: str) -> float:
    """An API timestamp (RFC 3339, UTC, ``Z``) as unix seconds."""
    assert timestamp.endswith("Z"), timestamp
    return datetime.fromisoformat(timestamp).timestamp()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def worker_name(proc: subprocess.Popen[bytes]) -> str:
    """The ``worker`` field of jobs this process ran (workers.store.WORKER_NAME)."""
    return f"{socket.gethostname()}:{proc.pid}"


class Cluster:
    def __init__(self, data_dir: Path, **settings: object) -> None:
        self.data_dir = data_dir
        # Tests kill Redis and expect nothing acknowledged to be lost: fsync every write.
        self.redis = EmbeddedRedis(data_dir / "redis", fsync="always").start()
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")},
            "WARDEN_REDIS_URL": self.redis.url,
            "WARDEN_DATA_DIR": str(data_dir),
            "WARDEN_PORT": str(self.port),
            "WARDEN_WARM_LANGUAGES": "false",  # tests that need languages turn it on
            "PYTHONPATH": str(ROOT),
            **{f"WARDEN_{k.upper()}": str(v) for k, v in settings.items()},
        }
        self.api: subprocess.Popen[bytes] | None = None
        self.logs: dict[int, Path] = {}
        self.workers: list[subprocess.Popen[bytes]] = []
        self.other_apis: list[subprocess.Popen[bytes]] = []
        created = ensure_first_key(TenantRegistry(self.client), data_dir)  # as `warden up`
        assert created is not None
        # The suite's own jobs run as the default tenant: quotas out of its way (the quota
        # tests make tenants of their own).
        TenantRegistry(self.client).set_quotas(created.tenant, UNLIMITED)
        self.admin_key = created.secret
        self.http = self.http_as(self.admin_key)

    def new_tenant(self, prefix: str = "t", **quotas: object) -> tuple[str, httpx.Client]:
        """A new tenant with ``quotas`` and a client sending its (non-admin) key."""
        tenant = f"{prefix}-{uuid.uuid4().hex[:10]}"
        r = self.http.post("/v1/admin/tenants", json={"id": tenant, "quotas": quotas})
        assert r.status_code == 201, r.text
        key = self.http.post(f"/v1/admin/tenants/{tenant}/keys", json={"name": "test"})
        assert key.status_code == 201, key.text
        return tenant, self.http_as(key.json()["secret"])

    def http_as(self, key: str | None) -> httpx.Client:
        """A client of the API sending ``key`` (None: no Authorization header)."""
        headers = {"Authorization": f"Bearer {key}"} if key else None
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60,
                            headers=headers)

    @property
    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url)

    def start_another_api(self) -> int:
        """A second API process on its own port (as a second pod would be); its port."""
        port = free_port()
        proc = self._spawn("api", env={"WARDEN_PORT": str(port)})
        self.other_apis.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    return port
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the second API did not start")

    def _spawn(self, *args: str, env: dict[str, str] | None = None,
               wrapper: list[str] | None = None) -> subprocess.Popen[bytes]:
        """``wrapper``: a command the process runs under (an outer jail)."""
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        path = logs / f"{args[0]}-{time.monotonic_ns()}.log"
        with path.open("wb") as log:
            proc = subprocess.Popen(
                [*(wrapper or []), sys.executable, "-m", "service.cli", *args],
                env={**self.env, **(env or {})},
                cwd=ROOT,
                stdout=log, stderr=subprocess.STDOUT,
            )
        self.logs[proc.pid] = path
        return proc

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        return self.logs[proc.pid].read_text(errors="replace")

    # -- jobs ----------------------------------------------------------------------------
    def submit(self, body: dict[str, Any], **params: Any) -> str:
        r = self.http.post("/v1/jobs", json=body, params=params)
        assert r.status_code == 202, r.text
        job_id: str = r.json()["id"]
        return job_id

    def get(self, job_id: str) -> dict[str, Any]:
        r = self.http.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, r.text
        record: dict[str, Any] = r.json()
        return record

    def wait_state(
        self, job_id: str, states: tuple[str, ...] = TERMINAL, timeout_s: float = 30.0
    ) -> dict[str, Any]:
        """Poll (no server-side wait) until the job is in one of ``states``."""
        deadline = time.monotonic() + timeout_s
        while True:
            record = self.get(job_id)
            if record["state"] in states:
                return record
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {record['state']} after {timeout_s}s")
            time.sleep(0.05)

    def worker_of(self, job_id: str) -> str | None:
        """host:pid of the worker that last ran ``job_id``: kept in Redis for operators,
        never shown to tenants."""
        value = self.client.hget(job_key(job_id), "worker")
        return value.decode() if value else None

    def worker_proc(self, name: str) -> subprocess.Popen[bytes]:
        for proc in self.workers:
            if worker_name(proc) == name:
                return proc
        raise AssertionError(f"no worker of this cluster is {name}")

    def restart_redis(self, kill: bool = False) -> None:
        """Stop (or kill) the Redis and start it again on the same port and data dir."""
        if kill:
            self.redis.kill()
        else:
            self.redis.stop()
        self.start_redis_again()

    def start_redis_again(self) -> None:
        """Start the (stopped or killed) Redis on its port and data dir."""
        self.redis = EmbeddedRedis(
            self.data_dir / "redis", port=self.redis.port, fsync=self.redis.fsync
        ).start()

    def start_api(self, wrapper: list[str] | None = None) -> None:
        self.api = self._spawn("api", wrapper=wrapper)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.http.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("API did not start")

    def start_worker(self, wrapper: list[str] | None = None,
                     env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = self._spawn("worker", wrapper=wrapper, env=env)
        self.workers.append(proc)
        return proc

    def wait_ready(self, workers: int) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = self.http.get("/readyz")
            if r.status_code == 200 and r.json()["workers"] >= workers:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{workers} worker(s) did not become ready")

    def stop_workers(self) -> None:
        stop_gracefully(self.workers, 15)
        self.workers.clear()

    def kill_api(self) -> None:
        if self.api is not None:
            self.api.kill()
            self.api.wait()
            self.api = None

    def close(self) -> None:
        for proc in self.workers:  # the test is over: no need for a warm shutdown (~3 s)
            if proc.poll() is None:
                proc.kill()
        self.stop_workers()
        stop_gracefully(self.other_apis, 10)
        if self.api is not None:
            stop_gracefully([self.api], 10)
        self.http.close()
        self.redis.stop()
