"""Chaos harness: jobs submitted while workers are SIGKILLed at random, against a real API,
real workers and a real Redis (tests/service/cluster.py). Used by the suite's short run and
by ``bench/bench_chaos.py``'s long one; it measures, the callers assert.

A killed worker is replaced at once, as ``warden up`` or Kubernetes would (the supervisor's
restart backoff is at most 2 s). Every accepted job must end with exactly one result: the
terminal events published on ``warden:events`` are counted per job (two would be a
duplicate), and a job that never ends is lost. The re-run delay of a job whose worker was
killed is from the kill to the start of its next attempt (its record's ``started_at``).
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis

from tests import wat_modules as W
from tests.service.cluster import Cluster, unix, worker_name

EVENTS = "warden:events"
LEASES = "warden:leases"


@dataclass
class ChaosReport:
    submitted: int = 0
    accepted: int = 0
    kills: int = 0
    redis_kills: int = 0
    api_kills: int = 0
    outage_answers: Counter[int] = field(default_factory=Counter)  # status codes, Redis down
    lost: int = 0
    duplicates: int = 0  # jobs with two terminal events
    extra_jobs: int = 0  # job records beyond those accepted (a retry that queued again)
    states: Counter[str] = field(default_factory=Counter)
    attempts: Counter[int] = field(default_factory=Counter)
    rerun_delays_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0

    def percentile(self, p: float) -> float:
        delays = sorted(self.rerun_delays_s)
        if not delays:
            return 0.0
        return delays[min(len(delays) - 1, int(p / 100 * len(delays)))]

    def summary(self) -> str:
        return (f"{self.accepted} jobs accepted of {self.submitted}, {self.kills} worker "
                f"SIGKILLs, {self.redis_kills} Redis SIGKILLs (answers while down: "
                f"{dict(self.outage_answers)}), {self.api_kills} API SIGKILLs, lost "
                f"{self.lost}, duplicates {self.duplicates}, extra jobs {self.extra_jobs}, states "
                f"{dict(self.states)}, attempts {dict(sorted(self.attempts.items()))}, re-run "
                f"delay p50 {self.percentile(50):.1f} s p99 {self.percentile(99):.1f} s "
                f"(n={len(self.rerun_delays_s)}), {self.elapsed_s:.0f} s")


class _Events(threading.Thread):
    """Counts terminal events per job id from the moment it starts."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(daemon=True, name="chaos-events")
        self.counts: Counter[str] = Counter()
        self._cluster = cluster
        self._pubsub = self._subscribe()
        self._halt = threading.Event()

    def _subscribe(self) -> Any:
        pubsub = self._cluster.client.pubsub()
        pubsub.subscribe(EVENTS)
        pubsub.get_message(timeout=2)  # the subscription's confirmation
        return pubsub

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                message = self._pubsub.get_message(ignore_subscribe_messages=True,
                                                   timeout=0.2)
            except redis.RedisError:  # Redis killed: subscribe again once it is back
                time.sleep(0.2)
                with contextlib.suppress(redis.RedisError):
                    self._pubsub = self._subscribe()
                continue
            if message and isinstance(message["data"], bytes):
                self.counts[message["data"].decode()] += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=5)
        self._pubsub.close()


def run_chaos(cluster: Cluster, jobs: int, workers: int = 2, kill_every_s: tuple[float,
              float] = (2.0, 5.0), submit_over_s: float = 30.0, seed: int = 7,
              finish_within_s: float = 300.0, redis_every: int = 0,
              api_every: int = 0) -> ChaosReport:
    """``redis_every``/``api_every``: every n-th kill (0: never) is of Redis (SIGKILL, the
    API probed while it is down, then restarted on its AOF) or of the API (SIGKILL,
    restarted), instead of a worker."""
    rng = random.Random(seed)
    report = ChaosReport()
    events = _Events(cluster)
    events.start()
    procs = [cluster.start_worker() for _ in range(workers)]
    cluster.wait_ready(workers)
    ids: list[str] = []
    kills: dict[str, float] = {}  # job id -> time of the last kill of its worker
    started = time.monotonic()
    submitting = threading.Thread(target=_submit, args=(cluster, jobs, submit_over_s, rng,
                                                        ids, report), daemon=True)
    submitting.start()
    deadline = started + finish_within_s
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(*kill_every_s))
        if not submitting.is_alive() and _all_ended(cluster, ids):
            break
        turn = report.kills + report.redis_kills + report.api_kills + 1
        if redis_every and turn % redis_every == 0:
            _kill_redis(cluster, report)
            continue
        if api_every and turn % api_every == 0:
            cluster.kill_api()
            report.api_kills += 1
            cluster.start_api()
            continue
        victim = procs.pop(rng.randrange(len(procs)))
        name = worker_name(victim)
        running = _running_on(cluster, name)
        victim.kill()
        victim.wait()
        now = time.time()
        for job_id in running:
            kills[job_id] = now
        report.kills += 1
        procs.append(cluster.start_worker())
    submitting.join(timeout=60)
    while time.monotonic() < deadline and not _all_ended(cluster, ids):
        time.sleep(0.5)
    report.elapsed_s = time.monotonic() - started
    time.sleep(1.0)  # the last events in flight
    events.stop()
    report.extra_jobs = sum(1 for _ in cluster.client.scan_iter("warden:job:*")) - len(ids)
    for job_id in ids:
        record = cluster.get(job_id)
        report.states[record["state"]] += 1
        report.attempts[record["attempts"]] += 1
        if record["state"] not in ("finished", "failed", "cancelled"):
            report.lost += 1
        if events.counts[job_id] > 1:
            report.duplicates += 1
        killed_at = kills.get(job_id)
        if killed_at is not None and record.get("started_at"):
            delay = unix(record["started_at"]) - killed_at
            if delay >= 0:  # started again after its last kill
                report.rerun_delays_s.append(delay)
    return report


def _kill_redis(cluster: Cluster, report: ChaosReport) -> None:
    """SIGKILL Redis; while it is down the API must answer 503 + Retry-After, never a 500
    or a hang; then start it again on its data."""
    cluster.redis.kill()
    report.redis_kills += 1
    for _ in range(3):
        try:
            r = cluster.http.post("/v1/jobs", json={"wat": W.HELLO}, timeout=15)
            code = r.status_code if r.status_code != 503 or "Retry-After" in r.headers else -503
        except httpx.TimeoutException:
            code = -1  # a hang
        report.outage_answers[code] += 1
        time.sleep(0.3)
    cluster.start_redis_again()


def _submit(cluster: Cluster, jobs: int, over_s: float, rng: random.Random, ids: list[str],
            report: ChaosReport) -> None:
    gap = over_s / max(jobs, 1)
    for n in range(jobs):
        body: dict[str, Any] = {"wat": W.sleep(rng.uniform(0.1, 0.8)),
                                "limits": {"wall_time_s": 10}}
        report.submitted += 1
        for _ in range(100):  # a 503 or a cut connection (Redis or the API down) is
            try:               # retried with the same key: it can never run twice
                r = cluster.http.post("/v1/jobs", json=body,
                                      headers={"Idempotency-Key": f"chaos-{n}"})
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if r.status_code == 202:
                ids.append(r.json()["id"])
                report.accepted += 1
                break
            time.sleep(0.2)
        time.sleep(gap)


def _running_on(cluster: Cluster, worker: str) -> list[str]:
    client = cluster.client
    running = [m.decode() for m in client.zrange(LEASES, 0, -1)]
    pipe = client.pipeline(transaction=False)
    for job_id in running:
        pipe.hget(f"warden:job:{job_id}", "worker")
    return [job_id for job_id, owner in zip(running, pipe.execute(), strict=True)
            if owner is not None and owner.decode() == worker]


def _all_ended(cluster: Cluster, ids: list[str]) -> bool:
    client = cluster.client
    pipe = client.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(f"warden:job:{job_id}", "state")
    return all(s in (b"finished", b"failed", b"cancelled") for s in pipe.execute())


def half_written(cluster: Cluster) -> list[str]:
    """Jobs Redis holds half of: a queued record whose RQ id is on no queue (nor taken by a
    lane, nor in RQ's intermediate list), or a queue entry with no record. Read directly."""
    client = cluster.client
    queued_ids: set[str] = set()
    for key in client.scan_iter("rq:queue:*"):
        if client.type(key) == b"list":
            queued_ids |= {m.decode() for m in client.lrange(key, 0, -1)}
    taken = {m.decode().partition(" ")[2] for m in client.zrange("warden:taken", 0, -1)}
    problems = []
    for key in client.scan_iter("warden:job:*"):
        fields = client.hmget(key, "state", "rq_id")
        job_id = key.decode().rsplit(":", 1)[1]
        if fields[0] == b"queued":
            rq_id = fields[1].decode() if fields[1] else job_id
            if rq_id not in queued_ids and rq_id not in taken:
                problems.append(f"{job_id}: queued, but on no queue")
    for rq_id in queued_ids:
        job_id = rq_id.partition("-")[0]
        if not client.exists(f"warden:job:{job_id}"):
            problems.append(f"{rq_id}: on a queue, with no record")
    return problems
