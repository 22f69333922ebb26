"""Crashes and restarts: dead workers, a stopped worker, Redis and API restarts lose no job."""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from typing import Any

import httpx
import pytest
import wasmtime

from tests import wat_modules as W
from tests.service.cluster import Cluster, assert_problem, stdout_of, unix, worker_name
from workers.queue import JobQueue
from workers.scheduling import running_key
from workers.store import JobStore

EVENTS = "warden:events"


def _events(sub: Any, job_id: str, settle_s: float = 1.0) -> int:
    """How many terminal events were published for the job (read for ``settle_s``)."""
    count = 0
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        message = sub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message and message["data"] == job_id.encode():
            count += 1
    return count


def _subscribe(cluster: Cluster) -> Any:
    sub = cluster.client.pubsub()
    sub.subscribe(EVENTS)
    sub.get_message(timeout=1)  # the subscribe confirmation
    return sub


def _running_on(cluster: Cluster, job_id: str, attempt: int) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        record = cluster.get(job_id)
        if record["state"] == "running" and record["attempts"] == attempt:
            assert "worker" not in record  # host details are for operators only
            record["worker"] = cluster.worker_of(job_id)
            return record
        assert record["state"] in ("queued", "running"), record
        time.sleep(0.05)
    raise AssertionError(f"attempt {attempt} of {job_id} did not start")


def test_worker_killed_mid_job_the_job_runs_again_once(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    c.start_api()
    c.start_worker()
    c.start_worker()
    c.wait_ready(2)
    sub = _subscribe(c)
    job_id = c.submit({"wat": W.sleep(2.5), "limits": {"wall_time_s": 10}})
    first = _running_on(c, job_id, 1)
    victim = c.worker_proc(first["worker"])
    survivor = next(worker_name(p) for p in c.workers if p is not victim)
    time.sleep(0.3)
    victim.kill()
    victim.wait()

    record = c.wait_state(job_id, timeout_s=30)
    assert record["state"] == "finished", record
    assert record["result"]["status"] == "ok", record
    assert record["attempts"] == 2, record
    assert c.worker_of(job_id) == survivor
    assert record["error"] is None
    assert _events(sub, job_id) == 1  # recorded (and announced) exactly once
    assert c.client.zscore("warden:leases", job_id) is None
    # nothing of the killed run is left for RQ to call a failure (its rq id is the job id)
    assert c.client.exists(f"rq:job:{job_id}", f"rq:executions:{job_id}") == 0
    leftovers = [k for k in c.client.scan_iter("rq:wip:*") if c.client.zcard(k)]
    assert leftovers == [], leftovers
    assert [k for k in c.client.scan_iter("rq:execution:*")] == []


def test_worker_killed_on_every_attempt_the_job_fails_clearly(fresh_cluster: Cluster) -> None:
    c = fresh_cluster  # max_attempts: 2 (the default)
    c.start_api()
    for _ in range(3):
        c.start_worker()
    c.wait_ready(3)
    sub = _subscribe(c)
    job_id = c.submit({"wat": W.sleep(30), "limits": {"wall_time_s": 60}})
    killed = []
    for attempt in (1, 2):
        running = _running_on(c, job_id, attempt)
        victim = c.worker_proc(running["worker"])
        victim.kill()
        victim.wait()
        killed.append(running["worker"])
    assert len(set(killed)) == 2

    record = c.wait_state(job_id, timeout_s=20)
    assert record["state"] == "failed", record
    assert record["attempts"] == 2
    assert "died 2 time(s)" in record["error"], record
    assert record["result"] is None
    assert _events(sub, job_id) == 1
    # The last worker is still healthy and takes new jobs.
    r = c.http.post("/v1/jobs", params={"wait": 20}, json={"wat": W.hello("still up\n")})
    assert r.status_code == 200 and stdout_of(r.json()) == b"still up\n", r.text


def test_sigterm_to_a_busy_worker_finishes_its_job_and_loses_nothing(
    fresh_cluster: Cluster,
) -> None:
    c = fresh_cluster
    c.start_api()
    worker = c.start_worker()
    c.wait_ready(1)
    job_id = c.submit({"wat": W.sleep(3), "limits": {"wall_time_s": 10}})
    _running_on(c, job_id, 1)
    behind = c.submit({"wat": W.hello("behind\n")})  # queued while the worker is busy
    signalled_at = time.time()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(15) == 0

    record = c.get(job_id)
    assert record["state"] == "finished", record  # warm shutdown: the job was finished
    assert unix(record["finished_at"]) > signalled_at  # (the signal came mid-job)
    assert record["result"]["status"] == "ok" and record["attempts"] == 1
    assert c.worker_of(job_id) == worker_name(worker)
    assert c.get(behind)["state"] == "queued"  # not taken by the stopping worker, not lost

    c.start_worker()
    record = c.wait_state(behind, timeout_s=30)
    assert record["state"] == "finished" and stdout_of(record) == b"behind\n", record


def test_redis_restart_keeps_queued_jobs(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    c.start_api()  # no worker: the jobs stay queued
    ids = [c.submit({"wat": W.hello(f"survivor {n}\n")}) for n in range(3)]

    c.redis.kill()  # a crash: acknowledged writes are in the AOF already
    r = c.http.post("/v1/jobs", json={"wat": W.HELLO})
    assert_problem(r, 503, "store-unavailable")
    assert r.headers["retry-after"] == "1"
    assert_problem(c.http.get(f"/v1/jobs/{ids[0]}"), 503, "store-unavailable")
    assert c.http.get("/healthz").status_code == 200
    assert_problem(c.http.get("/readyz"), 503, "not-ready")

    c.restart_redis()
    assert [c.get(i)["state"] for i in ids] == ["queued"] * 3
    c.start_worker()
    for n, job_id in enumerate(ids):
        record = c.wait_state(job_id, timeout_s=30)
        assert record["state"] == "finished", record
        assert stdout_of(record) == f"survivor {n}\n".encode()
        assert record["attempts"] == 1

    # The API's waiter re-subscribed: a wait ends with the job, not with the wait.
    start = time.monotonic()
    r = c.http.post("/v1/jobs", params={"wait": 30}, json={"wat": W.hello("after\n")})
    assert r.status_code == 200 and r.json()["state"] == "finished", r.text
    assert time.monotonic() - start < 10


def test_a_job_whose_module_was_lost_fails_clearly(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    c.start_api()
    wat = W.hello("lost\n")
    job_id = c.submit({"wat": wat})
    sha = hashlib.sha256(bytes(wasmtime.wat2wasm(wat))).hexdigest()
    assert c.client.delete(f"warden:module:{sha}") == 1  # e.g. evicted under memory pressure
    c.start_worker()
    record = c.wait_state(job_id, timeout_s=30)
    assert record["state"] == "failed", record
    assert "module" in record["error"], record
    assert record["attempts"] == 1


def test_api_killed_and_restarted_accepted_jobs_complete(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    c.start_api()
    ids = [c.submit({"wat": W.hello(f"accepted {n}\n")}) for n in range(2)]
    assert c.api is not None
    c.api.send_signal(signal.SIGKILL)
    c.api.wait()
    c.api = None
    with pytest.raises(httpx.TransportError):
        c.http.get("/healthz")

    c.start_worker()
    c.start_api()
    for n, job_id in enumerate(ids):
        r = c.http.get(f"/v1/jobs/{job_id}", params={"wait": 30})
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "finished", r.text
        assert stdout_of(r.json()) == f"accepted {n}\n".encode()
    got = c.http.get("/v1/jobs", params={"ids": ",".join(ids)}).json()["jobs"]
    assert [g["id"] for g in got] == ids


def test_redis_client_sees_the_aof_on_disk(fresh_cluster: Cluster) -> None:
    """The embedded Redis persists with AOF (what the restart tests rely on)."""
    assert fresh_cluster.client.config_get("appendonly") == {"appendonly": "yes"}


def test_a_running_job_and_a_wait_in_progress_survive_a_redis_crash(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    c.start_api()
    c.start_worker()
    c.wait_ready(1)
    job_id = c.submit({"wat": W.sleep(3.5), "limits": {"wall_time_s": 10}})
    _running_on(c, job_id, 1)
    answers: list[Any] = []

    def wait() -> None:
        start = time.monotonic()
        r = c.http.get(f"/v1/jobs/{job_id}", params={"wait": 30})
        answers.append((r, time.monotonic() - start))

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(1.0)  # the wait is under way (a read during the outage is a fair 503)
    c.restart_redis(kill=True)
    waiter.join(40)
    (r, elapsed), = answers
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "finished", r.json()  # not woken early by the reconnect
    assert r.json()["result"]["status"] == "ok"
    assert elapsed < 10, elapsed  # woken by the job's end once re-subscribed

    # The worker rode out the restart and takes new jobs.
    assert c.workers[0].poll() is None
    r = c.http.post("/v1/jobs", params={"wait": 30}, json={"wat": W.hello("reconnected\n")})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "finished" and stdout_of(r.json()) == b"reconnected\n", r.text


def test_a_hung_worker_that_wakes_up_cannot_record_a_second_result(
    fresh_cluster: Cluster,
) -> None:
    """Lease fencing: a worker stalled past its lease loses the job to another worker; when
    it resumes, its late result is refused."""
    c = fresh_cluster
    c.start_api()
    c.start_worker()
    c.start_worker()
    c.wait_ready(2)
    sub = _subscribe(c)
    job_id = c.submit({"wat": W.sleep(1.5), "limits": {"wall_time_s": 10}})
    first = _running_on(c, job_id, 1)
    stalled = c.worker_proc(first["worker"])
    stalled.send_signal(signal.SIGSTOP)
    try:
        second = _running_on(c, job_id, 2)  # the lease ran out: re-run elsewhere
        assert second["worker"] != first["worker"]
    finally:
        stalled.send_signal(signal.SIGCONT)  # its guest's sleep is over: it tries to finish

    record = c.wait_state(job_id, timeout_s=20)
    assert record["state"] == "finished" and record["result"]["status"] == "ok", record
    assert record["attempts"] == 2
    assert c.worker_of(job_id) == second["worker"]
    assert _events(sub, job_id, settle_s=2.0) == 1
    assert f"job {job_id}: lease lost" in c.log_of(stalled)  # it tried, and was refused
    assert stalled.poll() is None  # and the stalled worker carries on


def test_cancel_of_a_job_whose_worker_is_gone(fresh_cluster: Cluster) -> None:
    """The cancel cannot reach the worker; the reaper ends the job as cancelled rather than
    running it again."""
    c = fresh_cluster
    c.start_api()
    c.start_worker()
    c.start_worker()
    c.wait_ready(2)
    job_id = c.submit({"wat": W.sleep(30), "limits": {"wall_time_s": 60}})
    running = _running_on(c, job_id, 1)
    gone = c.worker_proc(running["worker"])
    gone.send_signal(signal.SIGSTOP)  # alive but deaf: the cancel is not delivered
    r = c.http.delete(f"/v1/jobs/{job_id}", params={"wait": 0})
    assert r.status_code == 202 and r.json()["state"] == "running", r.text  # still stopping
    gone.kill()
    gone.wait()

    record = c.wait_state(job_id, timeout_s=15)
    assert record["state"] == "cancelled", record
    assert record["attempts"] == 1  # not run again
    assert record["result"]["status"] == "cancelled"  # like the other two cancel paths


def test_the_live_worker_count_drops_within_a_lease_when_the_last_worker_is_killed(
    fresh_cluster: Cluster,
) -> None:
    """The API stays ready throughout (its readiness is Redis's, not the workers')."""
    c = fresh_cluster
    c.start_api()
    proc = c.start_worker()
    c.wait_ready(1)
    assert c.http.get("/readyz").json()["workers"] == 1
    proc.kill()  # SIGKILL: no goodbye; RQ would keep it registered for minutes
    proc.wait()
    deadline = time.monotonic() + 10  # lease_s is 2 in these tests
    while (r := c.http.get("/readyz")).json()["workers"] != 0:
        assert r.status_code == 200, r.text
        assert time.monotonic() < deadline, "still counted 10 s after the only worker died"
        time.sleep(0.1)
    assert r.status_code == 200
    replacement = c.start_worker()
    c.wait_ready(1)
    replacement.terminate()  # a clean stop retires the heartbeat at once
    replacement.wait(timeout=30)
    r = c.http.get("/readyz")
    assert (r.status_code, r.json()["workers"]) == (200, 0)


def test_a_job_taken_by_a_worker_that_died_before_starting_it_still_runs(
    fresh_cluster: Cluster,
) -> None:
    """The window between the TAKE script and Warden's START: the job sits in RQ's
    intermediate list with its record still queued and a running slot held; a live
    worker's reaper puts it back within a lease."""
    c = fresh_cluster
    c.start_api()
    job_id = c.submit({"wat": W.hello("rescued\n")})
    queue_key = "rq:queue:warden.default"
    queue = JobQueue(c.client, JobStore(c.client, 3600, 2), "warden", 100)
    taken = queue.take(lease_s=2)  # what the dead one did
    assert taken == (job_id, "warden.default", "default")
    assert c.client.zcard(running_key("default")) == 1
    c.start_worker()
    record = c.wait_state(job_id, timeout_s=30)
    assert record["state"] == "finished", record
    assert stdout_of(record) == b"rescued\n"
    assert record["attempts"] == 1
    assert c.client.llen(f"{queue_key}:intermediate") == 0


def test_a_dead_workers_job_is_put_back_with_no_worker_alive_and_runs_first(
        fresh_cluster: Cluster) -> None:
    """Recovery does not wait for a worker (the API reaps too), and the job that already
    waited its turn goes to the front of its queue, not behind the backlog."""
    c = fresh_cluster  # lease 2 s
    c.start_api()
    worker = c.start_worker()
    c.wait_ready(1)
    job_id = c.submit({"wat": W.sleep(30), "limits": {"wall_time_s": 60}})
    _running_on(c, job_id, 1)
    behind = [c.submit({"wat": W.hello(f"behind {n}\n")}) for n in range(4)]  # one lane: wait
    worker.kill()
    worker.wait()
    killed = time.monotonic()
    c.workers.clear()
    record = c.wait_state(job_id, ("queued",), timeout_s=30)  # by the API's reaper
    assert time.monotonic() - killed < 3 * 2 + 2  # within a lease and a half, and a pass
    assert record["attempts"] == 1
    rq_id = c.client.hget(f"warden:job:{job_id}", "rq_id")
    tenant = c.client.hget(f"warden:job:{job_id}", "tenant")
    assert rq_id is not None and tenant is not None
    queue = f"rq:queue:warden.{tenant.decode()}"
    assert c.client.llen(queue) == 5
    assert c.client.lindex(queue, 0) == rq_id  # at the front: next to run

    c.start_worker()
    first = _running_on(c, job_id, 2)
    assert first["started_at"] is not None
    for other in behind:
        assert c.get(other)["state"] == "queued"  # nothing overtook it
    r = c.http.delete(f"/v1/jobs/{job_id}")  # it sleeps 30 s: stop it, the rest follow
    assert r.status_code in (200, 202), r.text
    for other in behind:
        assert c.wait_state(other, timeout_s=30)["result"]["status"] == "ok"
