"""Fair scheduling across tenants, and the running and queued caps (issue 12)."""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import wat_modules as W
from tests.service.cluster import Cluster, assert_problem, stdout_of
from workers.scheduling import READY, running_key
from workers.store import job_key

BATCH = 100


@pytest.fixture
def sched(tmp_path: Path) -> Iterator[Cluster]:
    """API only (tests start workers when their queues are set up); one 2-lane worker."""
    c = Cluster(tmp_path, lease_s=2, worker_lanes=2, max_queue_length=5000, max_attempts=1)
    try:
        c.start_api()
        yield c
    finally:
        c.close()


def _flood(client: httpx.Client, n: int, wat: str) -> list[str]:
    ids: list[str] = []
    while len(ids) < n:
        r = client.post("/v1/jobs/batch", json={"jobs": [{"wat": wat}] * min(BATCH, n - len(ids))})
        assert r.status_code == 202, r.text
        ids += r.json()["ids"]
    return ids


def _times(c: Cluster, ids: list[str], field: str) -> dict[str, float]:
    pipe = c.client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(job_key(job_id), field)
    return {job_id: float(v) for job_id, v in zip(ids, pipe.execute(), strict=True) if v}


def _wait_all(c: Cluster, ids: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pipe = c.client.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(job_key(job_id), "state")
        states = pipe.execute()
        if all(s in (b"finished", b"failed", b"cancelled") for s in states):
            return
        time.sleep(0.2)
    raise AssertionError(f"{len(ids)} jobs not all ended after {timeout_s} s")


def test_a_flooding_tenant_does_not_starve_another(sched: Cluster) -> None:
    """A queues 1,000 jobs; B's one job, submitted while A's queue is long, starts within
    the next few jobs the worker takes; A still gets every result."""
    c = sched
    _, a = c.new_tenant("a", max_queued=2000, max_running=100, submission_burst=1000)
    _, b = c.new_tenant("b")
    a_ids = _flood(a, 1000, W.sleep(0.004))
    c.start_worker()
    deadline = time.monotonic() + 30
    while sum(1 for _ in _times(c, a_ids[:200], "started_at")) < 50:  # A is running
        assert time.monotonic() < deadline, "the worker never started A's jobs"
        time.sleep(0.05)
    r = b.post("/v1/jobs", json={"wat": W.hello("b\n")}, params={"wait": 60})
    assert r.status_code == 200, r.text
    b_record = r.json()
    assert stdout_of(b_record) == b"b\n"
    b_job = b_record["id"]
    b_created, b_started = (float(c.client.hget(job_key(b_job), f) or 0)
                            for f in ("created_at", "started_at"))
    a_started = _times(c, a_ids, "started_at")
    assert len(a_started) < 1000, "A's queue drained before B submitted: nothing shown"
    overtaking = [t for t in a_started.values() if b_created < t < b_started]
    assert len(overtaking) <= 2, f"{len(overtaking)} of A's jobs started before B's"
    _wait_all(c, a_ids, 120)
    r = a.get("/v1/jobs", params={"ids": ",".join(a_ids[:100])})
    assert r.status_code == 200, r.text
    assert {rec["state"] for rec in r.json()["jobs"]} == {"finished"}
    assert len(_times(c, a_ids, "finished_at")) == 1000  # every one of A's jobs ran once
    assert c.client.zcard(READY) == 0  # no tenant left in the ring


def test_weights_share_the_workers(sched: Cluster) -> None:
    """With both queues full, a tenant of weight 3 gets three jobs for each of weight 1."""
    c = sched
    _, heavy = c.new_tenant("h", weight=3)
    _, light = c.new_tenant("l", weight=1)
    heavy_ids = _flood(heavy, 60, W.HELLO)
    light_ids = _flood(light, 60, W.HELLO)
    c.start_worker()
    _wait_all(c, heavy_ids + light_ids, 120)
    started = {**{j: ("h", t) for j, t in _times(c, heavy_ids, "started_at").items()},
               **{j: ("l", t) for j, t in _times(c, light_ids, "started_at").items()}}
    order = [who for who, _ in sorted(started.values(), key=lambda v: v[1])]
    first = order[:40]  # both queues still hold work through these
    assert 27 <= first.count("h") <= 33, first


def test_max_running_caps_a_tenant_without_idling_the_others(sched: Cluster) -> None:
    c = sched
    tenant, capped = c.new_tenant("c", max_running=1)
    _, other = c.new_tenant("o")
    capped_ids = _flood(capped, 4, W.sleep(0.4))
    other_ids = _flood(other, 1, W.hello())
    c.start_worker()
    _wait_all(c, capped_ids + other_ids, 60)
    starts, ends = _times(c, capped_ids, "started_at"), _times(c, capped_ids, "finished_at")
    spans = sorted((starts[j], ends[j]) for j in capped_ids)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end - 0.01, f"two of the capped tenant's jobs overlapped: {spans}"
    # The worker's second lane ran the other tenant's job while the first job ran.
    other_start = _times(c, other_ids, "started_at")[other_ids[0]]
    assert other_start < spans[0][1], (other_start, spans)
    assert c.client.zcard(running_key(tenant)) == 0


def test_max_queued_is_a_429_that_names_the_quota(sched: Cluster) -> None:
    c = sched  # no worker: jobs stay queued
    _, client = c.new_tenant("q", max_queued=3)
    _flood(client, 2, W.HELLO)
    problem = assert_problem(
        client.post("/v1/jobs/batch", json={"jobs": [{"wat": W.HELLO}] * 2}), 429,
        "quota/max_queued")
    assert problem["quota"] == "max_queued" and problem["limit"] == 3 and problem["used"] == 2
    assert problem["violated-policies"] == ["max_queued"]
    assert client.post("/v1/jobs", json={"wat": W.HELLO}).status_code == 202  # the 3rd fits
    r = client.post("/v1/jobs", json={"wat": W.HELLO})
    assert_problem(r, 429, "quota/max_queued")
    assert int(r.headers["Retry-After"]) >= 1
    listed = client.get("/v1/jobs").json()["jobs"]
    assert len(listed) == 3  # the refused batch queued nothing


def test_a_killed_worker_does_not_keep_its_running_slot(sched: Cluster) -> None:
    """The slot follows the lease: a SIGKILLed worker stops renewing it, the slot expires,
    and the tenant's next job runs (max_running=1, so a leaked slot would block it)."""
    c = sched
    tenant, client = c.new_tenant("k", max_running=1)
    stuck = c.start_worker()
    r = client.post("/v1/jobs", json={"wat": W.LOOP, "limits": {"wall_time_s": 60}})
    first = r.json()["id"]
    deadline = time.monotonic() + 30
    while c.client.hget(job_key(first), "state") != b"running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert c.client.zcard(running_key(tenant)) == 1
    stuck.send_signal(signal.SIGKILL)
    stuck.wait()
    second = client.post("/v1/jobs", json={"wat": W.hello("next\n")}).json()["id"]
    c.start_worker()
    _wait_all(c, [first, second], 30)
    record = client.get(f"/v1/jobs/{second}").json()
    assert record["state"] == "finished" and stdout_of(record) == b"next\n", record
    assert client.get(f"/v1/jobs/{first}").json()["state"] == "failed"  # max_attempts=1
    assert c.client.zcard(running_key(tenant)) == 0
