from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.service.cluster import Cluster
from workers.queue import JobQueue
from workers.redis_server import EmbeddedRedis
from workers.store import JobStore


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """API + 2 workers, shared by a test module (each test uses its own jobs)."""
    # 127.0.0.2 stands for a public callback receiver (tests/service/test_callbacks.py)
    # A judged TLE ends on fuel (its time exactly the limit) unless the wall-clock cap comes
    # first: at 10x + 1 s it does not, even on a loaded 2-core machine (3x + 1 s did once).
    c = Cluster(tmp_path_factory.mktemp("cluster"), lease_s=2, max_body_bytes=2_000_000,
                callback_allowed_networks="127.0.0.2/32", callback_backoff_s=0.5,
                judge_wall_factor=10)
    try:
        c.start_api()
        c.start_worker()
        c.start_worker()
        c.wait_ready(2)
        yield c
    finally:
        c.close()


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster with no process started: each test starts what it needs."""
    c = Cluster(tmp_path, lease_s=2, max_queue_length=5)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[JobQueue]:
    """Warden's queue and store on a Redis of its own (no API, no workers): for tests of
    the scripts themselves."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    client = redis.Redis.from_url(server.url)
    try:
        yield JobQueue(client, JobStore(client, 3600, 2), "warden", 100)
    finally:
        client.close()
        server.stop()
