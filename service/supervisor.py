"""``warden up``: Redis (given or embedded), the API and N workers, supervised.

A child that dies is restarted (with backoff); Ctrl-C or SIGTERM stops workers first (they
finish their current job), then the API, then the embedded Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from sandboxes.settings import Settings
from workers.processes import child_setup, stop_gracefully
from workers.redis_server import EmbeddedRedis

_MAX_BACKOFF_S = 10.0
_STOP_GRACE_S = 30.0


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, env=self.env, preexec_fn=child_setup
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis: EmbeddedRedis | None = None
        self.children: list[Child] = []
        self._stopping = False

    def _env(self, redis_url: str) -> dict[str, str]:
        env = dict(os.environ)
        env["WARDEN_REDIS_URL"] = redis_url
        env["WARDEN_DATA_DIR"] = str(self.settings.data_dir)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self) -> str:
        url = self.settings.redis_url
        if url is None:
            self.redis = EmbeddedRedis(
                Path(self.settings.data_dir) / "redis", fsync=self.settings.redis_appendfsync
            ).start()
            url = self.redis.url
        env = self._env(url)
        py = sys.executable
        self.children.append(Child("api", [py, "-m", "service.cli", "api"], env=env))
        for i in range(self.settings.workers):
            self.children.append(Child(f"worker-{i}", [py, "-m", "service.cli", "worker"], env=env))
        for child in self.children:
            child.start()
        return url

    def watch(self) -> None:
        """Restart dead children until asked to stop."""
        while not self._stopping:
            now = time.monotonic()
            for child in self.children:
                if child.alive() or self._stopping:
                    continue
                if child.next_start == 0.0:
                    child.restarts += 1
                    delay = min(_MAX_BACKOFF_S, 0.5 * 2 ** min(child.restarts, 5))
                    child.next_start = now + delay
                    code = child.proc.returncode if child.proc else None
                    print(f"warden: {child.name} exited ({code}); restarting in {delay:.1f}s",
                          file=sys.stderr, flush=True)
                elif now >= child.next_start:
                    child.next_start = 0.0
                    child.start()
            time.sleep(0.2)

    def stop(self) -> None:
        self._stopping = True
        workers = [c for c in self.children if c.name.startswith("worker")]
        api = [c for c in self.children if c.name == "api"]
        for group in (workers, api):
            stop_gracefully([c.proc for c in group if c.proc is not None], _STOP_GRACE_S)
        if self.redis is not None:
            self.redis.stop()
