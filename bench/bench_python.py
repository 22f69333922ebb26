"""Python runtime benchmark: prints figures, asserts nothing (findings: docs/notes/python-wasm.md).

1. First compile of the pinned CPython module (fresh artifact cache), then loading it from
   the disk cache in a new Sandbox (deserialize + link), then an in-memory cache hit.
2. ``print(1)`` through ``Sandbox.run_prepared``: wall p50/p90/min and CPU-time p50 (the
   calling thread's; steadier than wall time on a shared machine) over ``--runs`` runs and
   the fuel used, for the shipped configuration (``python_grants``: ``-s`` + start-up
   overlay) and for the plain alternatives it was measured against.
3. With ``--engine-overhead``: the same start under wasmtime directly, with fuel and epoch
   interruption each on and off (compiles the module four more times: minutes).

Usage: python bench/bench_python.py [--runs N] [--data-dir DIR] [--engine-overhead]
(``--data-dir`` reuses an artifact cache, so step 1's "first compile" is then a disk hit.)
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
import time
from pathlib import Path

import wasmtime

from sandboxes.languages.toolchains.python_wasm import (
    ARGV0,
    PYTHON_MODULE_LIMIT_BYTES,
    PYTHON_VERSION,
    SCRIPT_FILE,
    python_grants,
    python_wasm_bytes,
    python_wasm_path,
)
from sandboxes.runtime.sandbox import Prepared, Sandbox
from sandboxes.schema import Grants, Limits, RunStatus
from sandboxes.settings import Settings

LIMITS = Limits(module_bytes=PYTHON_MODULE_LIMIT_BYTES, fuel=10_000_000_000)
SOURCE = "print(1)"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.2f} ms"


def timed_prepare(sandbox: Sandbox, wasm: bytes) -> tuple[Prepared, float]:
    t0 = time.perf_counter()
    prepared = sandbox.prepare(wasm, LIMITS)
    return prepared, time.perf_counter() - t0


def bench_runs(sandbox: Sandbox, prepared: Prepared, grants: Grants, runs: int) -> None:
    for _ in range(5):
        sandbox.run_prepared(prepared, LIMITS, grants, argv0=ARGV0)
    total: list[float] = []
    cpu: list[float] = []
    fuel = 0
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.thread_time()
        result = sandbox.run_prepared(prepared, LIMITS, grants, argv0=ARGV0)
        total.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        fuel = result.fuel_used
        assert result.status is RunStatus.OK and result.stdout == b"1\n", result
    print(
        f"    run_prepared p50 {ms(percentile(total, 0.5))}  p90 {ms(percentile(total, 0.9))}"
        f"  min {ms(min(total))}   CPU p50 {ms(percentile(cpu, 0.5))}"
        f"   fuel {fuel / 1e6:.1f} M"
    )


def engine_overhead(wasm: bytes, cache_dir: Path, runs: int) -> None:
    """Instantiate + _start of ``-S main.py`` under wasmtime directly, fuel/epoch on and off."""
    scratch = Path(tempfile.mkdtemp(prefix="bench-python-"))
    (scratch / "main.py").write_text(SOURCE)
    setups = {}
    for fuel in (True, False):
        for epoch in (True, False):
            cfg = wasmtime.Config()
            cfg.cranelift_opt_level = "speed"
            cfg.consume_fuel = fuel
            cfg.epoch_interruption = epoch
            cfg.max_wasm_stack = 1 << 20
            engine = wasmtime.Engine(cfg)
            blob = cache_dir / f"overhead-{int(fuel)}{int(epoch)}.cwasm"
            t0 = time.perf_counter()
            if blob.exists():
                module = wasmtime.Module.deserialize(engine, blob.read_bytes())
            else:
                module = wasmtime.Module(engine, wasm)
                blob.write_bytes(module.serialize())
                print(f"    compiled fuel={fuel} epoch={epoch} in {time.perf_counter() - t0:.1f} s")
            linker = wasmtime.Linker(engine)
            linker.define_wasi()
            setups[(fuel, epoch)] = (engine, linker.instantiate_pre(module))
    samples: dict[tuple[bool, bool], list[float]] = {k: [] for k in setups}
    cpu: dict[tuple[bool, bool], list[float]] = {k: [] for k in setups}
    for _ in range(runs):  # interleaved, so machine noise hits every configuration alike
        for (fuel, epoch), (engine, pre) in setups.items():
            store = wasmtime.Store(engine)
            if fuel:
                store.set_fuel(10**10)
            if epoch:
                store.set_epoch_deadline(10**6)
            wasi = wasmtime.WasiConfig()
            wasi.argv = ["python", "-S", "/app/main.py"]
            wasi.preopen_dir(str(scratch), "/app", False)
            wasi.stdout_file = str(scratch / "out")
            store.set_wasi(wasi)
            t0, c0 = time.perf_counter(), time.thread_time()
            start = pre.instantiate(store).exports(store)["_start"]
            assert isinstance(start, wasmtime.Func)
            with contextlib.suppress(wasmtime.ExitTrap):
                start(store)
            samples[(fuel, epoch)].append(time.perf_counter() - t0)
            cpu[(fuel, epoch)].append(time.thread_time() - c0)
    for key, times in samples.items():
        print(
            f"    fuel={key[0]!s:5} epoch={key[1]!s:5}  p50 {ms(percentile(times, 0.5))}"
            f"  min {ms(min(times))}   CPU p50 {ms(percentile(cpu[key], 0.5))}"
        )
    shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--engine-overhead", action="store_true")
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-python-data-"))

    print(f"CPython {PYTHON_VERSION} for WASI: {python_wasm_path()}")
    t0 = time.perf_counter()
    wasm = python_wasm_bytes()
    print(f"  read + SHA-256 check of {len(wasm) / 1e6:.1f} MB  {ms(time.perf_counter() - t0)}")

    sandbox = Sandbox(Settings(data_dir=data_dir, compile_timeout_s=600))
    _, first = timed_prepare(sandbox, wasm)
    print(f"  first prepare (compile, or disk hit with --data-dir)  {first:8.2f} s")
    sandbox.compiler.close()
    sandbox = Sandbox(Settings(data_dir=data_dir, compile_timeout_s=600))
    prepared, from_disk = timed_prepare(sandbox, wasm)
    print(f"  prepare from the disk cache (new Sandbox)  {ms(from_disk)}")
    _, from_memory = timed_prepare(sandbox, wasm)
    print(f"  prepare, in-memory hit (hashes the module) {ms(from_memory)}")

    script = {SCRIPT_FILE: SOURCE.encode()}
    variants = {
        "shipped: python_grants (-s, /pylib overlay)": python_grants(SOURCE),
        "-S, no overlay (no exit()/quit())": Grants(args=["-S", "/app/main.py"], files=script),
        "-S + overlay (no exit()/quit())": python_grants(SOURCE).model_copy(
            update={"args": ["-S", "/app/main.py"]}
        ),
        "no flags, no overlay": Grants(args=["/app/main.py"], files=script),
    }
    print(f"\nprint(1), {args.runs} runs each (Sandbox.run_prepared, fuel + epoch on)")
    for name, grants in variants.items():
        print(f"  {name}")
        bench_runs(sandbox, prepared, grants, args.runs)
    sandbox.compiler.close()

    if args.engine_overhead:
        print(f"\nfuel / epoch overhead, -S main.py, wasmtime directly, {args.runs} runs each")
        engine_overhead(wasm, data_dir, args.runs)


if __name__ == "__main__":
    # On a guest thread, as worker lanes run guests (a thread with room for any wasm stack;
    # from the main thread each run would hop to one).
    from sandboxes.runtime.stacks import start_guest_thread

    start_guest_thread(main, "bench", daemon=False).join()
