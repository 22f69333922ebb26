"""Service guarantees that are easy to get almost right: waits are woken by Redis (not
polled) and bounded; a batch is queued whole or not at all; a body over the cap is refused
before it is read; finished records expire; a missed cancel message still cancels; a
re-queued job is on the queue the moment its record says queued."""

from __future__ import annotations

import socket
import time
from typing import Any

import redis

from sandboxes.schema import LIMIT_BOUNDS, Grants, JobSpec, Limits
from tests import wat_modules as W
from tests.service.cluster import Cluster, assert_problem
from workers.queue import JobQueue
from workers.store import DEFAULT_TENANT, LEASES, JobStore, job_key

MAX_FUEL = int(LIMIT_BOUNDS["fuel"].maximum)


def _reads(client: redis.Redis) -> int:
    stats: dict[str, Any] = client.info("commandstats")  # type: ignore[assignment]
    return int(stats.get("cmdstat_hgetall", {}).get("calls", 0))


def test_a_wait_is_woken_by_redis_not_by_polling(cluster: Cluster) -> None:
    job_id = cluster.submit({"wat": W.sleep(2.0), "limits": {"wall_time_s": 10}})
    before = _reads(cluster.client)
    started = time.monotonic()
    r = cluster.http.get(f"/v1/jobs/{job_id}", params={"wait": 20})
    elapsed = time.monotonic() - started
    assert r.status_code == 200 and r.json()["state"] == "finished", r.text
    assert elapsed < 6
    # One read before waiting and one after the event (others' jobs may add a few): a
    # poller would have read the record every few milliseconds for ~2 s.
    assert _reads(cluster.client) - before <= 6


def test_a_wait_is_capped_by_max_wait(fresh_cluster: Cluster) -> None:
    c = fresh_cluster
    c.env["WARDEN_MAX_WAIT_S"] = "1"
    c.start_api()
    c.start_worker()
    c.wait_ready(1)
    job_id = c.submit({"wat": W.sleep(30), "limits": {"wall_time_s": 60}})
    started = time.monotonic()
    r = c.http.get(f"/v1/jobs/{job_id}", params={"wait": "true"})
    assert r.status_code == 202 and r.json()["state"] in ("queued", "running"), r.text
    assert 0.9 <= time.monotonic() - started < 4
    c.http.delete(f"/v1/jobs/{job_id}", params={"wait": 0})


def test_a_batch_that_does_not_fit_queues_nothing(fresh_cluster: Cluster) -> None:
    c = fresh_cluster  # max_queue_length=5, and no worker: jobs stay queued
    c.start_api()
    first = c.http.post("/v1/jobs/batch", json={"jobs": [{"wat": W.HELLO}] * 3})
    assert first.status_code == 202, first.text
    keys_before = set(c.client.keys("warden:job:*"))
    r = c.http.post("/v1/jobs/batch", json={"jobs": [{"wat": W.HELLO}] * 3})
    assert_problem(r, 503, "queue-full")
    assert c.client.llen("rq:queue:warden.default") == 3
    assert set(c.client.keys("warden:job:*")) == keys_before  # no orphan record either
    fits = c.http.post("/v1/jobs/batch", json={"jobs": [{"wat": W.HELLO}] * 2})
    assert fits.status_code == 202 and len(fits.json()["ids"]) == 2
    assert c.client.llen("rq:queue:warden.default") == 5


def test_a_body_over_the_cap_is_refused_before_it_is_sent(cluster: Cluster) -> None:
    """Only the headers and a few bytes are sent: a server that read the whole body first
    would wait for the other 100 MB and never answer."""
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000\r\n\r\n{\"wat\": \""
        )
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"application/problem+json" in answer


def test_finished_records_expire_and_live_ones_are_kept(cluster: Cluster) -> None:
    done = cluster.submit({"wat": W.HELLO})
    cluster.wait_state(done)
    ttl = cluster.client.ttl(job_key(done))
    assert 0 < ttl <= 86_400, ttl  # WARDEN_JOB_TTL_S default
    running = cluster.submit({"wat": W.sleep(30), "limits": {"wall_time_s": 60}})
    cluster.wait_state(running, ("running",))
    assert cluster.client.ttl(job_key(running)) == -1  # never expires while it runs
    r = cluster.http.delete(f"/v1/jobs/{running}")
    assert r.json()["state"] == "cancelled"
    assert 0 < cluster.client.ttl(job_key(running)) <= 86_400


def test_a_cancel_whose_message_was_missed_still_stops_the_job(cluster: Cluster) -> None:
    """The flag is set but nothing is published (as if the worker was reconnecting to
    pub/sub): the lease renewal (every lease/3) sees the flag and stops the guest."""
    job_id = cluster.submit({"wat": W.LOOP, "limits": {"fuel": MAX_FUEL, "wall_time_s": 60}})
    cluster.wait_state(job_id, ("running",))
    cluster.client.hset(job_key(job_id), "cancel_requested", "1")
    started = time.monotonic()
    record = cluster.wait_state(job_id, timeout_s=10)
    assert record["state"] == "cancelled", record
    assert time.monotonic() - started < 2 / 3 + 2  # lease_s=2 in these tests, plus a tick


def test_reaping_requeues_in_the_same_step(cluster: Cluster) -> None:
    """The reaper's script flips the record to queued and puts it on RQ's queue together:
    there is no moment when the record is queued and the queue does not hold it."""
    client = cluster.client
    store = JobStore(client, 3600, 2)
    queue = JobQueue(client, store, "warden-reap-test", 100)
    job_id = "reaptest" + str(time.monotonic_ns())
    store.create(job_id, JobSpec(module_sha256="0" * 64, limits=Limits(), grants=Grants()))
    client.hset(job_key(job_id), mapping={"state": "running", "lease": "t", "attempts": 1})
    client.zadd(LEASES, {job_id: time.time() - 1})
    try:
        outcome = store.reap(job_id, max_attempts=2, requeue=queue.requeue_commands(job_id))
        assert outcome == "requeue"
        assert client.hget(job_key(job_id), "state") == b"queued"
        rq_id = client.hget(job_key(job_id), "rq_id")
        assert rq_id is not None and rq_id.decode().startswith(job_id + "-")
        assert client.lrange(queue.tenant_rq(DEFAULT_TENANT).key, 0, -1) == [rq_id]
        # A lease that is still alive changes nothing and queues nothing.
        client.hset(job_key(job_id), mapping={"state": "running", "lease": "u"})
        client.zadd(LEASES, {job_id: time.time() + 60})
        assert store.reap(job_id, 2, queue.requeue_commands(job_id)) == "alive"
        assert client.llen(queue.tenant_rq(DEFAULT_TENANT).key) == 1
    finally:
        client.zrem(LEASES, job_id)
        client.delete(job_key(job_id), queue.tenant_rq(DEFAULT_TENANT).key)
