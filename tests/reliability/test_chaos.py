"""Chaos, short form (every CI run): jobs submitted while workers are SIGKILLed at random
every 1.5-3 s. Every accepted job ends with exactly one result, none is lost, and a job
whose worker was killed starts again within 30 s. The long form (1,000 jobs) is
``python bench/bench_chaos.py``; its figures are in the README."""

from __future__ import annotations

from pathlib import Path

from tests.reliability.chaos import run_chaos
from tests.service.cluster import Cluster


def test_workers_killed_at_random_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, lease_s=2, max_attempts=4, worker_lanes=2)
    try:
        cluster.start_api()
        report = run_chaos(cluster, jobs=120, workers=2, kill_every_s=(1.5, 3.0),
                           submit_over_s=20, finish_within_s=240)
    finally:
        cluster.close()
    print(report.summary())
    assert report.accepted == report.submitted == 120, report.summary()
    assert report.kills >= 5, report.summary()
    assert report.lost == 0 and report.duplicates == 0, report.summary()
    assert set(report.states) <= {"finished", "failed"}, report.summary()
    assert report.rerun_delays_s, "no kill hit a running job: the run proves nothing"
    assert max(report.rerun_delays_s) < 30, report.summary()
