"""What stock RQ costs per job, the reason Warden has its own worker loop.

A no-op job (``time.time``) through RQ's forking ``Worker`` (a fork per job: crash
isolation) and its ``SimpleWorker`` (in-process), each draining N queued jobs in burst mode,
on an embedded Redis. Warden's ``WardenWorker`` on a real hello job is measured end to end
by ``bench_http.py`` (its ``CPU ms/job: workers`` line).

    python bench/bench_rq_workers.py [--jobs 500]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import redis
from rq import Queue, SimpleWorker, Worker

from workers.redis_server import EmbeddedRedis


def drain(worker_cls: type[Worker], client: redis.Redis, jobs: int) -> tuple[float, float]:
    """(wall seconds per job, enqueue seconds per job)."""
    queue = Queue("bench", connection=client)
    queue.empty()
    t0 = time.perf_counter()
    for _ in range(jobs):
        queue.enqueue_call("time.time", result_ttl=0)
    enqueue = (time.perf_counter() - t0) / jobs
    worker = worker_cls([queue], connection=client)
    t0 = time.perf_counter()
    worker.work(burst=True, logging_level="ERROR")
    wall = (time.perf_counter() - t0) / jobs
    assert queue.count == 0, "jobs left on the queue"
    return wall, enqueue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="warden-rq-bench-"))
    server = EmbeddedRedis(work / "redis").start()
    try:
        client = redis.Redis.from_url(server.url)
        print(f"# stock RQ, no-op job, {args.jobs} jobs per worker kind, burst mode")
        for name, cls in (("Worker (fork per job)", Worker), ("SimpleWorker", SimpleWorker)):
            drain(cls, client, min(50, args.jobs))  # warm-up: imports, scripts
            wall, enqueue = drain(cls, client, args.jobs)
            print(f"{name:24s} {wall * 1e3:6.2f} ms/job = {1 / wall:6.0f} jobs/s"
                  f"   (enqueue {enqueue * 1e3:.2f} ms/job)")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
