"""`warden up`: one command starts Redis, the API and workers, restarts a dead child, and
stops everything cleanly on Ctrl-C (a SIGINT to the whole foreground process group)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import wat_modules as W
from tests.service.cluster import ROOT
from workers.redis_server import free_port


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Up:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
        env.update({
            "WARDEN_DATA_DIR": str(tmp), "WARDEN_PORT": str(self.port), "WARDEN_WORKERS": "1",
            "WARDEN_WARM_LANGUAGES": "false", "WARDEN_LEASE_S": "2", "PYTHONPATH": str(ROOT),
        })
        self.log = tmp / "up.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "up"], env=env, cwd=ROOT,
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, as a terminal gives a foreground job
        )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

    def wait_ready(self, workers: int = 1, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                r = self.http.get("/readyz")
                if r.status_code == 200 and r.json()["workers"] >= workers:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"not ready: {self.log.read_text()[-2000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    u = Up(tmp_path)
    try:
        yield u
    finally:
        if u.proc.poll() is None:
            os.killpg(u.proc.pid, signal.SIGKILL)
        u.proc.wait()


def test_up_runs_jobs_restarts_a_dead_worker_and_stops_cleanly_on_ctrl_c(up: Up) -> None:
    up.wait_ready()
    assert f"http://127.0.0.1:{up.port}" in up.output()  # the URL is printed
    r = up.http.post("/v1/jobs", params={"wait": 30}, json={"wat": W.hello("up\n")})
    assert r.status_code == 200 and r.json()["result"]["status"] == "ok", r.text

    kids = children(up.proc.pid)
    assert len(kids) == 3, kids  # redis, api, one worker
    workers = [p for p in kids if b"worker" in Path(f"/proc/{p}/cmdline").read_bytes()]
    os.kill(workers[0], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while workers[0] in children(up.proc.pid) or len(children(up.proc.pid)) < 3:
        assert time.monotonic() < deadline, up.output()
        time.sleep(0.1)
    up.wait_ready()
    assert "restarting" in up.output()

    everything = children(up.proc.pid)
    os.killpg(up.proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
    assert up.proc.wait(timeout=60) == 0
    assert "Traceback" not in up.output(), up.output()
    assert not [p for p in everything if alive(p)]


def test_a_killed_supervisor_leaves_nothing_running(up: Up) -> None:
    up.wait_ready()
    kids = children(up.proc.pid)
    assert len(kids) == 3
    up.proc.kill()  # only the supervisor: its children must not live on
    up.proc.wait()
    deadline = time.monotonic() + 30
    while [p for p in kids if alive(p)]:
        assert time.monotonic() < deadline, [p for p in kids if alive(p)]
        time.sleep(0.1)
