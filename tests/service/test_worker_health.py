"""A worker's liveness and readiness as Kubernetes probes them (workers/health.py): a real
worker process writes its health file; ``python -m workers.health live|ready`` reads it.
Ready needs Redis and the warm-up; live needs only the main loop turning, so a Redis
outage makes a worker unready, never restarted, and a stuck worker is restarted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.service.cluster import ROOT, Cluster
from workers.health import Health, check, write_health


def _probe(cluster: Cluster, kind: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "workers.health", kind], env=cluster.env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, done.stderr.strip()


def _until(cluster: Cluster, kind: str, code: int, timeout_s: float) -> str:
    """Probe until it exits ``code``; its last message."""
    deadline = time.monotonic() + timeout_s
    while True:
        got, message = _probe(cluster, kind)
        if got == code:
            return message
        assert time.monotonic() < deadline, f"{kind} probe still {got} ({message})"
        time.sleep(0.3)


def test_probes_follow_the_worker_through_a_redis_outage_and_a_stall(tmp_path: Path) -> None:
    health = tmp_path / "health" / "worker.json"
    max_age_s = 6.0  # the worker's Redis calls give up after 2 s (a third, at least 2)
    cluster = Cluster(tmp_path, lease_s=2, worker_health_file=health,
                      worker_health_max_age_s=max_age_s)
    try:
        assert _probe(cluster, "live") == (1, f"no health file at {health} yet (the worker "
                                               "has not started its main loop)")
        worker = cluster.start_worker()
        _until(cluster, "ready", 0, 60)
        assert _probe(cluster, "live") == (0, "")
        assert json.loads(health.read_text())["serving"] is True

        cluster.redis.kill()  # unready (cannot take jobs), still live (no restart)
        assert _until(cluster, "ready", 1, 30) == "the worker cannot reach Redis"
        assert _probe(cluster, "live") == (0, "")
        cluster.start_redis_again()
        _until(cluster, "ready", 0, 30)

        # A Redis that stops answering (SIGSTOP: connections stay open, nothing comes
        # back): the worker's calls time out, so its main loop goes on: unready, live.
        assert cluster.redis.proc is not None
        cluster.redis.proc.send_signal(signal.SIGSTOP)
        try:
            assert _until(cluster, "ready", 1, 30) == "the worker cannot reach Redis"
            stalled = time.monotonic()
            while time.monotonic() - stalled < 2 * max_age_s:
                assert _probe(cluster, "live") == (0, ""), health.read_text()
                time.sleep(0.5)
        finally:
            cluster.redis.proc.send_signal(signal.SIGCONT)
        _until(cluster, "ready", 0, 30)  # and it serves again once Redis answers

        os.kill(worker.pid, signal.SIGSTOP)  # a main loop that stops turning: not live
        try:
            message = _until(cluster, "live", 1, 30)
            assert message.startswith("the worker's main loop last reported"), message
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        _until(cluster, "live", 0, 30)

        worker.send_signal(signal.SIGTERM)  # a stopping worker is not ready at once
        # (and it stops promptly after a Redis outage: RQ's pub/sub thread once held it 60 s)
        assert worker.wait(timeout=20) == 0
        assert _probe(cluster, "ready") == (
            1, "the worker is not taking jobs (starting or stopping)")
    finally:
        cluster.close()


def test_a_worker_still_warming_is_live_but_not_ready(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    write_health(path, Health(serving=True, redis=True, warm=False))
    assert check(path, "live", 30) is None
    assert check(path, "ready", 30) == "the worker is still warming its languages"
    write_health(path, Health(serving=True, redis=True, warm=True))
    assert check(path, "ready", 30) is None
    assert check(path, "ready", 30, now=time.time() + 60) is not None  # stale
    path.write_text("{not json")
    reason = check(path, "live", 30)
    assert reason is not None and reason.startswith(f"unreadable health file {path}")
    assert [p.name for p in tmp_path.iterdir()] == ["h.json"]  # no temp file left behind


def test_the_probe_without_a_health_file_setting_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
    done = subprocess.run([sys.executable, "-m", "workers.health", "ready"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert "WARDEN_WORKER_HEALTH_FILE is not set" in done.stderr
    bad = subprocess.run([sys.executable, "-m", "workers.health", "alive"], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "usage" in bad.stderr
