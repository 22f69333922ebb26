"""Per language: cold compile (jailed), compile-cache hit, and a hello-world run.

Targets (issue "Source languages"): C cold compile <= 500 ms, cache hit <= 5 ms, Python
print(1) <= 20 ms, JavaScript hello <= 1 ms. Prints a table; not a timed test.

    python bench/bench_languages.py [--runs 50]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sandboxes.languages.registry import LANGUAGES
from sandboxes.languages.source_runner import SourceRunner
from sandboxes.runtime.sandbox import Sandbox
from sandboxes.schema import Grants, Limits, RunStatus
from sandboxes.settings import Settings

HELLO = {
    "c": '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n',
    "cpp": '#include <cstdio>\nint main() { std::puts("hello"); }\n',
    "zig": 'const std = @import("std");\npub fn main(init: std.process.Init) !void {\n'
    '    try std.Io.File.stdout().writeStreamingAll(init.io, "hello\\n");\n}\n',
    "rust": 'fn main() { println!("hello"); }\n',
    "go": 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello") }\n',
    "python": "print(1)\n",
    "javascript": 'console.log("hello");\n',
    "ruby": "puts 1\n",
}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runner = SourceRunner(Sandbox(Settings(data_dir=Path(tmp))))
        t0 = time.perf_counter()
        runner.warm()
        warm_s = time.perf_counter() - t0
        print(f"warm-up (sysroot, QuickJS, interpreters compiled): {warm_s:.2f} s")
        print(f"{'language':<11} {'cold ms':>8} {'hit ms':>8} {'run p50':>8} {'run p90':>8}"
              f" {'fuel':>12}  (runs={args.runs})")
        for lang_id, src in HELLO.items():
            lang = LANGUAGES[lang_id]
            cold = hit = float("nan")
            if not lang.interpreted:
                # A fresh comment makes the source new to the cache: a true cold compile.
                fresh = (src + f"// {uuid.uuid4()}\n").encode()
                t = time.perf_counter()
                outcome, cached = runner.compile(lang, fresh, [])
                cold = time.perf_counter() - t
                assert outcome.ok and not cached, outcome.message
                t = time.perf_counter()
                outcome, cached = runner.compile(lang, fresh, [])
                hit = time.perf_counter() - t
                assert cached
            limits, grants = Limits(), Grants()
            first = runner.run(lang_id, src, limits, grants)
            assert first.status is RunStatus.OK, (lang_id, first.message, first.stderr)
            times = []
            for _ in range(args.runs):
                t = time.perf_counter()
                res = runner.run(lang_id, src, limits, grants)
                times.append(time.perf_counter() - t)
                assert res.status is RunStatus.OK
            times.sort()
            p90 = times[int(len(times) * 0.9) - 1]
            print(f"{lang_id:<11} {ms(cold)} {ms(hit)} {ms(statistics.median(times))} {ms(p90)}"
                  f" {first.fuel_used:>12}")
    print("run = SourceRunner.run end to end (cache lookup + instantiate + run), in-process")


if __name__ == "__main__":
    # On a guest thread, as worker lanes run guests (a thread with room for any wasm stack;
    # from the main thread each run would hop to one).
    from sandboxes.runtime.stacks import start_guest_thread

    start_guest_thread(main, "bench", daemon=False).join()
