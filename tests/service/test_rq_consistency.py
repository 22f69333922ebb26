"""Warden's lean worker keeps RQ's own data consistent, so RQ's tooling keeps working."""

from __future__ import annotations

import concurrent.futures
import time

from rq import Queue, Worker
from rq.registry import FailedJobRegistry, StartedJobRegistry

from tests import wat_modules as W
from tests.service.cluster import Cluster, stdout_of

QUEUE = "warden.default"  # the default tenant's RQ queue (one per tenant)


def test_finished_jobs_leave_no_rq_keys_and_count_in_rq_stats(cluster: Cluster) -> None:
    r = cluster.client
    before = {w.name: w.successful_job_count for w in Worker.all(connection=r)}

    def run(n: int) -> bytes:
        answer = cluster.http.post("/v1/jobs", params={"wait": 30},
                                   json={"wat": W.hello(f"rq {n}\n")})
        assert answer.status_code == 200, answer.text
        return stdout_of(answer.json())

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outputs = list(pool.map(run, range(40)))
    assert outputs == [f"rq {n}\n".encode() for n in range(40)]

    # (The FINISH event goes out inside the same MULTI as RQ's clean-up, so an answered
    # wait means the clean-up is done; the loop only absorbs a worker that is still busy
    # with another test's job.)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and StartedJobRegistry(QUEUE, connection=r).count:
        time.sleep(0.05)
    queue = Queue(QUEUE, connection=r)
    assert queue.count == 0
    assert StartedJobRegistry(QUEUE, connection=r).count == 0
    assert FailedJobRegistry(QUEUE, connection=r).count == 0
    assert r.llen(f"{queue.key}:intermediate") == 0
    assert r.keys("rq:job:*") == []  # result_ttl=0: RQ's job hashes are deleted
    assert r.keys("rq:execution:*") == [] and r.keys("rq:executions:*") == []

    workers = Worker.all(connection=r)
    done = sum(w.successful_job_count for w in workers) - sum(before.values())
    assert done >= 40  # other tests in the module may have run jobs meanwhile
    assert {w.get_state() for w in workers} <= {"idle", "busy"}


def test_a_job_is_an_ordinary_rq_job_while_queued(fresh_cluster: Cluster) -> None:
    """RQ job id = Warden job id; the job runs ``workers.tasks.execute(id)``."""
    c = fresh_cluster
    c.start_api()  # no worker: the job stays queued
    job_id = c.submit({"wat": W.HELLO})
    queue = Queue(QUEUE, connection=c.client)
    assert queue.job_ids == [job_id]
    job = queue.fetch_job(job_id)
    assert job is not None
    assert job.func_name == "workers.tasks.execute" and job.args == (job_id,)
    assert job.get_status() == "queued"

    c.start_worker()
    record = c.wait_state(job_id, timeout_s=30)
    assert record["state"] == "finished", record
    assert queue.fetch_job(job_id) is None
