"""`warden up` stopped and started with jobs queued and running: every job ends exactly once.

Three `up`s on one data dir (its embedded Redis's AOF fsyncs every write). The first is
stopped with one Ctrl-C while two jobs run and the rest wait: the running ones finish, the
queued ones stay queued. The second is stopped with two Ctrl-Cs while jobs run: those die
with their worker and are re-run. The third runs what is left. Exactly once is read from
the tenant's usage, which the script that records a job's end counts in the same step: a
job recorded twice would be counted twice.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from tests import wat_modules as W
from tests.service.test_up import Up, wait_for

JOBS = 16
ENV: dict[str, str | None] = {"WARDEN_REDIS_APPENDFSYNC": "always", "WARDEN_WORKERS": "2"}


def _records(up: Up, ids: list[str]) -> list[dict[str, Any]]:
    r = up.http.get("/v1/jobs", params={"ids": ",".join(ids)})  # one read for all of them
    assert r.status_code == 200, r.text
    jobs: list[dict[str, Any]] = r.json()["jobs"]
    assert [job["id"] for job in jobs] == ids, jobs
    return jobs


def _states(up: Up, ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in _records(up, ids):
        counts[record["state"]] = counts.get(record["state"], 0) + 1
    return counts


def _running_and_queued(up: Up, ids: list[str]) -> bool:
    states = _states(up, ids)
    return states.get("running", 0) >= 1 and states.get("queued", 0) >= 1


def test_up_stopped_and_started_with_jobs_queued_and_running_ends_each_job_once(
        tmp_path: Path) -> None:
    first = Up(tmp_path, env=ENV)
    try:
        first.wait_ready(workers=2)
        r = first.http.post("/v1/jobs/batch",
                            json={"jobs": [{"wat": W.sleep(0.6), "limits": {"wall_time_s": 10}}
                                           for _ in range(JOBS)]})
        assert r.status_code == 202, r.text
        ids: list[str] = r.json()["ids"]
        wait_for("jobs running and queued", lambda: _running_and_queued(first, ids), first)
        os.killpg(first.proc.pid, signal.SIGINT)  # warm stop: running jobs finish
        assert first.proc.wait(timeout=60) == 0, first.output()[-2000:]
        assert "Traceback" not in first.output(), first.output()
    finally:
        first.close()

    second = Up(tmp_path, env=ENV, log_name="up-second.log")
    try:
        second.wait_ready(workers=2)
        # The warm stop let its running jobs finish (not re-run: one attempt) and kept the
        # queued ones (this `up`'s workers may have started some by now).
        after_warm_stop = _records(second, ids)
        assert all(r["attempts"] == 1 for r in after_warm_stop if r["state"] == "finished")
        assert sum(r["state"] != "finished" for r in after_warm_stop) >= 2, after_warm_stop
        wait_for("jobs running and queued again", lambda: _running_and_queued(second, ids),
                 second)
        os.killpg(second.proc.pid, signal.SIGINT)
        wait_for("stopping", lambda: "stopping" in second.output(), second, 5)
        os.killpg(second.proc.pid, signal.SIGINT)  # cold stop: running jobs die
        assert second.proc.wait(timeout=30) == 0, second.output()[-2000:]
    finally:
        second.close()

    third = Up(tmp_path, env=ENV, log_name="up-third.log")
    try:
        third.wait_ready(workers=2)
        deadline = time.monotonic() + 90
        while _states(third, ids).get("finished", 0) < JOBS:
            assert time.monotonic() < deadline, (_states(third, ids), third.output()[-2000:])
            time.sleep(0.25)
        records = _records(third, ids)
        assert all(r["result"]["status"] == "ok" for r in records), records
        assert all(1 <= r["attempts"] <= 2 for r in records), records
        usage = third.http.get("/v1/usage").json()["total"]
        assert usage["jobs"] == JOBS, usage  # each job's end recorded (and counted) once
        assert usage["by_status"] == {"ok": JOBS}, usage
    finally:
        third.close()
