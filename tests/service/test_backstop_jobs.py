"""When the backstop kills a component's executor, no other job is lost or run twice.

One worker with two lanes takes a sleeping component (killed at its wall limit + grace) and
a stream of ordinary jobs at the same time; every ordinary job must finish ok exactly once
(one attempt), the hostile one must end ``wall_timeout`` once, and the worker must live on.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

from tests import wat_modules as W
from tests.conftest import fixture_bytes
from tests.service.cluster import Cluster, stdout_of

SLEEP = base64.b64encode(fixture_bytes("components/sleep.wasm")).decode()
HELLO_COMPONENT = base64.b64encode(fixture_bytes("components/hello.wasm")).decode()


def test_a_killed_executor_costs_no_other_job(tmp_path: Path) -> None:
    c = Cluster(tmp_path, lease_s=2, worker_lanes=2)
    try:
        c.start_api()
        worker = c.start_worker()
        c.wait_ready(1)
        hostile = c.submit({"wasm_base64": SLEEP, "limits": {"wall_time_s": 1}})
        ordinary = []
        for i in range(20):
            body = ({"wat": W.hello(f"job {i}\n")} if i % 2 else
                    {"wasm_base64": HELLO_COMPONENT})
            ordinary.append((i, c.submit(body)))
            time.sleep(0.05)
        record = c.wait_state(hostile, timeout_s=60)
        assert record["state"] == "finished", record
        assert record["result"]["status"] == "wall_timeout", record
        assert record["attempts"] == 1
        assert stdout_of(record) == b"sleeping\n"
        for i, job_id in ordinary:
            done = c.wait_state(job_id, timeout_s=60)
            assert done["state"] == "finished" and done["result"]["status"] == "ok", done
            assert done["attempts"] == 1, done
            expected = f"job {i}\n".encode() if i % 2 else b"hello from a component\n"
            assert stdout_of(done) == expected
        assert worker.poll() is None  # the worker itself was never killed
        assert "Traceback" not in c.log_of(worker)
    finally:
        c.close()
