"""Multi-tenant load: three tenants (weights 3/2/1, their own caps) saturate an API and two
workers (2 lanes each) for ``--seconds`` with WASM, source and judge submissions; prints per
tenant accepted/finished/refused/5xx, latency p50/p99, the highest running and queued counts
seen against the caps, and the workers' RSS over the run.

    python bench/bench_load.py [--seconds 300]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reliability.load import PLANS, run_load
from tests.service.cluster import Cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp), lease_s=2, worker_lanes=2, warm_languages="true")
        try:
            cluster.start_api()
            workers = [cluster.start_worker(), cluster.start_worker()]
            cluster.wait_ready(2)
            report = run_load(cluster, args.seconds, workers)
        finally:
            cluster.close()
    print(report.summary())
    print("caps (running/queued):", {p.name: (p.max_running, p.max_queued) for p in PLANS})


if __name__ == "__main__":
    main()
