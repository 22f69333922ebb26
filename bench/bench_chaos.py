"""Chaos, long form: 1,000 jobs submitted over ~3 minutes while a random worker is
SIGKILLed every 2-5 s (and replaced at once, as the supervisor or Kubernetes would),
with Warden's default lease (10 s) and attempts (2). Prints what the suite's short run
asserts: accepted, kills, lost, duplicates, end states, attempts, and the re-run delay
(kill to the next attempt's start) p50/p99.

    python bench/bench_chaos.py [--jobs 1000] [--workers 2] [--lanes 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reliability.chaos import run_chaos
from tests.service.cluster import Cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lanes", type=int, default=2)
    parser.add_argument("--submit-over", type=float, default=180.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp), worker_lanes=args.lanes)  # default lease and attempts
        try:
            cluster.start_api()
            report = run_chaos(cluster, jobs=args.jobs, workers=args.workers,
                               kill_every_s=(2.0, 5.0), submit_over_s=args.submit_over,
                               finish_within_s=args.submit_over + 600)
        finally:
            cluster.close()
    print(report.summary())


if __name__ == "__main__":
    main()
