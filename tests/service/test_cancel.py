"""DELETE /v1/jobs/{id}: queued jobs never run, running ones stop within a tick or two."""

from __future__ import annotations

import time
from datetime import datetime

from tests import wat_modules as W
from tests.service.cluster import Cluster, assert_problem, stdout_of

MAX_FUEL = 10**12


def test_cancel_a_queued_job_it_never_runs(fresh_cluster: Cluster) -> None:
    fresh_cluster.start_api()  # no worker yet: the job stays queued
    job_id = fresh_cluster.submit({"wat": W.hello("must not run\n")})
    r = fresh_cluster.http.delete(f"/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["state"] == "cancelled", record
    assert record["result"]["status"] == "cancelled"
    assert record["finished_at"] is not None

    fresh_cluster.start_worker()
    # A job queued after the cancelled one runs, so the worker has dequeued the cancelled one.
    r = fresh_cluster.http.post("/v1/jobs", params={"wait": 30}, json={"wat": W.hello("later\n")})
    assert r.status_code == 200 and r.json()["state"] == "finished", r.text
    record = fresh_cluster.get(job_id)
    assert record["state"] == "cancelled"
    assert record["attempts"] == 0 and record["started_at"] is None, record
    assert "worker" not in record and fresh_cluster.worker_of(job_id) is None
    assert record["result"]["stdout"] == ""


def test_cancel_a_running_infinite_loop(cluster: Cluster) -> None:
    job_id = cluster.submit({"wat": W.LOOP, "limits": {"fuel": MAX_FUEL, "wall_time_s": 60}})
    cluster.wait_state(job_id, ("running",), timeout_s=15)
    time.sleep(0.2)  # well inside the guest's loop
    start = time.monotonic()
    r = cluster.http.delete(f"/v1/jobs/{job_id}")
    elapsed = time.monotonic() - start
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["state"] == "cancelled", record  # DELETE waits for the worker to stop it
    assert record["result"]["status"] == "cancelled", record
    assert record["attempts"] == 1 and cluster.worker_of(job_id) is not None
    assert elapsed < 2.0, elapsed
    started = datetime.fromisoformat(record["started_at"])
    assert (datetime.fromisoformat(record["finished_at"]) - started).total_seconds() < 10


def test_cancel_a_sleeping_job(cluster: Cluster) -> None:
    job_id = cluster.submit({"wat": W.sleep(60), "limits": {"wall_time_s": 90}})
    cluster.wait_state(job_id, ("running",), timeout_s=15)
    start = time.monotonic()
    r = cluster.http.delete(f"/v1/jobs/{job_id}")
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    assert time.monotonic() - start < 2.0


def test_cancel_without_waiting_then_the_worker_is_free_again(cluster: Cluster) -> None:
    job_ids = [cluster.submit({"wat": W.LOOP, "limits": {"fuel": MAX_FUEL, "wall_time_s": 60}})
               for _ in range(2)]  # both workers busy
    for job_id in job_ids:
        cluster.wait_state(job_id, ("running",), timeout_s=15)
    for job_id in job_ids:
        r = cluster.http.delete(f"/v1/jobs/{job_id}", params={"wait": 0})
        # 202 while its worker is still stopping it, 200 once it is cancelled
        assert (r.status_code, r.json()["state"]) in ((202, "running"), (200, "cancelled")), r.text
    for job_id in job_ids:
        assert cluster.wait_state(job_id, timeout_s=3)["state"] == "cancelled"
    r = cluster.http.post("/v1/jobs", params={"wait": 10}, json={"wat": W.hello("next\n")})
    assert r.status_code == 200 and stdout_of(r.json()) == b"next\n", r.text


def test_cancel_a_finished_job_is_a_conflict_and_changes_nothing(cluster: Cluster) -> None:
    r = cluster.http.post("/v1/jobs", params={"wait": 30}, json={"wat": W.hello("done\n")})
    assert r.status_code == 200 and r.json()["state"] == "finished", r.text
    done = r.json()
    r = cluster.http.delete(f"/v1/jobs/{done['id']}")
    problem = assert_problem(r, 409, "job-finished")
    assert "finished" in problem["detail"]
    assert cluster.get(done["id"]) == done
    assert cluster.client.hget(f"warden:job:{done['id']}", "cancel_requested") is None


def test_cancel_twice(cluster: Cluster) -> None:
    job_id = cluster.submit({"wat": W.LOOP, "limits": {"fuel": MAX_FUEL, "wall_time_s": 60}})
    cluster.wait_state(job_id, ("running",), timeout_s=15)
    first = cluster.http.delete(f"/v1/jobs/{job_id}")
    second = cluster.http.delete(f"/v1/jobs/{job_id}")
    assert first.status_code == second.status_code == 200
    assert first.json()["state"] == second.json()["state"] == "cancelled"
    assert second.json()["finished_at"] == first.json()["finished_at"]


def test_cancelled_queued_jobs_free_their_queue_slots(fresh_cluster: Cluster) -> None:
    fresh_cluster.start_api()  # no worker (max_queue_length=5)
    ids = [fresh_cluster.submit({"wat": W.HELLO}) for _ in range(5)]
    assert fresh_cluster.http.post("/v1/jobs", json={"wat": W.HELLO}).status_code == 503
    for job_id in ids:
        r = fresh_cluster.http.delete(f"/v1/jobs/{job_id}")
        assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    r = fresh_cluster.http.post("/v1/jobs", json={"wat": W.HELLO})
    assert r.status_code == 202, r.text  # nothing is queued any more
    assert not any(fresh_cluster.client.exists(f"rq:job:{job_id}") for job_id in ids)
    fresh_cluster.start_worker()
    assert fresh_cluster.wait_state(r.json()["id"])["state"] == "finished"
    assert all(fresh_cluster.get(job_id)["attempts"] == 0 for job_id in ids)
