"""Multi-tenant load, 5 minutes (marker ``soak``: not in the default run; ``pytest -m soak
tests/reliability/test_load.py`` or ``python bench/bench_load.py``). Three tenants with
weights 3/2/1 and their own caps saturate two workers with WASM, source and judge
submissions: every quota holds exactly, no tenant gets less than half its weighted share of
the finished jobs, no server error, and the workers' memory is flat after the first fifth."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.load import PLANS, run_load
from tests.service.cluster import Cluster


@pytest.mark.soak
def test_three_tenants_under_load_keep_their_quotas_and_their_share(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, lease_s=2, worker_lanes=2, warm_languages="true")
    try:
        cluster.start_api()
        workers = [cluster.start_worker(), cluster.start_worker()]
        cluster.wait_ready(2)
        report = run_load(cluster, 300, workers)
    finally:
        cluster.close()
    print(report.summary())
    total = sum(t.finished for t in report.tenants.values())
    weights = sum(plan.weight for plan in PLANS)
    assert total > 0, report.summary()
    for plan in PLANS:
        t = report.tenants[plan.name]
        assert t.server_errors == 0, report.summary()
        assert t.max_running_seen <= plan.max_running, report.summary()
        assert t.max_queued_seen <= plan.max_queued, report.summary()
        assert t.finished >= 0.5 * total * plan.weight / weights, report.summary()
    after_warm_up = report.rss_mib[2:]  # samples from a fifth of the run on
    assert max(after_warm_up) - min(after_warm_up) < 150, report.summary()
