"""Judge benchmark: what judging costs per submission and per test, over HTTP and in-process.

Starts its own cluster as bench/bench_http.py does (embedded Redis on a free port,
``python -m service.cli api`` and ``worker`` processes configured through WARDEN_*
variables, an admin key from ``ensure_first_key``, quotas lifted), then:

(a) A 100-test a+b problem (PUT /v1/problems/{id}) judged with a C solution through
    ``POST /v1/problems/{id}/submissions?wait=60``, with 1 worker, then with a second worker
    added: the first (cold) submission on a fresh data dir, a warm-up, then ``--subs``
    submissions one at a time. Per submission: client wall time of the POST, server time
    (finished_at - created_at), the compile job's time (from its job record in Redis), the
    sum of the tests' in-sandbox wall_time_s, and which workers ran its test jobs (the
    ``warden:sub:<id>:jobs`` hash names each test's job; the job hash's ``worker`` field
    names the worker). Compared to a bare run: the same C source as a plain job, ``POST
    /v1/jobs?wait=30`` with one test's stdin (compile cache warm), p50 latency and its
    in-sandbox wall time.
(b) Judging throughput with 2 workers: a 10-test problem, a closed loop of
    submit-and-wait at each ``--concurrency`` for ``--duration`` seconds: submissions/s,
    tests/s, latency p50/p90, CPU ms per submission of each process (from /proc).
(c) In-process (``judge_locally`` with ``SourceRunner(Sandbox())``, after the cluster is
    stopped): the interactive ``guess`` Kattis fixture judged with its binary-search C
    solution, time per test, vs the 100-test a+b judged the same way (non-interactive, a
    trivial program), with 1 and 2 lanes.

The machine may be shared (other processes' load is printed as the load average): read
the figures as this box's, not as a target. Prints figures; asserts only verdicts and
answers (never timing).

Usage: python bench/bench_judge.py [--quick] [--subs 10] [--plain-jobs 30]
       [--concurrency 4 8] [--duration 15] [--local-reps 5] [--keep] [--json out.json]
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import hashlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import redis  # noqa: E402

from judge.kattis import load_package  # noqa: E402
from judge.local import judge_locally  # noqa: E402
from judge.problem import Problem, TestCase, TestGroup  # noqa: E402
from judge.verdicts import Verdict  # noqa: E402
from sandboxes.languages.source_runner import SourceRunner  # noqa: E402
from sandboxes.runtime.sandbox import Sandbox  # noqa: E402
from sandboxes.settings import get_settings  # noqa: E402
from tenancy.bootstrap import ensure_first_key  # noqa: E402
from tenancy.quotas import Quotas  # noqa: E402
from tenancy.registry import TenantRegistry  # noqa: E402
from workers.processes import stop_gracefully  # noqa: E402
from workers.redis_server import EmbeddedRedis, free_port  # noqa: E402

GUESS = ROOT / "tests" / "fixtures" / "kattis" / "guess"
CLK_TCK = os.sysconf("SC_CLK_TCK")
QUOTAS = Quotas(submissions_per_minute=1_000_000, submission_burst=100_000,
                reads_per_minute=10_000_000, read_burst=1_000_000, max_queued=100_000,
                max_running=1_000, daily_fuel=10**15)
APLUSB = r"""#include <stdio.h>
int main(void) {
    long long a, b;
    if (scanf("%lld %lld", &a, &b) != 2) return 1;
    printf("%lld\n", a + b);
    return 0;
}
"""


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def p50(samples: list[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (its threads included), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def unix(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


# -- problems -----------------------------------------------------------------------------
def aplusb_problem(n: int, seed: int = 1) -> tuple[Problem, dict[str, bytes]]:
    """An n-test a+b problem (tokens checker, default 1 s limit) and its blobs."""
    rng = random.Random(seed)
    blobs: dict[str, bytes] = {}
    children = []
    for i in range(n):
        a, b = rng.randint(-10**12, 10**12), rng.randint(-10**12, 10**12)
        ids = []
        for data in (f"{a} {b}\n".encode(), f"{a + b}\n".encode()):
            sha = hashlib.sha256(data).hexdigest()
            blobs[sha] = data
            ids.append(sha)
        children.append(TestCase(name=f"{i + 1:03d}", input_sha256=ids[0],
                                 answer_sha256=ids[1]))
    tests = TestGroup(name="root", children=[TestGroup(name="secret", children=children)])
    return Problem(title=f"a+b x{n}", tests=tests), blobs


# -- the cluster --------------------------------------------------------------------------
class JudgeCluster:
    """Embedded Redis + API + workers as processes; logs in the data dir."""

    def __init__(self, data_dir: Path, settings: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.redis = EmbeddedRedis(data_dir / "redis")
        self.port = free_port()
        self.settings = settings
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []
        self.key = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")},
            "WARDEN_REDIS_URL": self.redis.url,
            "WARDEN_DATA_DIR": str(self.data_dir),
            "WARDEN_PORT": str(self.port),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            **{f"WARDEN_{k.upper()}": v for k, v in self.settings.items()},
        }
        log = (self.data_dir / f"{name}.log").open("wb")
        self._logs.append(log)
        return subprocess.Popen([sys.executable, "-m", "service.cli", *args], env=env,
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def start(self, workers: int) -> None:
        self.redis.start()
        client = redis.Redis.from_url(self.redis.url)
        created = ensure_first_key(TenantRegistry(client), self.data_dir)  # as `warden up`
        assert created is not None, "a fresh data dir has no tenant yet"
        TenantRegistry(client).set_quotas(created.tenant, QUOTAS)
        self.key = created.secret
        client.close()
        self.api = self._spawn("api", "api")
        for _ in range(workers):
            self.add_worker()

    def add_worker(self) -> None:
        self.workers.append(self._spawn(f"worker-{len(self.workers)}", "worker"))
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                r = httpx.get(self.base + "/readyz", timeout=5)
                if r.status_code == 200 and r.json()["workers"] >= len(self.workers):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"cluster did not become ready; see logs in {self.data_dir}")

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=120,
                            headers={"Authorization": f"Bearer {self.key}"})

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.url)

    def worker_names(self) -> dict[str, str]:
        """host:pid (the job hash's ``worker`` field) -> worker-N."""
        host = socket.gethostname()
        return {f"{host}:{p.pid}": f"worker-{i}" for i, p in enumerate(self.workers)}

    def pids(self) -> dict[str, int]:
        out = {"api": self.api.pid if self.api else 0,
               "redis": self.redis.proc.pid if self.redis.proc else 0}
        out.update({f"worker-{i}": p.pid for i, p in enumerate(self.workers)})
        return out

    def cpu(self) -> dict[str, float]:
        return {name: proc_cpu_s(pid) for name, pid in self.pids().items()}

    def stop(self) -> None:
        stop_gracefully(self.workers, 15)
        if self.api is not None:
            stop_gracefully([self.api], 10)
        self.redis.stop()
        for log in self._logs:
            log.close()


def upload(http: httpx.Client, problem_id: str, problem: Problem,
           blobs: dict[str, bytes]) -> None:
    body = {"problem": problem.model_dump(mode="json"),
            "blobs": {sha: base64.b64encode(data).decode() for sha, data in blobs.items()}}
    r = http.put(f"/v1/problems/{problem_id}", json=body)
    assert r.status_code in (200, 201), r.text


def submit(http: httpx.Client, problem_id: str, source: str) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    r = http.post(f"/v1/problems/{problem_id}/submissions", params={"wait": 60},
                  json={"language": "c", "source": source})
    wall = time.perf_counter() - t0
    assert r.status_code == 200, r.text
    record: dict[str, Any] = r.json()
    assert record["verdict"] == "AC", {k: record.get(k) for k in ("verdict", "first_failure",
                                                                  "compile_output", "error")}
    return wall, record


def submission_figures(cluster: JudgeCluster, wall: float,
                       record: dict[str, Any]) -> dict[str, Any]:
    """One judged submission: client and server times, the compile job, the workers."""
    r = cluster.client()
    sid = record["id"]
    names = cluster.worker_names()
    compile_job = r.hget(f"warden:sub:{sid}", "compile_job")
    comp: dict[bytes, bytes] = r.hgetall(f"warden:job:{compile_job.decode()}") \
        if compile_job else {}
    jobs = {k.decode(): v.decode() for k, v in r.hgetall(f"warden:sub:{sid}:jobs").items()}
    pipe = r.pipeline(transaction=False)
    for job in jobs.values():
        pipe.hmget(f"warden:job:{job}", "worker", "started_at", "finished_at")
    rows = pipe.execute()
    r.close()
    workers = Counter(names.get(w.decode(), w.decode()) if w else "?" for w, _, _ in rows)
    starts = [float(s) for _, s, _ in rows if s]
    ends = [float(e) for _, _, e in rows if e]
    created, finished = unix(record["created_at"]), unix(record["finished_at"])
    comp_start = float(comp.get(b"started_at", 0) or 0)
    comp_end = float(comp.get(b"finished_at", 0) or 0)
    tests = record["tests"]
    return {
        "client_s": wall,
        "server_s": finished - created,
        "queue_s": (comp_start - created) if comp_start else None,
        "compile_s": (comp_end - comp_start) if comp_end else None,
        "tests_span_s": (max(ends) - min(starts)) if starts and ends else None,
        "tests": len(tests),
        "sandbox_wall_sum_s": sum(t["wall_time_s"] or 0.0 for t in tests),
        "fuel_sum": sum(t["fuel_used"] or 0 for t in tests),
        "workers": dict(sorted(workers.items())),
    }


def plain_jobs(http: httpx.Client, stdin: bytes, expected: bytes, n: int) -> dict[str, float]:
    """The same C source as plain jobs (submit-and-wait): p50 latency, in-sandbox wall."""
    body = {"language": "c", "source": APLUSB,
            "grants": {"stdin": base64.b64encode(stdin).decode()}}
    lat, sandbox_wall, fuel = [], [], []
    for _ in range(n + 2):
        t0 = time.perf_counter()
        r = http.post("/v1/jobs", params={"wait": 30}, json=body)
        dt = time.perf_counter() - t0
        assert r.status_code == 200, r.text
        rec = r.json()
        assert rec["state"] == "finished" and rec["result"]["status"] == "ok", rec
        assert base64.b64decode(rec["result"]["stdout"]) == expected, rec
        lat.append(dt)
        sandbox_wall.append(rec["result"]["wall_time_s"])
        fuel.append(rec["result"]["fuel_used"])
    lat, sandbox_wall = lat[2:], sandbox_wall[2:]  # the first two: warm-up
    return {"jobs": n, "p50_s": p50(lat), "p90_s": percentile(lat, 0.9),
            "sandbox_wall_p50_s": p50(sandbox_wall), "fuel": fuel[-1]}


def phase_a(cluster: JudgeCluster, http: httpx.Client, subs: int, label: str,
            cold: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"workers": len(cluster.workers)}
    if cold:
        wall, record = submit(http, "aplusb100", APLUSB)
        first = submission_figures(cluster, wall, record)
        out["cold"] = first
        print(f"  {label}: cold (first) submission: client {first['client_s']:.3f} s, "
              f"server {first['server_s']:.3f} s, compile job {first['compile_s']:.3f} s, "
              f"workers {first['workers']}")
    for _ in range(2):  # warm-up: every worker's caches (module, problem, blobs)
        submit(http, "aplusb100", APLUSB)
    runs = []
    cpu0 = cluster.cpu()
    for _ in range(subs):
        runs.append(submission_figures(cluster, *submit(http, "aplusb100", APLUSB)))
    cpu1 = cluster.cpu()
    n_tests = runs[0]["tests"]
    client = [r["client_s"] for r in runs]
    server = [r["server_s"] for r in runs]
    compile_s = [r["compile_s"] for r in runs if r["compile_s"] is not None]
    span = [r["tests_span_s"] for r in runs if r["tests_span_s"] is not None]
    sbx = [r["sandbox_wall_sum_s"] for r in runs]
    out.update({
        "subs": subs, "tests": n_tests,
        "client_p50_s": p50(client), "client_min_s": min(client), "client_max_s": max(client),
        "server_p50_s": p50(server),
        "compile_p50_s": p50(compile_s),
        "tests_span_p50_s": p50(span),
        "per_test_total_ms": p50(server) / n_tests * 1e3,
        "per_test_after_compile_ms": (p50(server) - p50(compile_s)) / n_tests * 1e3,
        "sandbox_wall_sum_p50_s": p50(sbx),
        "sandbox_wall_per_test_ms": p50(sbx) / n_tests * 1e3,
        "overhead_per_test_ms": (p50(server) - p50(compile_s) - p50(sbx)) / n_tests * 1e3,
        "workers_per_sub": [r["workers"] for r in runs],
        "distinct_workers": sorted({len(r["workers"]) for r in runs}),
        "cpu_ms_per_sub": {k: round((cpu1[k] - cpu0.get(k, 0.0)) / subs * 1e3, 1)
                           for k in cpu1},
    })
    print(f"  {label}: {subs} submissions of {n_tests} tests: client p50 "
          f"{out['client_p50_s']:.3f} s [{out['client_min_s']:.3f}..{out['client_max_s']:.3f}],"
          f" server p50 {out['server_p50_s']:.3f} s, compile job p50 "
          f"{out['compile_p50_s'] * 1e3:.1f} ms, tests span p50 {out['tests_span_p50_s']:.3f} s")
    print(f"    per test: {out['per_test_total_ms']:.2f} ms total / test "
          f"({out['per_test_after_compile_ms']:.2f} ms without the compile job); in-sandbox "
          f"{out['sandbox_wall_per_test_ms']:.3f} ms / test "
          f"(sum of wall_time_s p50 {out['sandbox_wall_sum_p50_s']:.3f} s); overhead "
          f"{out['overhead_per_test_ms']:.2f} ms / test (server - compile - in-sandbox) / "
          f"{n_tests}")
    split = ", ".join("/".join(str(v) for v in w.values()) for w in out["workers_per_sub"])
    print(f"    test jobs per worker, each submission: {split}; distinct workers per "
          f"submission: {out['distinct_workers']}")
    print(f"    CPU ms per submission: {out['cpu_ms_per_sub']}")
    stdin, expected = b"3 4\n", b"7\n"
    plain = plain_jobs(http, stdin, expected, PLAIN_JOBS[0])
    out["plain_job"] = plain
    print(f"    bare run: plain C job POST /v1/jobs?wait=30 x{plain['jobs']}: p50 "
          f"{plain['p50_s'] * 1e3:.2f} ms (p90 {plain['p90_s'] * 1e3:.2f}), in-sandbox "
          f"{plain['sandbox_wall_p50_s'] * 1e3:.3f} ms; judge per test / plain job = "
          f"{out['per_test_total_ms'] / (plain['p50_s'] * 1e3):.2f}")
    return out


PLAIN_JOBS = [30]  # set from --plain-jobs


def phase_b(cluster: JudgeCluster, concurrency: int, duration: float) -> dict[str, Any]:
    """Closed loop: ``concurrency`` threads submit-and-wait the 10-test problem."""
    stop_at = 0.0
    lat: list[float] = []
    tests_done = [0]
    errors: list[str] = []
    lock = threading.Lock()

    def loop() -> None:
        with cluster.http() as http:
            while time.perf_counter() < stop_at:
                try:
                    wall, record = submit(http, "aplusb10", APLUSB)
                except (AssertionError, httpx.HTTPError) as err:
                    with lock:
                        errors.append(repr(err)[:300])
                    continue
                if time.perf_counter() <= stop_at:
                    with lock:
                        lat.append(wall)
                        tests_done[0] += len(record["tests"])

    cpu0 = cluster.cpu()
    lg0 = time.process_time()
    t0 = time.perf_counter()
    stop_at = t0 + duration
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(loop) for _ in range(concurrency)]:
            f.result()
    elapsed = min(time.perf_counter(), stop_at) - t0
    loadgen = time.process_time() - lg0
    cpu1 = cluster.cpu()
    n = max(len(lat), 1)
    out = {"concurrency": concurrency, "duration_s": round(elapsed, 2), "subs": len(lat),
           "subs_per_s": len(lat) / elapsed, "tests_per_s": tests_done[0] / elapsed,
           "p50_s": p50(lat), "p90_s": percentile(lat, 0.9) if lat else None,
           "errors": len(errors), "first_error": errors[0] if errors else None,
           "cpu_ms_per_sub": {k: round((cpu1[k] - cpu0[k]) / n * 1e3, 1) for k in cpu1}
           | {"loadgen": round(loadgen / n * 1e3, 1)}}
    print(f"  c={concurrency}: {len(lat)} submissions in {elapsed:.1f} s = "
          f"{out['subs_per_s']:.2f} subs/s ({out['tests_per_s']:.1f} tests/s), latency p50 "
          f"{out['p50_s']:.3f} s p90 {out['p90_s'] or 0:.3f} s, errors {len(errors)}"
          + (f" (first: {errors[0]})" if errors else ""))
    print(f"    CPU ms per submission: {out['cpu_ms_per_sub']}")
    return out


def phase_c(reps: int) -> dict[str, Any]:
    """In-process: interactive guess vs 100-test a+b, per test, lanes 1 and 2."""
    pkg = load_package(GUESS)
    binary = next(s for s in pkg.submissions if s.path == "submissions/accepted/binary.c")
    aplusb, aplusb_blobs = aplusb_problem(100)
    out: dict[str, Any] = {}
    sources = SourceRunner(Sandbox())
    try:
        cases = [
            ("interactive guess (binary.c)", pkg.problem, pkg.blobs, binary.source),
            ("a+b x100 (non-interactive)", aplusb, aplusb_blobs, APLUSB),
        ]
        for label, problem, blobs, source in cases:
            n_tests = len(problem.cases())
            t0 = time.perf_counter()
            grade = judge_locally(sources, problem, blobs, "c", source)
            cold = time.perf_counter() - t0
            assert grade.verdict is Verdict.AC, (label, grade)
            for lanes in (1, 2):
                times, sbx = [], []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    grade = judge_locally(sources, problem, blobs, "c", source, lanes=lanes)
                    times.append(time.perf_counter() - t0)
                    assert grade.verdict is Verdict.AC, (label, grade)
                    sbx.append(sum(t.wall_time_s or 0.0 for t in grade.tests))
                fig = {"tests": n_tests, "lanes": lanes, "first_call_s": cold,
                       "p50_s": p50(times), "per_test_ms": p50(times) / n_tests * 1e3,
                       "sandbox_wall_per_test_ms": p50(sbx) / n_tests * 1e3,
                       "fuel_per_test": sum(t.fuel_used or 0 for t in grade.tests) // n_tests}
                out[f"{label} lanes={lanes}"] = fig
                print(f"  {label}, {n_tests} tests, lanes={lanes}: judge_locally p50 "
                      f"{fig['p50_s'] * 1e3:.1f} ms = {fig['per_test_ms']:.2f} ms / test "
                      f"(in-sandbox wall of the submission {fig['sandbox_wall_per_test_ms']:.3f}"
                      f" ms / test, fuel {fig['fuel_per_test']:_} / test); first call "
                      f"{cold:.2f} s")
    finally:
        sources.sandbox.close()
    inter = out["interactive guess (binary.c) lanes=1"]["per_test_ms"]
    plain = out["a+b x100 (non-interactive) lanes=1"]["per_test_ms"]
    out["interactive_over_plain_lanes1"] = inter / plain
    print(f"  interactive / non-interactive per-test time (lanes=1): {inter / plain:.2f}x")
    return out


# -- main ---------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (< 2 min)")
    ap.add_argument("--subs", type=int, help="measured submissions per phase (a) step")
    ap.add_argument("--plain-jobs", type=int, help="plain jobs for the bare-run p50")
    ap.add_argument("--concurrency", type=int, nargs="+", help="phase (b) concurrencies")
    ap.add_argument("--duration", type=float, help="phase (b) seconds per concurrency")
    ap.add_argument("--local-reps", type=int, help="phase (c) repetitions")
    ap.add_argument("--keep", action="store_true", help="keep the data dir (logs)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    subs = args.subs or (4 if args.quick else 10)
    PLAIN_JOBS[0] = args.plain_jobs or (10 if args.quick else 30)
    concurrencies = args.concurrency or [4, 8]
    duration = args.duration or (5.0 if args.quick else 15.0)
    reps = args.local_reps or (3 if args.quick else 10)

    settings = get_settings()
    lanes = os.environ.get("WARDEN_WORKER_LANES", str(settings.worker_lanes))
    data_dir = Path(tempfile.mkdtemp(prefix="warden-bench-judge-"))
    # Workers warming the interpreters at start compile for tens of seconds (C needs none).
    cluster = JudgeCluster(data_dir, {"warm_languages": "false"})
    figures: dict[str, Any] = {
        "cpus": os.cpu_count(), "worker_lanes": int(lanes),
        "fuel_per_second": settings.judge_fuel_per_second,
        "loadavg_before": os.getloadavg(),
    }
    print(f"warden judge bench: {os.cpu_count()} CPUs, WARDEN_WORKER_LANES={lanes} (lanes "
          f"per worker), load average {os.getloadavg()[0]:.2f} before start; data {data_dir}")
    t_start = time.perf_counter()
    try:
        t0 = time.perf_counter()
        cluster.start(workers=1)
        print(f"cluster (1 worker) ready in {time.perf_counter() - t0:.1f} s: {cluster.pids()}")
        with cluster.http() as http:
            problem, blobs = aplusb_problem(100)
            upload(http, "aplusb100", problem, blobs)
            small, small_blobs = aplusb_problem(10, seed=2)
            upload(http, "aplusb10", small, small_blobs)
            print("(a) 100-test a+b over HTTP, C solution, submit-and-wait, one at a time")
            figures["a_1_worker"] = phase_a(cluster, http, subs, "1 worker", cold=True)
            cluster.add_worker()
            print(f"  (second worker started: {cluster.pids()})")
            figures["a_2_workers"] = phase_a(cluster, http, subs, "2 workers", cold=False)
            print(f"(b) throughput, 2 workers, 10-test a+b, closed loop for {duration:.0f} s")
            submit(http, "aplusb10", APLUSB)
            figures["b_throughput"] = [phase_b(cluster, c, duration) for c in concurrencies]
        figures["loadavg_cluster_end"] = os.getloadavg()
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    print(f"(c) in-process judge_locally (SourceRunner(Sandbox())), {reps} reps")
    figures["c_local"] = phase_c(reps)
    figures["loadavg_after"] = os.getloadavg()
    figures["elapsed_s"] = time.perf_counter() - t_start

    a1, a2 = figures["a_1_worker"], figures["a_2_workers"]
    print()
    print(f"summary (lanes per worker {lanes}; load average before "
          f"{figures['loadavg_before'][0]:.2f}, after {figures['loadavg_after'][0]:.2f})")
    rows = [
        ("cold first submission, 100 tests, 1 worker: server s",
         f"{a1['cold']['server_s']:.3f}"),
        ("  of which its compile job, s", f"{a1['cold']['compile_s']:.3f}"),
        ("  client wall, s", f"{a1['cold']['client_s']:.3f}"),
    ]
    for name, a in (("1 worker", a1), ("2 workers", a2)):
        rows += [
            (f"100 tests, {name}: client p50 s", f"{a['client_p50_s']:.3f}"),
            (f"100 tests, {name}: server p50 s", f"{a['server_p50_s']:.3f}"),
            (f"100 tests, {name}: compile job p50 ms", f"{a['compile_p50_s'] * 1e3:.1f}"),
            (f"100 tests, {name}: per test ms (total / 100)", f"{a['per_test_total_ms']:.2f}"),
            (f"100 tests, {name}: in-sandbox per test ms", f"{a['sandbox_wall_per_test_ms']:.3f}"),
            (f"100 tests, {name}: overhead per test ms (excl. compile, sandbox)",
             f"{a['overhead_per_test_ms']:.2f}"),
            (f"100 tests, {name}: distinct workers per submission",
             str(a["distinct_workers"])),
            (f"plain C job ({name}) p50 ms", f"{a['plain_job']['p50_s'] * 1e3:.2f}"),
        ]
    for b in figures["b_throughput"]:
        rows.append((f"throughput 2 workers, 10 tests, c={b['concurrency']}: subs/s",
                     f"{b['subs_per_s']:.2f} ({b['tests_per_s']:.1f} tests/s)"))
    for label, fig in figures["c_local"].items():
        if isinstance(fig, dict):
            rows.append((f"in-process {label}: ms/test", f"{fig['per_test_ms']:.2f}"))
    rows.append(("in-process interactive / plain per test (lanes=1)",
                 f"{figures['c_local']['interactive_over_plain_lanes1']:.2f}x"))
    width = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    print(f"total bench time {figures['elapsed_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
