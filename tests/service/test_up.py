"""`warden up`: one command starts Redis, the API and workers, restarts a dead child, and
stops everything cleanly on Ctrl-C (a SIGINT to the whole foreground process group)."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests import wat_modules as W
from tests.service.cluster import ROOT, unix
from workers.redis_server import free_port
from workers.store import job_key


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
    """``warden up`` in its own process group. ``args``: its options; ``env``: WARDEN_*
    settings on top of the test defaults (``None`` removes one)."""

    def __init__(self, tmp: Path, args: tuple[str, ...] = (),
                 env: dict[str, str | None] | None = None, host: str = "127.0.0.1",
                 port: int | None = None, log_name: str = "up.log") -> None:
        self.port = port or free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
        settings: dict[str, str | None] = {
            "WARDEN_DATA_DIR": str(tmp), "WARDEN_PORT": str(self.port), "WARDEN_WORKERS": "1",
            "WARDEN_WARM_LANGUAGES": "false", "WARDEN_LEASE_S": "2", **(env or {}),
        }
        base.update({k: v for k, v in settings.items() if v is not None})
        base["PYTHONPATH"] = str(ROOT)
        self.log = tmp / log_name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "up", *args], env=base, cwd=ROOT,
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, as a terminal gives a foreground job
        )
        self.http = httpx.Client(base_url=f"http://{host}:{self.port}", timeout=30)
        data_dir = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--data-dir"),
                        base.get("WARDEN_DATA_DIR", str(tmp)))
        self.key_file = Path(data_dir) / "api-key"

    def wait_ready(self, workers: int = 1, timeout_s: float = 60) -> None:
        """Ready, and the client sends the key `warden up` stored (as `warden submit`)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                r = self.http.get("/readyz")
                if r.status_code == 200 and r.json()["workers"] >= workers:
                    key = self.key_file.read_text().strip()
                    self.http.headers["Authorization"] = f"Bearer {key}"
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"not ready: {self.log.read_text()[-2000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def child(self, word: bytes) -> int:
        """The one child whose command line has ``word`` (redis-server, worker, api)."""
        found = [p for p in children(self.proc.pid) if word in cmdline(p)]
        assert len(found) == 1, (word, found, self.output())
        return found[0]

    def job(self, body: dict[str, object], wait_s: float = 20) -> dict[str, Any]:
        r = self.http.post("/v1/jobs", params={"wait": wait_s}, json=body)
        assert r.status_code == 200, r.text
        record: dict[str, Any] = r.json()
        assert record["state"] == "finished", record
        return record

    def worker_of(self, job_id: str) -> str:
        """host:pid of the job's last worker, from the embedded Redis (the API shows
        tenants no host details)."""
        # redis-server retitles itself "redis-server 127.0.0.1:PORT"
        found = re.search(rb"127\.0\.0\.1:(\d+)", cmdline(self.child(b"redis-server")))
        assert found is not None
        port = int(found.group(1))
        value = redis.Redis(port=port).hget(job_key(job_id), "worker")
        assert value is not None, job_id
        return value.decode()

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.http.close()


def _worker_child(up: Up) -> int:
    """The worker child of ``warden up``, once it is one: a child just forked still has the
    supervisor's command line for a moment."""
    deadline = time.monotonic() + 30
    while True:
        for pid in children(up.proc.pid):
            if b"worker" in cmdline(pid):
                return pid
        assert time.monotonic() < deadline, up.output()
        time.sleep(0.05)


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    u = Up(tmp_path)
    try:
        yield u
    finally:
        u.close()


def test_up_runs_jobs_restarts_a_dead_worker_and_stops_cleanly_on_ctrl_c(up: Up) -> None:
    up.wait_ready()
    assert f"http://127.0.0.1:{up.port}" in up.output()  # the URL is printed
    key = up.key_file.read_text().strip()
    assert up.output().count(key) == 1  # the first key is printed once
    assert up.key_file.stat().st_mode & 0o777 == 0o600
    assert httpx.post(f"http://127.0.0.1:{up.port}/v1/jobs", json={"wat": W.HELLO}
                      ).status_code == 401  # nothing runs unauthenticated
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
    # Killed again and again, as soon as it is back: each restart still comes within 2 s
    # (the backoff is capped there; it once climbed to 10 s and left no worker alive).
    for _ in range(4):
        victim = _worker_child(up)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while victim in children(up.proc.pid) or len(children(up.proc.pid)) < 3:
            assert time.monotonic() < deadline, up.output()
            time.sleep(0.05)
    delays = [float(d) for d in re.findall(r"restarting in ([0-9.]+)s", up.output())]
    assert len(delays) == 5 and max(delays) <= 2.0, up.output()
    up.wait_ready()

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


def aof_bytes(redis_dir: Path) -> bytes:
    """Everything the embedded Redis has appended (Redis 6: appendonly.aof; Redis 7+: the
    files of appendonlydir)."""
    paths = sorted(redis_dir.glob("appendonly*.aof")) + sorted(
        redis_dir.glob("appendonlydir/*.aof*")
    )
    return b"".join(p.read_bytes() for p in paths)


def wait_for(what: str, check: Any, up: Up, timeout_s: float = 20) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: {up.output()[-2000:]}"
        time.sleep(0.05)


def wait_running(up: Up, job_id: str) -> None:
    wait_for(f"job {job_id} running",
             lambda: up.http.get(f"/v1/jobs/{job_id}").json()["state"] == "running", up)


def test_up_options_reach_every_child(tmp_path: Path) -> None:
    """--host/--port reach the API, --workers the worker count, --data-dir Redis and the
    workers; none of them is in the environment."""
    data, xdg, port = tmp_path / "data", tmp_path / "xdg", free_port()
    u = Up(tmp_path, ("--host", "127.0.0.2", "--port", str(port), "--workers", "1",
                      "--data-dir", str(data)),
           env={"WARDEN_PORT": None, "WARDEN_WORKERS": None, "WARDEN_DATA_DIR": None,
                "XDG_DATA_HOME": str(xdg)},  # where the default data dir would be
           host="127.0.0.2", port=port)
    try:
        u.wait_ready(timeout_s=30)
        assert f"http://127.0.0.2:{port}" in u.output()
        with pytest.raises(httpx.ConnectError):  # the flag's host, not the default one
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        kids = children(u.proc.pid)
        assert len(kids) == 3, kids  # redis, api, exactly one worker (2 cores: default 2)
        assert u.http.get("/readyz").json()["workers"] == 1

        aof_before = aof_bytes(data / "redis")
        record = u.job({"wat": W.hello("flags\n")})
        assert record["result"]["status"] == "ok", record
        assert b"flags" in base64.b64decode(record["result"]["stdout"])
        # The embedded Redis keeps its AOF under --data-dir, and it has this job.
        wait_for("the job in the AOF",
                 lambda: record["id"].encode() in aof_bytes(data / "redis"), u, 5)
        assert len(aof_bytes(data / "redis")) > len(aof_before) > 0
        assert (data / "artifacts").is_dir()  # the worker's module cache is there too
        assert not (xdg / "warden").exists()
    finally:
        u.close()


def test_a_killed_embedded_redis_is_restarted_with_its_data(tmp_path: Path) -> None:
    u = Up(tmp_path, env={"WARDEN_REDIS_APPENDFSYNC": "always"})
    try:
        u.wait_ready()
        before = u.job({"wat": W.hello("before\n")})
        old = u.child(b"redis-server")
        title = cmdline(old)  # redis-server 127.0.0.1:<port>
        assert b"127.0.0.1:" in title, title
        os.kill(old, signal.SIGKILL)
        # A new redis-server on the same port (its title, once it has set it).
        wait_for("a new redis-server", lambda: [
            p for p in children(u.proc.pid) if p != old and alive(p) and cmdline(p) == title], u)
        u.wait_ready(timeout_s=20)
        wait_for("the restart logged", lambda: "redis restarted on port" in u.output(), u, 5)
        assert "redis exited (-9); restarting it on port" in u.output()

        # What was acknowledged before the crash is still there (the AOF was reloaded).
        assert u.http.get(f"/v1/jobs/{before['id']}").json()["state"] == "finished"
        # The API (submit, and its pub/sub waiter) and the worker took up the new Redis:
        # the wait ends when the job does, not when it times out.
        started = time.monotonic()
        after = u.job({"wat": W.hello("after\n")}, wait_s=15)
        assert time.monotonic() - started < 5
        assert base64.b64decode(after["result"]["stdout"]) == b"after\n"
        # The worker's cancel listener re-subscribed too.
        r = u.http.post("/v1/jobs", json={"wat": W.LOOP, "limits": {"wall_time_s": 30}})
        job_id = r.json()["id"]
        wait_running(u, job_id)
        cancelled = u.http.delete(f"/v1/jobs/{job_id}", params={"wait": 10}).json()
        assert cancelled["state"] == "cancelled", cancelled
        assert cancelled["result"]["status"] == "cancelled", cancelled
    finally:
        u.close()


def test_ctrl_c_lets_the_running_job_finish_before_up_exits(tmp_path: Path) -> None:
    """The job finishes on the worker that had it before `up` exits; the next `up` on the
    same data dir has its result and does not run it again."""
    u = Up(tmp_path, env={"WARDEN_REDIS_APPENDFSYNC": "always"})
    try:
        u.wait_ready()
        worker = u.child(b"worker")
        r = u.http.post("/v1/jobs", json={"wat": W.sleep(2.5), "limits": {"wall_time_s": 10}})
        job_id = r.json()["id"]
        wait_running(u, job_id)
        os.killpg(u.proc.pid, signal.SIGINT)
        assert u.proc.wait(timeout=30) == 0
        exited = time.time()
        assert "stopping" in u.output() and "Traceback" not in u.output(), u.output()
    finally:
        u.close()

    again = Up(tmp_path, log_name="up-again.log")
    try:
        again.wait_ready()
        record = again.http.get(f"/v1/jobs/{job_id}").json()
        assert record["state"] == "finished", record
        assert record["result"]["status"] == "ok", record
        assert record["result"]["wall_time_s"] >= 2.4, record  # it ran to its end
        assert record["attempts"] == 1, record  # not re-run by the new `up`
        assert "worker" not in record, record
        assert again.worker_of(job_id).endswith(f":{worker}"), (record, worker)
        assert unix(record["finished_at"]) < exited, (record, exited)
    finally:
        again.close()


def test_a_second_ctrl_c_kills_the_job_and_the_next_up_runs_it_again(tmp_path: Path) -> None:
    """Ctrl-C twice does not wait for the job: it is run again by the next `up` on the
    same data dir (a new attempt, once the dead run's lease expires)."""
    u = Up(tmp_path, env={"WARDEN_REDIS_APPENDFSYNC": "always"})
    try:
        u.wait_ready()
        first_worker = u.child(b"worker")
        r = u.http.post("/v1/jobs", json={"wat": W.sleep(2.5), "limits": {"wall_time_s": 10}})
        job_id = r.json()["id"]
        wait_running(u, job_id)
        os.killpg(u.proc.pid, signal.SIGINT)
        wait_for("stopping", lambda: "stopping" in u.output(), u, 5)
        os.killpg(u.proc.pid, signal.SIGINT)
        assert u.proc.wait(timeout=10) == 0
        assert "interrupted again" in u.output() and "Traceback" not in u.output(), u.output()
    finally:
        u.close()

    again = Up(tmp_path, log_name="up-again.log")
    try:
        again.wait_ready()
        record = again.http.get(f"/v1/jobs/{job_id}", params={"wait": 15}).json()
        assert record["state"] == "finished", record
        assert record["result"]["status"] == "ok", record
        assert record["attempts"] == 2, record
        assert not again.worker_of(job_id).endswith(f":{first_worker}"), record
    finally:
        again.close()
