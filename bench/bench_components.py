"""WASI P2 component vs core module: hello-world cost per run. Prints figures, asserts little.

Compares, each over ``--runs`` runs after a warm-up, from an already prepared artifact:
1. core hello.wasm through ``run_prepared`` (fast in-process stdio path),
2. the same core module with a scratch grant (Warden's in-memory files),
3. the P2 hello component (C + preview1 command adapter) through ``run_prepared``, which
   sends it to a killable executor process, and the same run in process (what a run
   costs without the backstop),
4. the component with raw wasmtime calls, split into store+WASI setup, instantiate and
   ``run``, to show where a component run's time goes.

Usage: python bench/bench_components.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import wasmtime
import wasmtime.component

from sandboxes.runtime import components
from sandboxes.runtime.engine import EngineSpec
from sandboxes.runtime.sandbox import Prepared, Sandbox
from sandboxes.schema import Grants, Limits, RunStatus, ScratchGrant
from sandboxes.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
WARMUP = 50


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(label: str, samples: list[float]) -> None:
    ms = [s * 1000 for s in samples]
    print(
        f"{label:<44} p50 {statistics.median(ms):7.3f} ms  p90 {percentile(ms, 0.9):7.3f} ms"
        f"  min {min(ms):7.3f} ms  (n={len(ms)})"
    )


def timed(fn: Callable[[], None], runs: int) -> list[float]:
    for _ in range(WARMUP):
        fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def run_case(
    sandbox: Sandbox, prepared: Prepared, grants: Grants, expected: bytes, runs: int
) -> list[float]:
    limits = Limits()

    def once() -> None:
        result = sandbox.run_prepared(prepared, limits, grants)
        assert result.status is RunStatus.OK and result.stdout == expected, result

    return timed(once, runs)


def raw_component(wasm: bytes, runs: int) -> dict[str, list[float]]:
    """The component path without Warden: where do the milliseconds go?"""
    engine = EngineSpec(1 << 20).build()
    linker = components.build_linker(engine)
    component = wasmtime.component.Component(engine, wasm)
    checked = components.check_component(component, engine)
    assert isinstance(checked, components.CommandInfo)
    parts: dict[str, list[float]] = {"setup": [], "instantiate": [], "run": []}
    for i in range(WARMUP + runs):
        t0 = time.perf_counter()
        store = wasmtime.Store(engine)
        store.set_fuel(10**9)
        store.set_epoch_deadline(1 << 30)
        wasi = wasmtime.WasiConfig()
        wasi.stdout_custom = len
        store.set_wasi(wasi)
        t1 = time.perf_counter()
        instance = linker.instantiate(store, component)
        t2 = time.perf_counter()
        iface = instance.get_export_index(store, checked.run_export)
        func = instance.get_func(store, instance.get_export_index(store, "run", iface) or "")
        assert func is not None
        func(store)
        t3 = time.perf_counter()
        if i >= WARMUP:
            parts["setup"].append(t1 - t0)
            parts["instantiate"].append(t2 - t1)
            parts["run"].append(t3 - t2)
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    core_wasm = (FIXTURES / "hello.wasm").read_bytes()
    comp_wasm = (FIXTURES / "components" / "hello.wasm").read_bytes()
    with tempfile.TemporaryDirectory() as data_dir:
        sandbox = Sandbox(Settings(data_dir=Path(data_dir), compile_timeout_s=60))
        try:
            t0 = time.perf_counter()
            core = sandbox.prepare(core_wasm, Limits())
            t1 = time.perf_counter()
            comp = sandbox.prepare(comp_wasm, Limits())
            t2 = time.perf_counter()
            print(f"python {sys.version.split()[0]}, wasmtime "
                  f"{EngineSpec(1 << 20).settings()['wasmtime']}")
            print(f"first prepare (compile in helper + link): core {1000 * (t1 - t0):.1f} ms, "
                  f"component {1000 * (t2 - t1):.1f} ms "
                  f"({len(core_wasm)} vs {len(comp_wasm)} bytes of wasm)")
            report("core hello (fast stdio)", run_case(
                sandbox, core, Grants(), b"hello\n", args.runs))
            report("core hello (scratch dir: in-memory files)", run_case(
                sandbox, core, Grants(scratch=ScratchGrant()), b"hello\n", args.runs))
            report("component hello (P2, in an executor process)", run_case(
                sandbox, comp, Grants(), b"hello from a component\n", args.runs))
        finally:
            sandbox.close()
        here = Sandbox(Settings(data_dir=Path(data_dir), compile_timeout_s=60),
                       components_in_process=True)
        try:
            comp_here = here.prepare(comp_wasm, Limits())
            report("component hello (P2, in process: no backstop)", run_case(
                here, comp_here, Grants(), b"hello from a component\n", args.runs))
        finally:
            here.close()
    for part, samples in raw_component(comp_wasm, args.runs).items():
        report(f"  raw component: {part}", samples)


if __name__ == "__main__":
    # On a guest thread, as worker lanes run guests (a thread with room for any wasm stack;
    # from the main thread each run would hop to one).
    from sandboxes.runtime.stacks import start_guest_thread

    start_guest_thread(main, "bench", daemon=False).join()
