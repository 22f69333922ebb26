"""Worker pools (issue 15): a job that needs the native compile jail waits in the jail pool,
which only workers whose jail works take from; everything else waits in the sandbox pool.
Checked on the queue's own scripts against a real Redis."""

from __future__ import annotations

import time

import pytest

from sandboxes.schema import Grants, JobSpec, Limits
from tenancy.limits import Admission
from tenancy.quotas import Quotas
from workers.pools import Pool, pool_key, pool_of, served_pools
from workers.queue import JobQueue, QuotaExceededError
from workers.scheduling import running_key
from workers.store import job_key

RUST = JobSpec(language="rust", source='fn main() { println!("hi"); }\n', limits=Limits(),
               grants=Grants())
CPP = JobSpec(language="cpp", source="int main() {}\n", limits=Limits(), grants=Grants())
WASM = JobSpec(module_sha256="0" * 64, limits=Limits(), grants=Grants())
SANDBOX_ONLY = (Pool.SANDBOX,)
BOTH = (Pool.JAIL, Pool.SANDBOX)


def test_each_job_is_queued_for_the_pool_that_can_run_it() -> None:
    assert pool_of(RUST) is Pool.JAIL
    assert pool_of(CPP) is Pool.SANDBOX  # clang runs inside the sandbox
    assert pool_of(WASM) is Pool.SANDBOX
    assert served_pools(["c", "cpp", "python"]) == SANDBOX_ONLY
    assert served_pools(["c", "rust"]) == BOTH  # the jail's pool first
    assert served_pools([]) == SANDBOX_ONLY


def test_a_locked_down_worker_never_takes_a_job_that_needs_the_jail(queue: JobQueue) -> None:
    rust = queue.submit(RUST)
    cpp = queue.submit(CPP)
    assert queue.client.hget(job_key(rust), "pool") == b"jail"
    assert queue.client.llen("rq:queue:warden-jail.default") == 1
    assert queue.client.zscore(pool_key("ready", Pool.JAIL), "default") is not None
    assert queue.client.llen(pool_key("doorbell", Pool.JAIL)) == 1

    assert queue.take(2, SANDBOX_ONLY) == (cpp, "warden.default", "default")
    assert queue.take(2, SANDBOX_ONLY) is None  # the Rust job stays for a jail worker
    assert queue.take(2, BOTH) == (rust, "warden-jail.default", "default")
    assert queue.take(2, BOTH) is None
    # a tenant's running cap counts its jobs in both pools
    assert queue.client.zcard(running_key("default")) == 2


def test_a_jail_worker_serves_the_sandbox_pool_too(queue: JobQueue) -> None:
    cpp = queue.submit(CPP)
    assert queue.take(2, BOTH) == (cpp, "warden.default", "default")


def test_cancel_and_requeue_keep_a_job_in_its_pool(queue: JobQueue) -> None:
    rust = queue.submit(RUST)
    assert queue.store.cancel(rust, queue.rq.key) == "dequeued"
    assert queue.client.llen("rq:queue:warden-jail.default") == 0

    rust = queue.submit(RUST)
    taken = queue.take(2, BOTH)
    assert taken is not None
    rq_id, queue_name, _ = taken
    # the taker died before starting it: the reaper puts it back in the jail pool
    assert queue.store.unstick(queue.rq.key, queue_name, rq_id, rust)
    assert queue.take(2, SANDBOX_ONLY) is None
    again = queue.take(2, BOTH)
    assert again is not None and again[1] == "warden-jail.default"

    # and a re-run after its worker died goes back to the jail pool under a fresh RQ id
    commands = queue.requeue_commands(rust)
    assert any("rq:queue:warden-jail.default" in map(str, c) for c in commands), commands


def test_the_queued_quota_counts_both_pools(queue: JobQueue) -> None:
    admission = Admission.of(Quotas(max_queued=2), time.time(), 3600, 86_400)
    queue.submit(RUST, admission=admission)
    queue.submit(CPP, admission=admission)
    with pytest.raises(QuotaExceededError) as refused:
        queue.submit(WASM, admission=admission)
    assert refused.value.quota == "max_queued"
