"""``warden up``: Redis (given or embedded), the API and N workers, supervised.

A child that dies is restarted (with backoff), and so is the embedded Redis (same port and
data dir: it reloads its AOF, and the API and workers reconnect by themselves). Ctrl-C or
SIGTERM stops workers first (they finish their current job), then the API, then the
embedded Redis.

Children get the supervisor's settings, all of them, as ``WARDEN_*`` environment variables:
an option given to ``warden up`` (``--port``, ``--data-dir``…) is what the API and workers
use, not only what ``up`` prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from sandboxes.settings import Settings
from tenancy.bootstrap import ensure_first_key
from tenancy.models import CreatedKey
from tenancy.registry import TenantRegistry
from workers.processes import child_setup, stop_gracefully
from workers.redis_server import EmbeddedRedis

# A crash loop (a bad setting) costs a restart every 2 s at most; a worker killed over and
# over is back within 2 s (at 10 s and a 60 s reset, a kill every few seconds left no
# worker alive most of the time).
_MAX_BACKOFF_S = 2.0
_STOP_GRACE_S = 30.0
# A child (or Redis) that ran this long before dying is restarted without the backoff its
# earlier deaths earned.
_STABLE_S = 10.0


def child_env(settings: Settings, redis_url: str) -> dict[str, str]:
    """The environment of a supervised child: ours, with every setting as ``WARDEN_*``."""
    env = dict(os.environ)
    for name, value in settings.model_dump(mode="json").items():
        key = f"WARDEN_{name.upper()}"
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value if isinstance(value, str) else json.dumps(value)
    env["WARDEN_REDIS_URL"] = redis_url
    env["PYTHONUNBUFFERED"] = "1"
    return env


def first_key(redis_url: str, data_dir: Path) -> CreatedKey | None:
    """The quick start's admin key, if this start created the first tenant."""
    client = redis.Redis.from_url(redis_url)
    try:
        return ensure_first_key(TenantRegistry(client), data_dir)
    finally:
        client.close()


def _backoff(restarts: int) -> float:
    return min(_MAX_BACKOFF_S, 0.5 * 2.0 ** min(restarts, 5))


def _log(message: str) -> None:
    print(f"warden: {message}", file=sys.stderr, flush=True)


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv, env=self.env, preexec_fn=child_setup
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        data_dir = Path(settings.data_dir).expanduser().resolve()  # children may chdir
        self.settings = settings.model_copy(update={"data_dir": data_dir})
        self.redis: EmbeddedRedis | None = None
        self.children: list[Child] = []
        self._stopping = False
        self._redis_restarts = 0
        self._redis_next = 0.0
        self._redis_started = 0.0
        self.first_key: CreatedKey | None = None

    def start(self) -> str:
        url = self.settings.redis_url
        if url is None:
            # Assigned before it starts: a Ctrl-C while it loads its AOF still stops it.
            self.redis = EmbeddedRedis(
                self.settings.data_dir / "redis", fsync=self.settings.redis_appendfsync
            )
            self.redis.start()
            self._redis_started = time.monotonic()
            url = self.redis.url
        self.first_key = first_key(url, self.settings.data_dir)
        env = child_env(self.settings, url)
        py = sys.executable
        self.children.append(Child("api", [py, "-m", "service.cli", "api"], env=env))
        for i in range(self.settings.workers):
            self.children.append(Child(f"worker-{i}", [py, "-m", "service.cli", "worker"], env=env))
        for child in self.children:
            child.start()
        return url

    def watch(self) -> None:
        """Restart the embedded Redis and dead children until asked to stop."""
        while not self._stopping:
            now = time.monotonic()
            self._watch_redis(now)
            for child in self.children:
                if child.alive() or self._stopping:
                    continue
                if child.next_start == 0.0:
                    if now - child.started_at >= _STABLE_S:
                        child.restarts = 0
                    child.restarts += 1
                    delay = _backoff(child.restarts)
                    child.next_start = now + delay
                    code = child.proc.returncode if child.proc else None
                    _log(f"{child.name} exited ({code}); restarting in {delay:.1f}s")
                elif now >= child.next_start:
                    child.next_start = 0.0
                    child.start()
            time.sleep(0.2)

    def _watch_redis(self, now: float) -> None:
        """A dead embedded Redis starts again on the same port and data dir (its AOF)."""
        redis = self.redis
        if redis is None or self._stopping or redis.alive():
            return
        if self._redis_next == 0.0:
            if now - self._redis_started >= _STABLE_S:
                self._redis_restarts = 0
            # The first restart is at once: every request fails while Redis is down.
            delay = 0.0 if self._redis_restarts == 0 else _backoff(self._redis_restarts)
            self._redis_restarts += 1
            self._redis_next = now + delay
            _log(f"redis exited ({redis.returncode}); restarting it on port {redis.port} "
                 f"with its data in {redis.data_dir} in {delay:.1f}s")
        if now < self._redis_next:
            return
        self._redis_next = 0.0
        self._redis_started = now
        try:
            redis.restart()
        except RuntimeError as err:  # exited again at once, or still loading its AOF
            if redis.alive():
                _log(f"redis restarted but is not answering yet ({err})")
            else:
                _log(f"redis did not restart: {err}")
            return
        _log(f"redis restarted on port {redis.port} "
             f"(pid {redis.proc.pid if redis.proc else '?'})")

    def stop(self) -> None:
        """Workers first (each finishes its running job, up to the grace), then the API,
        then the embedded Redis (a clean shutdown: its AOF is complete). A second Ctrl-C
        (or SIGTERM) while workers finish kills them: their jobs run again on the next
        start with this data dir, once their lease expires."""
        self._stopping = True
        workers = [c for c in self.children if c.name.startswith("worker")]
        api = [c for c in self.children if c.name == "api"]
        try:
            for group in (workers, api):
                stop_gracefully([c.proc for c in group if c.proc is not None], _STOP_GRACE_S)
        except KeyboardInterrupt:
            _log("interrupted again: killing the workers and the API now "
                 "(running jobs run again on the next start)")
            for child in self.children:
                if child.proc is not None and child.proc.poll() is None:
                    child.proc.kill()
                    child.proc.wait()
        if self.redis is not None:
            self.redis.stop()
