"""Compatibility-API benchmark: what one small run costs through each way in, and callbacks.

Starts its own cluster with bench_judge.py's ``JudgeCluster`` (embedded Redis on a free
port, ``python -m service.cli api`` and 2 ``worker`` processes configured through WARDEN_*
variables, an admin key from ``ensure_first_key``, quotas lifted;
WARDEN_CALLBACK_ALLOWED_NETWORKS=127.0.0.2/32 so callbacks may reach a receiver on
127.0.0.2), then times, one request at a time, a Python program ``print(int(input())+1)``
and a C one (scanf/printf) with stdin "41\\n" (the answer "42\\n" is checked every time):

(1) Warden native: ``POST /v1/jobs?wait=30`` with ``{"language", "source", "grants":
    {"stdin": base64}}``, ``Authorization: Bearer <key>``.
(2) Judge0-compatible, waiting: ``POST /judge0/submissions?wait=true&base64_encoded=false``
    with ``{"source_code", "language_id": 71 | 50, "stdin", "expected_output"}``,
    ``X-Auth-Token: <key>``; status id 3 (Accepted) expected.
(3) Judge0 async: the same POST without ``wait`` (a token), then ``GET
    /judge0/submissions/{token}`` at once and every 0.1 s until the status id is > 2, as the
    official SDK polls: time from the POST to the final answer, and the number of GETs.
(4) Piston-compatible: ``POST /piston/api/v2/execute`` with ``{"language": "python" | "c",
    "version": "*", "files": [{"content"}], "stdin"}``, ``Authorization: <key>``; run.stdout
    checked.
(5) Callback latency: a threaded HTTP receiver on 127.0.0.2 records when each request
    arrives; ``--reps`` WAT hello jobs with ``callback_url`` http://127.0.0.2:PORT/cb?i=N,
    one at a time: arrival time minus the job's ``finished_at`` (GET /v1/jobs/{id}). Each
    callback must arrive exactly once and the record's ``callback.state`` be "delivered".
    API processes claim due callbacks every 0.2 s (``POLL_S``), so the figure is mostly
    that wait: each job is submitted after a random pause of 0 to ``POLL_S`` (seeded), or
    jobs sent back to back would end just after a claim each time and all wait ~0.2 s.

Each figure is p50 and p90 of ``--reps`` sequential requests after 3 warm-up requests (the
first run of each language on the fresh data dir, which compiles, is shown apart as
"cold"). The machine may be shared (the load average is printed at start and end): read the
figures as this box's, not as a target. Prints figures; asserts only answers (never timing).

Usage: python bench/bench_compat.py [--reps 30] [--json out.json] [--keep]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from bench_judge import JudgeCluster, p50, percentile, unix  # noqa: E402

from service.callbacks.dispatcher import POLL_S  # noqa: E402
from tests.wat_modules import hello  # noqa: E402

WORKERS = 2
WARMUP = 3
RECEIVER_HOST = "127.0.0.2"
STDIN, ANSWER = "41\n", "42\n"
SOURCES = {
    "python": "print(int(input())+1)\n",
    "c": "#include <stdio.h>\n"
         "int main(void) {\n"
         "    int n;\n"
         "    if (scanf(\"%d\", &n) != 1) return 1;\n"
         "    printf(\"%d\\n\", n + 1);\n"
         "    return 0;\n"
         "}\n",
}
JUDGE0_IDS = {"python": 71, "c": 50}
HELLO_WAT = hello("hello from a callback\n")
TERMINAL = ("finished", "failed", "cancelled")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def figures_of(samples: list[float]) -> dict[str, float]:
    """p50 / p90 / max of seconds, in ms."""
    return {"n": len(samples), "p50_ms": p50(samples) * 1e3,
            "p90_ms": percentile(samples, 0.9) * 1e3, "max_ms": max(samples) * 1e3}


def timed(reps: int, once: Callable[[], int | None]) -> tuple[list[float], list[int]]:
    """``WARMUP`` calls, then ``reps`` timed ones: their seconds, and what each returned
    (a count of polls, for the phases that poll)."""
    for _ in range(WARMUP):
        once()
    times: list[float] = []
    counts: list[int] = []
    for _ in range(reps):
        t0 = time.perf_counter()
        count = once()
        times.append(time.perf_counter() - t0)
        if count is not None:
            counts.append(count)
    return times, counts


# -- the ways in --------------------------------------------------------------------------
def check_native(record: dict[str, Any]) -> None:
    assert record["state"] == "finished", record
    result = record["result"]
    assert result["status"] == "ok", result
    assert base64.b64decode(result["stdout"]) == ANSWER.encode(), result


def cold_native(http: httpx.Client, language: str) -> float:
    """The first run of ``language`` on this data dir (it compiles): may outlast a wait."""
    body = {"language": language, "source": SOURCES[language],
            "grants": {"stdin": b64(STDIN)}}
    t0 = time.perf_counter()
    r = http.post("/v1/jobs", params={"wait": 60}, json=body)
    assert r.status_code in (200, 202), r.text
    record = r.json()
    deadline = time.monotonic() + 300
    while record["state"] not in TERMINAL:
        assert time.monotonic() < deadline, record
        r = http.get(f"/v1/jobs/{record['id']}", params={"wait": 60})
        assert r.status_code in (200, 202), r.text
        record = r.json()
    check_native(record)
    return time.perf_counter() - t0


def native(http: httpx.Client, language: str) -> Callable[[], None]:
    body = {"language": language, "source": SOURCES[language],
            "grants": {"stdin": b64(STDIN)}}

    def once() -> None:
        r = http.post("/v1/jobs", params={"wait": 30}, json=body)
        assert r.status_code == 200, r.text
        check_native(r.json())

    return once


def judge0_body(language: str) -> dict[str, Any]:
    return {"source_code": SOURCES[language], "language_id": JUDGE0_IDS[language],
            "stdin": STDIN, "expected_output": ANSWER}


def check_judge0(sub: dict[str, Any]) -> None:
    assert sub["status"]["id"] == 3, sub
    assert sub["stdout"] == ANSWER, sub


def judge0_wait(j0: httpx.Client, language: str) -> Callable[[], None]:
    body = judge0_body(language)

    def once() -> None:
        r = j0.post("/judge0/submissions",
                    params={"wait": "true", "base64_encoded": "false"}, json=body)
        assert r.status_code == 201, r.text
        check_judge0(r.json())

    return once


def judge0_async(j0: httpx.Client, language: str) -> Callable[[], int]:
    body = judge0_body(language)

    def once() -> int:
        r = j0.post("/judge0/submissions", params={"base64_encoded": "false"}, json=body)
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        polls = 0
        deadline = time.monotonic() + 60
        while True:
            r = j0.get(f"/judge0/submissions/{token}", params={"base64_encoded": "false"})
            polls += 1
            assert r.status_code == 200, r.text
            sub = r.json()
            if sub["status"]["id"] > 2:
                check_judge0(sub)
                return polls
            assert time.monotonic() < deadline, sub
            time.sleep(0.1)

    return once


def piston(pc: httpx.Client, language: str) -> Callable[[], None]:
    body = {"language": language, "version": "*", "files": [{"content": SOURCES[language]}],
            "stdin": STDIN}

    def once() -> None:
        r = pc.post("/piston/api/v2/execute", json=body)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["run"]["stdout"] == ANSWER, answer
        assert answer["run"]["code"] == 0, answer

    return once


# -- callbacks ----------------------------------------------------------------------------
class Receiver:
    """A threaded HTTP server on ``host`` that answers 200 and records, per ``?i=``, when
    each request arrived (time.time()) and the job id its body names."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.arrivals: dict[str, list[tuple[float, str | None]]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                at = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                key = parse_qs(urlsplit(self.path).query).get("i", ["?"])[0]
                try:
                    job_id = json.loads(body).get("id")
                except ValueError:
                    job_id = None
                with receiver.lock:
                    receiver.arrivals.setdefault(key, []).append((at, job_id))

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, i: str) -> str:
        return f"http://{self.host}:{self.server.server_address[1]}/cb?i={i}"

    def wait_for(self, i: str, timeout_s: float = 30) -> tuple[float, str | None]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                got = self.arrivals.get(i)
                if got:
                    return got[0]
            time.sleep(0.005)
        raise AssertionError(f"callback {i} did not arrive in {timeout_s:g} s")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def callback_phase(http: httpx.Client, receiver: Receiver, reps: int) -> dict[str, Any]:
    rng = random.Random(1)

    def once(i: str) -> tuple[float, dict[str, Any]]:
        time.sleep(rng.uniform(0, POLL_S))  # out of step with the deliverer's claims
        r = http.post("/v1/jobs", params={"wait": 30},
                      json={"wat": HELLO_WAT, "callback_url": receiver.url(i)})
        assert r.status_code == 200, r.text
        job_id = r.json()["id"]
        arrived, named = receiver.wait_for(i)
        assert named == job_id, (i, named, job_id)
        deadline = time.monotonic() + 30
        while True:  # the attempt is recorded just after the receiver has answered
            r = http.get(f"/v1/jobs/{job_id}")
            assert r.status_code == 200, r.text
            record = r.json()
            if record["callback"] and record["callback"]["state"] != "pending":
                break
            assert time.monotonic() < deadline, record
            time.sleep(0.01)
        assert record["state"] == "finished", record
        assert base64.b64decode(record["result"]["stdout"]) == b"hello from a callback\n"
        assert record["callback"]["state"] == "delivered", record["callback"]
        return arrived - unix(record["finished_at"]), record

    for w in range(WARMUP):
        once(f"warmup-{w}")
    lags, attempts = [], []
    for n in range(reps):
        lag, record = once(str(n))
        lags.append(lag)
        attempts.append(len(record["callback"]["attempts"]))
    # A retry would come WARDEN_CALLBACK_BACKOFF_S (2 s by default) after a failed attempt.
    time.sleep(2.5)
    with receiver.lock:
        counts = {i: len(got) for i, got in receiver.arrivals.items()}
    expected = {str(n) for n in range(reps)} | {f"warmup-{w}" for w in range(WARMUP)}
    assert set(counts) == expected, sorted(set(counts) ^ expected)
    twice = {i: c for i, c in counts.items() if c != 1}
    assert not twice, f"callbacks not delivered exactly once: {twice}"
    return {**figures_of(lags), "min_ms": min(lags) * 1e3, "poll_s": POLL_S,
            "attempts_max": max(attempts), "arrivals_each": 1}


# -- main ---------------------------------------------------------------------------------
def dump_logs(data_dir: Path) -> None:
    for log in sorted(data_dir.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-30:]
        print(f"--- {log.name} (last {len(lines)} lines)", file=sys.stderr)
        for line in lines:
            print(f"    {line}", file=sys.stderr)


def fmt_load(load: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in load)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=30, help="timed requests per figure")
    ap.add_argument("--keep", action="store_true", help="keep the data dir (logs)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    reps = max(args.reps, 1)

    data_dir = Path(tempfile.mkdtemp(prefix="warden-bench-compat-"))
    # Workers warming the interpreters at start compile for tens of seconds: off, the
    # first run of each language is timed apart instead ("cold").
    cluster = JudgeCluster(data_dir, {"warm_languages": "false",
                                      "callback_allowed_networks": f"{RECEIVER_HOST}/32"})
    load_start = os.getloadavg()
    figures: dict[str, Any] = {"cpus": os.cpu_count(), "workers": WORKERS, "reps": reps,
                               "warmup": WARMUP, "loadavg_start": load_start}
    print(f"warden compat bench: {os.cpu_count()} CPUs, {WORKERS} workers, {reps} reps after "
          f"{WARMUP} warm-ups; load average at start {fmt_load(load_start)}; data {data_dir}")
    t_start = time.perf_counter()
    receiver: Receiver | None = None
    ok = False
    try:
        t0 = time.perf_counter()
        cluster.start(workers=WORKERS)
        print(f"cluster ready in {time.perf_counter() - t0:.1f} s: {cluster.pids()}")
        receiver = Receiver(RECEIVER_HOST)
        with cluster.http() as http, \
                httpx.Client(base_url=cluster.base, timeout=120,
                             headers={"X-Auth-Token": cluster.key}) as j0, \
                httpx.Client(base_url=cluster.base, timeout=120,
                             headers={"Authorization": cluster.key}) as pc:
            figures["cold_first_run_ms"] = {}
            for language in SOURCES:
                cold = cold_native(http, language)
                figures["cold_first_run_ms"][language] = cold * 1e3
                print(f"  cold: first {language} job on the fresh data dir "
                      f"{cold * 1e3:.0f} ms")
            ways: list[tuple[str, str, Callable[[str], Callable[[], int | None]]]] = [
                ("native", "Warden POST /v1/jobs?wait=30", lambda lang: native(http, lang)),
                ("judge0_wait", "Judge0 POST ?wait=true",
                 lambda lang: judge0_wait(j0, lang)),
                ("judge0_async", "Judge0 POST + GET every 0.1 s",
                 lambda lang: judge0_async(j0, lang)),
                ("piston", "Piston POST /api/v2/execute", lambda lang: piston(pc, lang)),
            ]
            for key, label, make in ways:
                figures[key] = {}
                for language in SOURCES:
                    times, polls = timed(reps, make(language))
                    fig = figures_of(times)
                    if polls:
                        fig |= {"polls_p50": p50([float(p) for p in polls]),
                                "polls_max": max(polls), "polls_min": min(polls)}
                    figures[key][language] = fig
                    extra = (f", polls p50 {fig['polls_p50']:g} [{fig['polls_min']}.."
                             f"{fig['polls_max']}]") if polls else ""
                    print(f"  {label}, {language}: p50 {fig['p50_ms']:.1f} ms, p90 "
                          f"{fig['p90_ms']:.1f} ms, max {fig['max_ms']:.1f} ms{extra}")
            cb = callback_phase(http, receiver, reps)
            figures["callback"] = cb
            print(f"  callback (arrival - finished_at), {reps} WAT jobs: p50 "
                  f"{cb['p50_ms']:.1f} ms, p90 {cb['p90_ms']:.1f} ms, max {cb['max_ms']:.1f}"
                  f" ms; each arrived once, all delivered (attempts max {cb['attempts_max']}); the "
                  f"deliverer claims every {POLL_S:g} s")
        ok = True
    finally:
        if receiver is not None:
            receiver.close()
        cluster.stop()
        if not ok:
            dump_logs(data_dir)
        if args.keep:
            print(f"data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    load_end = os.getloadavg()
    figures["loadavg_end"] = load_end
    figures["elapsed_s"] = time.perf_counter() - t_start

    print()
    print(f"summary, ms ({reps} sequential requests each after {WARMUP} warm-ups; "
          f"{WORKERS} workers; load average at start {fmt_load(load_start)}, at end "
          f"{fmt_load(load_end)})")
    header = ("", "python p50", "python p90", "c p50", "c p90")
    rows: list[tuple[str, ...]] = [header]
    labels = {"native": "Warden native POST /v1/jobs?wait=30",
              "judge0_wait": "Judge0 POST /submissions?wait=true",
              "judge0_async": "Judge0 async (POST, GET every 0.1 s)",
              "piston": "Piston POST /api/v2/execute"}
    for key, label in labels.items():
        py, c = figures[key]["python"], figures[key]["c"]
        rows.append((label, f"{py['p50_ms']:.1f}", f"{py['p90_ms']:.1f}",
                     f"{c['p50_ms']:.1f}", f"{c['p90_ms']:.1f}"))
    py, c = figures["judge0_async"]["python"], figures["judge0_async"]["c"]
    rows.append(("  Judge0 async: GETs per answer p50 (max)",
                 f"{py['polls_p50']:g} ({py['polls_max']})", "",
                 f"{c['polls_p50']:g} ({c['polls_max']})", ""))
    cold = figures["cold_first_run_ms"]
    rows.append(("cold first native run (fresh data dir)", f"{cold['python']:.0f}", "",
                 f"{cold['c']:.0f}", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  " + row[0].ljust(widths[0]) + "".join(
            f"  {cell:>{w}}" for cell, w in zip(row[1:], widths[1:], strict=True)))
    cb = figures["callback"]
    print(f"  callback latency (arrival - finished_at), {cb['n']} WAT jobs: p50 "
          f"{cb['p50_ms']:.1f}, p90 {cb['p90_ms']:.1f}, max {cb['max_ms']:.1f} "
          f"(min {cb['min_ms']:.1f}); each arrived exactly once, state delivered "
          f"(deliverer claims every {POLL_S * 1e3:.0f} ms)")
    print(f"total bench time {figures['elapsed_s']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
