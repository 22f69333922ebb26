"""A real Warden for tests: embedded Redis on a free port, the API and workers as processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis

from workers.redis_server import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parents[2]


class Cluster:
    def __init__(self, data_dir: Path, **settings: object) -> None:
        self.data_dir = data_dir
        self.redis = EmbeddedRedis(data_dir / "redis").start()
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")},
            "WARDEN_REDIS_URL": self.redis.url,
            "WARDEN_DATA_DIR": str(data_dir),
            "WARDEN_PORT": str(self.port),
            "PYTHONPATH": str(ROOT),
            **{f"WARDEN_{k.upper()}": str(v) for k, v in settings.items()},
        }
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)

    @property
    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url)

    def _spawn(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "service.cli", *args], env=self.env, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def start_api(self) -> None:
        self.api = self._spawn("api")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.http.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError("API did not start")

    def start_worker(self) -> subprocess.Popen[bytes]:
        proc = self._spawn("worker")
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
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.workers.clear()
        # RQ keeps a dead worker's registration for its TTL; clear it so readiness is exact.
        from rq import Worker

        for w in Worker.all(connection=self.client):
            w.register_death()

    def kill_api(self) -> None:
        if self.api is not None:
            self.api.kill()
            self.api.wait()
            self.api = None

    def close(self) -> None:
        self.stop_workers()
        if self.api is not None:
            self.api.terminate()
            self.api.wait(10)
        self.http.close()
        self.redis.stop()
