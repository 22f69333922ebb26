"""Sandbox core benchmark: prints figures, asserts nothing (targets live in the README).

1. Hello-world from a cached module, in-process, vs a native hello spawned in a
   ``bwrap --unshare-all`` jail (what namespace-sandbox judges pay per run).
2. A compute-bound sieve under fuel vs the same C compiled natively with gcc -O2.

Usage: python bench/bench_sandbox.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sandboxes.sandbox import Sandbox
from sandboxes.schema import Grants, Limits, RunStatus
from sandboxes.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SIEVE_ARGS = ["10000000", "5"]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_wasm_hello(sandbox: Sandbox, runs: int) -> list[float]:
    source = (FIXTURES / "hello.wasm").read_bytes()
    limits, grants = Limits(), Grants()
    prepared = sandbox.prepare(source, limits)
    for _ in range(200):
        sandbox.run_prepared(prepared, limits, grants)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = sandbox.run_prepared(prepared, limits, grants)
        samples.append(time.perf_counter() - t0)
        assert result.status is RunStatus.OK and result.stdout == b"hello\n"
    return samples


def bwrap_command(binary: Path) -> list[str]:
    ro = [a for d in ("/usr", "/lib", "/lib64", "/bin") if Path(d).exists()
          for a in ("--ro-bind", d, d)]
    return ["bwrap", "--unshare-all", "--die-with-parent", *ro,
            "--ro-bind", str(binary), "/hello", "--dev", "/dev", "--proc", "/proc", "/hello"]


def bench_native_jailed(binary: Path, runs: int) -> list[float]:
    cmd = bwrap_command(binary)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, check=True).stdout
        samples.append(time.perf_counter() - t0)
        assert out == b"hello\n"
    return samples


def gcc(source: Path, out: Path) -> None:
    subprocess.run(["gcc", "-O2", "-o", str(out), str(source)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--jailed-runs", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="warden-bench-"))
    sandbox = Sandbox(Settings(data_dir=work / "data"))
    try:
        py = sys.version.split()[0]
        print(f"# Warden sandbox benchmark ({os.cpu_count()} cores, Python {py})")
        wasm = bench_wasm_hello(sandbox, args.runs)
        print(f"wasm hello (cached module, in-process): mean {statistics.mean(wasm)*1e3:.3f} ms"
              f"  p50 {percentile(wasm, .5)*1e3:.3f} ms  p99 {percentile(wasm, .99)*1e3:.3f} ms"
              f"  ({args.runs} runs)")
        native_hello = work / "hello"
        gcc(FIXTURES / "c" / "hello.c", native_hello)
        if shutil.which("bwrap"):
            jailed = bench_native_jailed(native_hello, args.jailed_runs)
            print(f"native hello in bwrap --unshare-all: mean {statistics.mean(jailed)*1e3:.3f} ms"
                  f"  p50 {percentile(jailed, .5)*1e3:.3f} ms  ({args.jailed_runs} runs)")
            print(f"speed-up (p50): {percentile(jailed, .5) / percentile(wasm, .5):.1f}x")
        else:
            print("bwrap not installed: jailed comparison skipped (run scripts/install.sh)")

        sieve_wasm = (FIXTURES / "sieve.wasm").read_bytes()
        native_sieve = work / "sieve"
        gcc(FIXTURES / "c" / "sieve.c", native_sieve)
        limits = Limits(fuel=10**12, wall_time_s=120, memory_bytes="256MiB")
        grants = Grants(args=SIEVE_ARGS)
        prepared = sandbox.prepare(sieve_wasm, limits)
        wasm_times, native_times = [], []
        for _ in range(3):
            result = sandbox.run_prepared(prepared, limits, grants)
            assert result.status is RunStatus.OK, result
            wasm_times.append(result.wall_time_s)
            t0 = time.perf_counter()
            native_out = subprocess.run([str(native_sieve), *SIEVE_ARGS], capture_output=True,
                                        check=True).stdout
            native_times.append(time.perf_counter() - t0)
            assert native_out == result.stdout
        w, n = min(wasm_times), min(native_times)
        print(f"sieve 10^7 x5: wasm under fuel {w*1e3:.0f} ms (fuel {result.fuel_used:,}),"
              f" native gcc -O2 {n*1e3:.0f} ms, ratio {w / n:.2f}x")
    finally:
        sandbox.compiler.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
