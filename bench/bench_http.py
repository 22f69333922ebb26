"""HTTP benchmark of the whole pipeline: API + Redis + workers, submit-and-wait of a hello job.

Starts its own cluster (embedded Redis on a free port, ``python -m service.cli api`` and N
``python -m service.cli worker`` processes, configured through WARDEN_* variables), warms it
up, then measures:

(a) latency of ``POST /v1/jobs?wait=30`` (hello.wasm) at fixed concurrencies: p50/p90/p99;
(b) sustained throughput (jobs/s) over a fixed duration at a higher concurrency;
(c) worker RSS sampled every 1,000 jobs over ``--rss-jobs`` jobs.

Every phase also reports CPU milliseconds per job of each process (API, workers, Redis, the
load generator itself) from /proc: on 2 cores, 500 jobs/s needs ≤ 4 ms of CPU per job in
total, so this is the budget to read. The load generator is a minimal asyncio HTTP/1.1
keep-alive client (prebuilt request bytes, no parsing beyond status line and
Content-Length); its own CPU per request is printed so you can see it is not the
bottleneck. ``--wrk`` also runs the throughput phase with ``wrk`` (C) when it is installed.

Prints figures; asserts nothing but the answers' correctness (targets: issue "The service").

Usage: python bench/bench_http.py [--workers 2] [--concurrency 32] [--duration 10]
       [--throughput-runs 2] [--latency-requests 1000] [--rss-jobs 10000] [--wrk]
       [--hide-extras] [--set NAME=VALUE] [--json out.json]
Figures and method: docs/notes/http-performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from tenancy.bootstrap import ensure_first_key  # noqa: E402
from tenancy.quotas import Quotas  # noqa: E402
from tenancy.registry import TenantRegistry  # noqa: E402
from workers.processes import stop_gracefully  # noqa: E402
from workers.redis_server import EmbeddedRedis, free_port  # noqa: E402

HELLO = ROOT / "tests" / "fixtures" / "hello.wasm"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (its threads included), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# -- the cluster --------------------------------------------------------------------------
class BenchCluster:
    """Embedded Redis + API + N workers as processes; logs go to files in the data dir."""

    def __init__(self, data_dir: Path, workers: int, settings: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.n_workers = workers
        self.redis = EmbeddedRedis(data_dir / "redis")
        self.port = free_port()
        self.settings = settings
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self._logs: list[object] = []
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

    def _get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def start(self) -> None:
        self.redis.start()
        client = redis.Redis.from_url(self.redis.url)
        created = ensure_first_key(TenantRegistry(client), self.data_dir)  # as `warden up`
        assert created is not None, "a fresh data dir has no tenant yet"
        # Quotas on, sized so the load is measured rather than refused: every request
        # still goes through the rate, queue, fuel and stored-bytes checks.
        registry = TenantRegistry(client)
        registry.set_quotas(created.tenant, BENCH_QUOTAS)
        self.key = created.secret
        # Three tenants of weights 1, 2, 3 for the share phase.
        self.share_keys: dict[str, str] = {}
        for weight in (1, 2, 3):
            name = f"weight-{weight}"
            registry.create_tenant(name, quotas=BENCH_QUOTAS.model_copy(
                update={"weight": weight}))
            self.share_keys[name] = registry.create_key(name).secret
        client.close()
        self.api = self._spawn("api", "api")
        self.workers = [self._spawn(f"worker-{i}", "worker") for i in range(self.n_workers)]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status, body = self._get("/readyz")
                if status == 200 and json.loads(body)["workers"] >= self.n_workers:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"cluster did not become ready; see logs in {self.data_dir}")

    def pids(self) -> dict[str, int]:
        out = {"api": self.api.pid if self.api else 0,
               "redis": self.redis.proc.pid if self.redis.proc else 0}
        out.update({f"worker-{i}": p.pid for i, p in enumerate(self.workers)})
        return out

    def cpu(self) -> dict[str, float]:
        return {name: proc_cpu_s(pid) for name, pid in self.pids().items()}

    def worker_rss_kib(self) -> list[int]:
        return [proc_rss_kib(p.pid) for p in self.workers]

    def stop(self) -> None:
        stop_gracefully(self.workers, 15)
        if self.api is not None:
            stop_gracefully([self.api], 10)
        self.redis.stop()
        for log in self._logs:
            log.close()  # type: ignore[attr-defined]


# -- the load generator -------------------------------------------------------------------
def hello_request(port: int, key: str, wait_s: int = 30,
                  job: dict[str, object] | None = None) -> tuple[bytes, bytes]:
    body = json.dumps(job or {"wasm_base64": base64.b64encode(HELLO.read_bytes()).decode()}
                      ).encode()
    head = (f"POST /v1/jobs?wait={wait_s} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    return head + body, body


class BadAnswerError(Exception):
    pass


class Conn:
    """One keep-alive HTTP/1.1 connection that sends a prebuilt request and reads the reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = -1
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
                break
        if length < 0:
            raise BadAnswerError(f"no Content-Length in {head!r}")
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def check_answer(status: int, body: bytes) -> None:
    # Cheap checks on bytes (the load generator must stay light): full parse on the first.
    if status != 200 or b'"state":"finished"' not in body or b'"status":"ok"' not in body:
        raise BadAnswerError(f"{status} {body[:300]!r}")


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    elapsed_s: float = 0.0
    loadgen_cpu_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return len(self.latencies)


async def drive(port: int, request: bytes, concurrency: int, *, total: int = 0,
                duration_s: float = 0.0, on_done: object = None) -> Run:
    """Closed loop: `concurrency` connections, each sends the next request when answered.

    Stops after `total` answers, or at `duration_s` (answers in flight then are still
    counted only if they arrive before the deadline)."""
    run = Run()
    conns = [await Conn.open(port) for _ in range(concurrency)]
    issued = 0
    deadline = 0.0

    async def loop(conn: Conn) -> None:
        nonlocal issued
        while True:
            if total:
                if issued >= total:
                    return
                issued += 1
            elif time.perf_counter() >= deadline:
                return
            t0 = time.perf_counter()
            try:
                status, body = await conn.send(request)
                check_answer(status, body)
            except (BadAnswerError, OSError, asyncio.IncompleteReadError, ValueError) as err:
                run.errors += 1
                run.first_error = run.first_error or repr(err)
                if isinstance(err, OSError | asyncio.IncompleteReadError):
                    return
                continue
            t1 = time.perf_counter()
            if total or t1 <= deadline:
                run.latencies.append(t1 - t0)
                if on_done is not None:
                    on_done(run.done)  # type: ignore[operator]

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    deadline = t0 + duration_s
    await asyncio.gather(*(loop(c) for c in conns))
    run.elapsed_s = (min(time.perf_counter(), deadline) if duration_s
                     else time.perf_counter()) - t0
    run.loadgen_cpu_s = time.process_time() - cpu0
    for c in conns:
        c.close()
    return run


def measure(cluster: BenchCluster, request: bytes, concurrency: int, **kw: object) -> Run:
    before = cluster.cpu()
    run = asyncio.run(drive(cluster.port, request, concurrency, **kw))  # type: ignore[arg-type]
    after = cluster.cpu()
    run.cpu_s = {k: after[k] - before[k] for k in after}
    return run


# -- reporting ----------------------------------------------------------------------------
def ms(x: float) -> str:
    return f"{x * 1e3:6.2f}"


def cpu_line(run: Run) -> str:
    n = max(run.done, 1)
    workers = sum(v for k, v in run.cpu_s.items() if k.startswith("worker"))
    parts = [f"api {run.cpu_s.get('api', 0) / n * 1e3:.2f}",
             f"workers {workers / n * 1e3:.2f}",
             f"redis {run.cpu_s.get('redis', 0) / n * 1e3:.2f}",
             f"loadgen {run.loadgen_cpu_s / n * 1e3:.2f}"]
    total = sum(run.cpu_s.values()) + run.loadgen_cpu_s
    return f"CPU ms/job: {', '.join(parts)}; total {total / n * 1e3:.2f}"


def summary(run: Run) -> dict[str, object]:
    lat = run.latencies or [0.0]
    n = max(run.done, 1)
    return {
        "jobs": run.done, "errors": run.errors, "elapsed_s": round(run.elapsed_s, 3),
        "jobs_per_s": round(run.done / run.elapsed_s, 1) if run.elapsed_s else 0,
        "p50_ms": round(percentile(lat, 0.50) * 1e3, 3),
        "p90_ms": round(percentile(lat, 0.90) * 1e3, 3),
        "p99_ms": round(percentile(lat, 0.99) * 1e3, 3),
        "max_ms": round(max(lat) * 1e3, 3),
        "cpu_ms_per_job": {k: round(v / n * 1e3, 3) for k, v in run.cpu_s.items()}
        | {"loadgen": round(run.loadgen_cpu_s / n * 1e3, 3)},
    }


def print_run(label: str, run: Run) -> None:
    lat = run.latencies or [0.0]
    print(f"  {label}: {run.done} jobs in {run.elapsed_s:.2f} s = "
          f"{run.done / max(run.elapsed_s, 1e-9):.0f} jobs/s; latency ms p50 "
          f"{ms(percentile(lat, .5))} p90 {ms(percentile(lat, .9))} "
          f"p99 {ms(percentile(lat, .99))} max {ms(max(lat))}; errors {run.errors}"
          + (f" (first: {run.first_error})" if run.errors else ""))
    print(f"    {cpu_line(run)}")


# -- wrk ----------------------------------------------------------------------------------
def run_wrk(cluster: BenchCluster, body: bytes, concurrency: int, duration_s: float,
            data_dir: Path) -> dict[str, object] | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        print("  wrk: not installed (apt-get install wrk); skipped")
        return None
    body_file = data_dir / "body.json"
    body_file.write_bytes(body)
    script = data_dir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {cluster.key}"\n'
        f'local f = io.open("{body_file}", "rb"); wrk.body = f:read("*a"); f:close()\n'
    )
    before = cluster.cpu()
    ru0 = os.times()
    out = subprocess.run(
        [wrk, "-t1", f"-c{concurrency}", f"-d{int(duration_s)}s", "--latency", "-s",
         str(script), cluster.base + "/v1/jobs?wait=30"],
        capture_output=True, text=True, check=False,
    ).stdout
    ru1 = os.times()
    after = cluster.cpu()
    wrk_cpu = (ru1.children_user - ru0.children_user) + (ru1.children_system - ru0.children_system)
    fig: dict[str, object] = {}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            fig["jobs_per_s"] = float(parts[1])
        elif parts[:1] in (["50%"], ["90%"], ["99%"]):
            fig[f"p{parts[0][:-1]}"] = parts[1]
        elif "requests in" in line:
            fig["requests"] = int(parts[0])
        elif line.strip().startswith("Non-2xx"):
            fig["non_2xx"] = int(parts[-1])
    n = max(int(fig.get("requests", 1)), 1)  # type: ignore[call-overload]
    fig["cpu_ms_per_job"] = {k: round((after[k] - before[k]) / n * 1e3, 3) for k in after}
    fig["cpu_ms_per_job"]["wrk"] = round(wrk_cpu / n * 1e3, 3)  # type: ignore[index]
    print(f"  wrk -c{concurrency} {duration_s:.0f}s: {fig.get('jobs_per_s')} jobs/s, "
          f"latency p50 {fig.get('p50')} p90 {fig.get('p90')} p99 {fig.get('p99')}, "
          f"non-2xx {fig.get('non_2xx', 0)}")
    print(f"    CPU ms/job: {fig['cpu_ms_per_job']}")
    return fig


# -- main ---------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2, help="worker processes")
    ap.add_argument("--latency-concurrency", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--latency-requests", type=int, default=1000, help="per concurrency")
    ap.add_argument("--concurrency", type=int, default=32, help="throughput phase")
    ap.add_argument("--duration", type=float, default=10.0, help="throughput phase, s")
    ap.add_argument("--throughput-runs", type=int, default=2,
                    help="throughput phases in a row (the machine is shared: report each)")
    ap.add_argument("--rss-jobs", "--jobs", dest="rss_jobs", type=int, default=10_000,
                    help="jobs in the RSS phase (0: skip)")
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--wrk", action="store_true", help="also run the throughput phase in wrk")
    ap.add_argument("--keep", action="store_true", help="keep the data dir (logs)")
    ap.add_argument("--hide-extras", action="store_true",
                    help="run the cluster as if uvloop, httptools and hiredis were not "
                         "installed (uvicorn and redis-py pick them up when they are)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="extra WARDEN_NAME=VALUE for the cluster (e.g. --set lease_s=10)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--share-duration", type=float, default=8.0,
                    help="3-tenant share phase, s (0: skip)")
    ap.add_argument("--share-concurrency", type=int, default=12, help="per tenant")
    args = ap.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="warden-bench-http-"))
    if args.hide_extras:
        stubs = data_dir / "hide-extras"
        stubs.mkdir()
        for name in EXTRAS:
            (stubs / f"{name}.py").write_text('raise ImportError("hidden by bench_http")\n')
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(stubs), os.environ.get("PYTHONPATH")]))
    # Workers warming the source-language toolchains at start compile for tens of seconds:
    # off by default here (module jobs only), or it lands in the figures.
    settings = {"warm_languages": "false", **dict(s.split("=", 1) for s in args.set)}
    cluster = BenchCluster(data_dir, args.workers, settings)
    figures: dict[str, object] = {
        "workers": args.workers, "cpus": os.cpu_count(), "extras": _extras(args.hide_extras),
        "loadavg_before": os.getloadavg()[0],
    }
    print(f"warden HTTP bench: {args.workers} worker(s), {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} before start; data {data_dir}")
    print(f"speed-ups the cluster can use: {figures['extras'] or 'none'}")
    try:
        t0 = time.perf_counter()
        cluster.start()
        print(f"cluster ready in {time.perf_counter() - t0:.1f} s: {cluster.pids()}")
        request, body = hello_request(cluster.port, cluster.key)

        # One full parse to check what the cheap byte checks assume.
        first = asyncio.run(_one(cluster.port, request))
        record = json.loads(first)
        assert record["state"] == "finished", record
        assert base64.b64decode(record["result"]["stdout"]) == b"hello\n", record
        warm = measure(cluster, request, max(args.latency_concurrency), total=args.warmup)
        print_run(f"warm-up ({args.warmup} jobs, c={max(args.latency_concurrency)})", warm)

        print("(a) latency, submit-and-wait POST /v1/jobs?wait=30 of hello.wasm")
        lat: dict[str, object] = {}
        for c in args.latency_concurrency:
            run = measure(cluster, request, c, total=args.latency_requests)
            print_run(f"c={c:<3}", run)
            lat[f"c{c}"] = summary(run)
        figures["latency"] = lat

        print(f"(b) throughput, c={args.concurrency} for {args.duration:.0f} s "
              f"x{args.throughput_runs}")
        runs = []
        for i in range(args.throughput_runs):
            run = measure(cluster, request, args.concurrency, duration_s=args.duration)
            print_run(f"c={args.concurrency} run {i + 1}", run)
            lg = run.loadgen_cpu_s / max(run.done, 1) * 1e3
            print(f"    load generator: {lg:.3f} ms CPU per job "
                  f"({run.loadgen_cpu_s / max(run.elapsed_s, 1e-9) * 100:.0f}% of one core)")
            runs.append(summary(run))
        figures["throughput"] = max(runs, key=lambda r: r["jobs_per_s"])  # type: ignore[arg-type,return-value]
        figures["throughput_runs"] = runs
        if args.wrk:
            figures["throughput_wrk"] = run_wrk(cluster, body, args.concurrency,
                                                args.duration, data_dir)

        if args.share_duration:
            print(f"(d) throughput share of 3 tenants of weights 1, 2, 3 "
                  f"(c={args.share_concurrency} each, {args.share_duration:.0f} s)")
            figures["share"] = share_phase(cluster, args.share_concurrency,
                                           args.share_duration)

        if args.rss_jobs:
            print(f"(c) worker RSS over {args.rss_jobs} jobs (c={args.concurrency}), MiB")
            samples: list[tuple[int, list[int]]] = [(0, cluster.worker_rss_kib())]

            def sample(done: int) -> None:
                if done % 1000 == 0:
                    samples.append((done, cluster.worker_rss_kib()))

            run = measure(cluster, request, args.concurrency, total=args.rss_jobs,
                          on_done=sample)
            for done, rss in samples:
                print(f"    after {done:>6} jobs: " + "  ".join(f"{r / 1024:6.1f}" for r in rss))
            growth = [(b - a) / 1024 for a, b in zip(samples[1][1], samples[-1][1],
                                                     strict=True)] if len(samples) > 2 else []
            print(f"    growth from 1,000 to {samples[-1][0]} jobs (MiB): "
                  + ", ".join(f"{g:+.1f}" for g in growth))
            print_run("rss phase", run)
            figures["rss"] = {"samples_kib": samples, "run": summary(run)}
        figures["loadavg_after"] = os.getloadavg()[0]
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


EXTRAS = ("uvloop", "httptools", "hiredis")
SLEEP_WAT = """(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store8 (i32.const 8) (i32.const 0)) (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 20000000))
    (drop (call $poll (i32.const 0) (i32.const 128) (i32.const 1) (i32.const 256)))))"""
BENCH_QUOTAS = Quotas(submissions_per_minute=1_000_000, submission_burst=100_000,
                      reads_per_minute=10_000_000, read_burst=1_000_000, max_queued=100_000,
                      max_running=1_000)


def share_phase(cluster: BenchCluster, concurrency: int, duration_s: float
                ) -> dict[str, float]:
    """Each tenant keeps ``concurrency`` jobs in flight at once for ``duration_s``; each
    job sleeps 20 ms in the guest, so the workers' lanes (not the API) are the bottleneck
    and the fair scheduler decides who gets them (by weight)."""
    import concurrent.futures

    def load(key: str) -> Run:
        request, _ = hello_request(cluster.port, key, job={"wat": SLEEP_WAT})
        return measure(cluster, request, concurrency, duration_s=duration_s)

    with concurrent.futures.ThreadPoolExecutor(len(cluster.share_keys)) as pool:
        runs = dict(zip(cluster.share_keys, pool.map(load, cluster.share_keys.values()),
                        strict=True))
    total = sum(r.done for r in runs.values())
    for name, run in runs.items():
        print(f"    {name}: {run.done} jobs, {run.done / max(total, 1) * 100:.1f}% "
              f"({run.done / max(run.elapsed_s, 1e-9):.0f} jobs/s)")
    return {name: run.done / max(total, 1) for name, run in runs.items()}


def _extras(hidden: bool) -> list[str]:
    import importlib.util

    return [] if hidden else [n for n in EXTRAS if importlib.util.find_spec(n) is not None]


async def _one(port: int, request: bytes) -> bytes:
    conn = await Conn.open(port)
    try:
        status, body = await conn.send(request)
        check_answer(status, body)
        return body
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
