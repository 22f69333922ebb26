"""``warden worker``: one RQ worker process that runs jobs in-process (no fork per job).

RQ's forking worker pays a fork per job (8.4 ms measured) for crash isolation; wasmtime
traps never crash the process, so Warden isolates at the process level instead: each worker
is its own process under the supervisor (``warden up`` or Kubernetes), and a worker that
dies has its job re-run or failed by another worker's reaper when the lease expires.
"""

from __future__ import annotations

import logging

from rq import SimpleWorker

from workers.runtime import runtime


def run_worker(burst: bool = False) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    rt = runtime()  # connect and build the sandbox before taking jobs
    worker = SimpleWorker(
        [rt.queue.rq], connection=rt.client, default_result_ttl=0, job_monitoring_interval=5,
    )
    worker.work(burst=burst, logging_level="WARNING", with_scheduler=False)
