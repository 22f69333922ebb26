"""QuickJS (JavaScript) benchmark: build time, module size, per-run cost. Prints figures only.

1. Build: the pinned QuickJS-NG sdist plus driver.c to a WASI command (skipped when the
   module for the current sources is already in the cache, unless ``--rebuild``).
2. ``console.log("hello")`` through the real Sandbox: ``prepare`` once, then
   ``run_prepared`` many times (p50/p90/p99 wall time, this thread's CPU time, fuel), as
   Warden runs a JS job (script granted as /app/main.js), and once with the source in argv
   (``qjs -e``), which skips the host-side workspace a file grant costs.
3. A few bigger scripts (formatter, promises, a compute loop) for scale.

Usage: python bench/bench_quickjs.py [--runs 500] [--cache DIR] [--rebuild]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sandboxes.languages.toolchains.quickjs import build
from sandboxes.runtime.sandbox import Sandbox
from sandboxes.schema import Grants, Limits, RunStatus
from sandboxes.settings import Settings

SCRIPTS = {
    "hello": 'console.log("hello")',
    "inspect": 'console.log({ a: 1, b: [1, 2, 3], c: new Map([["k", { d: 2 }]]) })',
    "promises": 'const v = await Promise.resolve(41).then((x) => x + 1); console.log(v)',
    "loop_1e6": "let s = 0; for (let i = 0; i < 1e6; i++) s += i; console.log(s)",
}


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def grants_for(source: str, via_argv: bool = False) -> Grants:
    if via_argv:  # qjs -e: no file grant, so no per-run workspace on the host
        return Grants(args=["-e", source])
    return Grants(args=["/app/main.js"], files={"app/main.js": source.encode()})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument(
        "--cache", type=Path, default=Path.home() / ".cache" / "warden-test-quickjs"
    )
    parser.add_argument("--rebuild", action="store_true", help="build from scratch, timed")
    args = parser.parse_args()

    print(f"toolchain: {build.toolchain_version()}")
    if args.rebuild:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "qjs.wasm"
            t0 = time.perf_counter()
            build.build_quickjs(out, args.cache / "work")  # sdist reused if cached
            print(f"build (sdist cached, zig libc cache warm): {time.perf_counter() - t0:.1f} s")
            wasm = out.read_bytes()
    else:
        t0 = time.perf_counter()
        path = build.ensure_built(args.cache)
        print(f"ensure_built: {time.perf_counter() - t0:.1f} s ({path})")
        wasm = path.read_bytes()
    print(f"module size: {len(wasm)} bytes ({len(wasm) / 2**20:.2f} MiB)")

    with tempfile.TemporaryDirectory() as data:
        sandbox = Sandbox(Settings(data_dir=Path(data), compile_timeout_s=120))
        limits = Limits()
        t0 = time.perf_counter()
        prepared = sandbox.prepare(wasm, limits)
        print(f"prepare (compile + link, cold cache): {(time.perf_counter() - t0) * 1000:.0f} ms")
        cases = [(name, source, False) for name, source in SCRIPTS.items()]
        cases.insert(1, ("hello -e", SCRIPTS["hello"], True))
        for name, source, via_argv in cases:
            grants = grants_for(source, via_argv)
            runs = args.runs if name != "loop_1e6" else max(5, args.runs // 50)
            for _ in range(min(50, runs)):
                sandbox.run_prepared(prepared, limits, grants, argv0="qjs")
            samples: list[float] = []
            fuel = 0
            cpu0 = time.thread_time()
            for _ in range(runs):
                t0 = time.perf_counter()
                result = sandbox.run_prepared(prepared, limits, grants, argv0="qjs")
                samples.append(time.perf_counter() - t0)
                assert result.status is RunStatus.OK, result
                fuel = result.fuel_used
            cpu = (time.thread_time() - cpu0) / runs
            print(
                f"{name:9} runs={runs:4} p50={statistics.median(samples) * 1000:.3f} ms "
                f"cpu={cpu * 1000:.3f} ms "
                f"p90={percentile(samples, 0.9) * 1000:.3f} ms "
                f"p99={percentile(samples, 0.99) * 1000:.3f} ms fuel={fuel:,} "
                f"out={result.stdout[:40]!r}"
            )
        sandbox.compiler.close()


if __name__ == "__main__":
    # On a guest thread, as worker lanes run guests (a thread with room for any wasm stack;
    # from the main thread each run would hop to one).
    from sandboxes.runtime.stacks import start_guest_thread

    start_guest_thread(main, "bench", daemon=False).join()
