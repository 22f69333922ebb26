"""The scripts' key declarations fail closed (workers/lua.py), on a real Redis: a key its
caller did not declare stops a script before it writes anything, and a take whose view of
the ring is out of date answers 'stale' (touching nothing) and is taken again."""

from __future__ import annotations

import pytest
import redis

from sandboxes.schema import Grants, JobSpec, JobState, Limits
from workers.pools import Pool
from workers.queue import JobQueue, is_stale
from workers.scheduling import running_key
from workers.store import LEASES, job_key

WASM = JobSpec(module_sha256="0" * 64, limits=Limits(), grants=Grants())


def _snapshot(client: redis.Redis) -> dict[bytes, object]:
    """Every key and its value (DUMP): what a script that stopped must not have changed."""
    return {k: client.dump(k) for k in sorted(client.keys("*"))}


def test_take_declares_the_tenants_it_read_and_retries_a_stale_view(queue: JobQueue) -> None:
    pools = (Pool.SANDBOX,)
    keys, args = queue._take_keys_args(2, pools)  # the ring is empty now
    job = queue.submit(WASM, tenant="late")  # joins after the read
    before = _snapshot(queue.client)
    reply = queue._take(keys=keys, args=args)
    assert is_stale(reply), reply
    assert _snapshot(queue.client) == before  # passed over, nothing taken or moved
    assert queue.take(2, pools) == (job, "warden.late", "late")  # reads again: taken


def test_a_finish_missing_a_key_stops_before_its_first_write(queue: JobQueue) -> None:
    store = queue.store
    job = queue.submit(WASM, tenant="t1")
    assert queue.take(2) is not None
    token = store.start(job)
    assert token is not None
    store.load_scripts()
    args = store.finish_args(job, token, JobState.FINISHED, "", tenant="t1")
    numkeys = int(args[1])
    keys = args[2:2 + numkeys]
    assert running_key("t1") in keys
    kept = [k for k in keys if k != running_key("t1")]
    before = _snapshot(queue.client)
    with pytest.raises(redis.ResponseError, match="undeclared key warden:running:t1"):
        queue.client.evalsha(args[0], len(kept), *kept, *args[2 + numkeys:])
    assert _snapshot(queue.client) == before
    assert queue.client.hget(job_key(job), "state") == b"running"
    assert queue.client.zscore(LEASES, job) is not None
    assert store.finish(job, token, JobState.FINISHED, None)  # declared: recorded
