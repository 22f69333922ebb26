"""Sandbox core benchmark: figures only, no asserts (targets: docs/notes/core-performance.md).

1. Hello-world from a cached module, in-process (``Sandbox.prepare`` once, then
   ``Sandbox.run_prepared`` repeatedly), vs a native hello spawned in a
   ``bwrap --unshare-all`` jail (what namespace-sandbox judges pay per run). Several rounds:
   the machine is shared, so each round's p50 is printed and the spread is the figure.
2. A compute-bound sieve under Warden's limits vs the same C compiled natively with gcc -O2,
   interleaved: metered by Warden's fuel rewriter (what core modules get) and by
   wasmtime's fuel + epochs (components, modules the rewriter refuses). Both wall and CPU
   time (this thread's for wasm, the child's rusage for native): on a loaded 2-core box
   wall time mostly measures the neighbours. Then the same module under plain wasmtime
   engines with neither, fuel only, epochs only, both (what each mechanism costs).

Usage: python bench/bench_sandbox.py [--runs N] [--rounds R] [--no-breakdown]
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

import wasmtime

from sandboxes.runtime.sandbox import Sandbox
from sandboxes.schema import Grants, Limits, RunStatus
from sandboxes.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SIEVE_ARGS = ["10000000", "5"]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_wasm_hello(
    sandbox: Sandbox, runs: int, rounds: int
) -> tuple[list[float], list[float], list[float]]:
    """(wall samples, per-round wall p50s, per-round thread-CPU p50s)."""
    source = (FIXTURES / "hello.wasm").read_bytes()
    limits, grants = Limits(), Grants()
    prepared = sandbox.prepare(source, limits)
    for _ in range(200):
        sandbox.run_prepared(prepared, limits, grants)
    samples: list[float] = []
    round_p50s, round_cpu_p50s = [], []
    per_round = max(runs // rounds, 1)
    for _ in range(rounds):
        wall, cpu = [], []
        for _ in range(per_round):
            c0, t0 = time.thread_time(), time.perf_counter()
            result = sandbox.run_prepared(prepared, limits, grants)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
            assert result.status is RunStatus.OK and result.stdout == b"hello\n"
        samples += wall
        round_p50s.append(percentile(wall, 0.5))
        round_cpu_p50s.append(percentile(cpu, 0.5))
    return samples, round_p50s, round_cpu_p50s


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


def run_native(binary: Path, args: list[str]) -> tuple[float, float, bytes]:
    """(wall s, child CPU s, stdout) of one native run."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(binary), *args], stdout=subprocess.PIPE)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0
    return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime, out


def instrumentation_breakdown(wasm: bytes, args: list[str], rounds: int) -> dict[str, float]:
    """Min thread-CPU seconds of ``_start`` under engines that differ only in fuel/epochs."""
    variants = {"neither": (False, False), "fuel only": (True, False),
                "epochs only": (False, True), "fuel + epochs": (True, True)}
    ready = {}
    for name, (fuel, epochs) in variants.items():
        cfg = wasmtime.Config()
        cfg.cranelift_opt_level = "speed"
        cfg.consume_fuel = fuel
        cfg.epoch_interruption = epochs
        engine = wasmtime.Engine(cfg)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        ready[name] = (engine, linker.instantiate_pre(wasmtime.Module(engine, wasm)), fuel, epochs)
    best = {name: float("inf") for name in variants}
    for _ in range(rounds):
        for name, (engine, pre, fuel, epochs) in ready.items():
            store = wasmtime.Store(engine)
            wasi = wasmtime.WasiConfig()
            wasi.argv = ["sieve", *args]
            wasi.stdout_file = os.devnull
            store.set_wasi(wasi)
            if fuel:
                store.set_fuel(10**13)
            if epochs:
                store.set_epoch_deadline(10**9)  # never reached: the cost of the checks only
            start = pre.instantiate(store).exports(store)["_start"]
            assert isinstance(start, wasmtime.Func)
            c0 = time.thread_time()
            start(store)
            best[name] = min(best[name], time.thread_time() - c0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jailed-runs", type=int, default=200)
    parser.add_argument("--sieve-runs", type=int, default=5)
    parser.add_argument("--no-breakdown", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="warden-bench-"))
    sandbox = Sandbox(Settings(data_dir=work / "data"))
    metered = Sandbox(Settings(data_dir=work / "data", fuel_instrumentation=False))
    try:
        py = sys.version.split()[0]
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"# Warden sandbox benchmark ({os.cpu_count()} cores, Python {py},"
              f" load average {load})")
        wasm, p50s, cpu_p50s = bench_wasm_hello(sandbox, args.runs, args.rounds)
        us = " ".join(f"{p * 1e6:.0f}" for p in p50s)
        cpu_us = " ".join(f"{p * 1e6:.0f}" for p in cpu_p50s)
        print(f"wasm hello (cached module, in-process): p50 {percentile(wasm, .5)*1e3:.3f} ms"
              f"  p99 {percentile(wasm, .99)*1e3:.3f} ms  mean {statistics.mean(wasm)*1e3:.3f} ms"
              f"  ({len(wasm)} runs)")
        print(f"  per-round p50 wall (us): {us}   per-round p50 thread CPU (us): {cpu_us}")
        native_hello = work / "hello"
        gcc(FIXTURES / "c" / "hello.c", native_hello)
        if shutil.which("bwrap"):
            jailed = bench_native_jailed(native_hello, args.jailed_runs)
            print(f"native hello in bwrap --unshare-all: p50 {percentile(jailed, .5)*1e3:.3f} ms"
                  f"  mean {statistics.mean(jailed)*1e3:.3f} ms  ({args.jailed_runs} runs)")
            print(f"speed-up (p50): {percentile(jailed, .5) / percentile(wasm, .5):.1f}x")
        else:
            print("bwrap not installed: jailed comparison skipped (run scripts/install.sh)")

        sieve_wasm = (FIXTURES / "sieve.wasm").read_bytes()
        native_sieve = work / "sieve"
        gcc(FIXTURES / "c" / "sieve.c", native_sieve)
        limits = Limits(fuel=10**12, wall_time_s=120, memory_bytes="256MiB")
        grants = Grants(args=SIEVE_ARGS)
        engines = {"Warden fuel rewriter": sandbox, "wasmtime fuel + epochs": metered}
        prepared = {name: sb.prepare(sieve_wasm, limits) for name, sb in engines.items()}
        wasm_wall: dict[str, list[float]] = {name: [] for name in engines}
        wasm_cpu: dict[str, list[float]] = {name: [] for name in engines}
        fuel: dict[str, int] = {}
        native_wall, native_cpu = [], []
        for _ in range(args.sieve_runs):
            for name, sb in engines.items():
                c0 = time.thread_time()
                result = sb.run_prepared(prepared[name], limits, grants)
                wasm_cpu[name].append(time.thread_time() - c0)
                assert result.status is RunStatus.OK, result
                wasm_wall[name].append(result.wall_time_s)
                fuel[name] = result.fuel_used
            wall, cpu, native_out = run_native(native_sieve, SIEVE_ARGS)
            native_wall.append(wall)
            native_cpu.append(cpu)
            assert native_out == result.stdout
        nw, nc = min(native_wall), min(native_cpu)
        print(f"sieve 10^7 x5 (Sandbox.run_prepared) vs native gcc -O2"
              f" ({nc*1e3:.0f} ms CPU), min of {args.sieve_runs}:")
        for name in engines:
            ww, wc = min(wasm_wall[name]), min(wasm_cpu[name])
            print(f"  {name}: wall {ww*1e3:.0f} ms vs {nw*1e3:.0f} ms: ratio {ww / nw:.2f}x;"
                  f"  CPU {wc*1e3:.0f} ms vs {nc*1e3:.0f} ms: ratio {wc / nc:.2f}x"
                  f"  (fuel {fuel[name]:,})")
        if not args.no_breakdown:
            best = instrumentation_breakdown(sieve_wasm, SIEVE_ARGS, args.sieve_runs)
            shown = ", ".join(f"{name} {cpu / nc:.2f}x" for name, cpu in best.items())
            print(f"  same module, CPU vs native by engine instrumentation: {shown}")
    finally:
        sandbox.compiler.close()
        metered.compiler.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    # On a guest thread, as worker lanes run guests (a thread with room for any wasm stack;
    # from the main thread each run would hop to one).
    from sandboxes.runtime.stacks import start_guest_thread

    start_guest_thread(main, "bench", daemon=False).join()
