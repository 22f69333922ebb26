"""Chaos, short form (every CI run): jobs submitted while workers are SIGKILLed at random
every 1.5-3 s. Every accepted job ends with exactly one result, none is lost, and a job
whose worker was killed starts again within 30 s. The long form (1,000 jobs) is
``python bench/bench_chaos.py``; its figures are in the README."""

from __future__ import annotations

from pathlib import Path

from tests.reliability.chaos import half_written, run_chaos
from tests.service.cluster import Cluster


def test_workers_killed_at_random_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, lease_s=2, max_attempts=4, worker_lanes=2)
    try:
        cluster.start_api()
        report = run_chaos(cluster, jobs=90, workers=2, kill_every_s=(1.5, 3.0),
                           submit_over_s=15, finish_within_s=240)
    finally:
        cluster.close()
    print(report.summary())
    assert report.accepted == report.submitted == 90, report.summary()
    assert report.kills >= 4, report.summary()
    assert report.lost == report.duplicates == report.extra_jobs == 0, report.summary()
    assert set(report.states) <= {"finished", "failed"}, report.summary()
    assert report.rerun_delays_s, "no kill hit a running job: the run proves nothing"
    assert max(report.rerun_delays_s) < 30, report.summary()


def test_redis_and_the_api_killed_under_load_lose_nothing_and_write_nothing_half(
        tmp_path: Path) -> None:
    """Redis SIGKILLed (restarted on its AOF, fsync always here) and the API SIGKILLed
    mid-stream while jobs are submitted and run: while Redis is down the API answers 503
    with Retry-After (never a 500 or a hang) and recovers by itself; no accepted job is
    lost or run twice (retries carry an Idempotency-Key); Redis holds no half-written job."""
    cluster = Cluster(tmp_path, lease_s=2, max_attempts=4, worker_lanes=2)
    try:
        cluster.start_api()
        report = run_chaos(cluster, jobs=80, workers=2, kill_every_s=(1.5, 2.5),
                           submit_over_s=16, finish_within_s=240, redis_every=3,
                           api_every=4)
        broken = half_written(cluster)
    finally:
        cluster.close()
    print(report.summary())
    assert report.redis_kills >= 2 and report.api_kills >= 1, report.summary()
    assert set(report.outage_answers) == {503}, report.summary()  # with Retry-After
    assert report.accepted == report.submitted == 80, report.summary()
    assert report.lost == report.duplicates == report.extra_jobs == 0, report.summary()
    assert broken == [], broken
