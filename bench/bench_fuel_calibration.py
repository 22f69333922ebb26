"""Fuel calibration: how much fuel this machine burns per second of wall time.

The judge's time limit is a fuel budget, ``time_limit_s * WARDEN_JUDGE_FUEL_PER_SECOND``,
and a test's reported time is ``fuel_used / WARDEN_JUDGE_FUEL_PER_SECOND``
(``judge/timing.py``). This is sio2jail's approach: sio2jail counts the instructions a
solution retires (perf counters) and converts them to time at a fixed 2·10^9
instructions/s. That constant was measured once on a reference machine and then fixed;
it is not re-measured on the machine that judges. So a verdict (and the reported time)
depends on the program and its input only, never on the judging machine's speed or load.
Warden does the same with fuel (a deterministic count of executed wasm work): this script
measures fuel per wall second on the machine it runs on. It is meant to be run once on the
reference machine, and its suggestion written into the setting; running it on another
machine measures that machine, and does not (and should not) change the constant.

Programs (each run ``--runs`` times, one at a time, in this process):
  * tests/fixtures/sieve.wasm (sieve of Eratosthenes, 10^7 x 5, prebuilt), via
    ``Sandbox.run``;
  * C compiled by ``SourceRunner.executable`` (zig cc -O2, wasm32-wasi), run with
    ``Sandbox.run_prepared``: an integer loop with array accesses (4·10^8 iterations),
    recursive fib(30) (x60), memory streaming (64 MiB copied into a second 64 MiB
    array and summed, x12), and qsort of 10^6 ints. ``--quick``: smaller counts.

One warm-up run of each is not counted (machine code cached, memory pages touched).
Fuel is deterministic (the same every run); only the wall time varies.

For each: the median fuel per wall second and its spread (min..max over the runs, and
(max - min) / median), and fuel per CPU second of this process (less sensitive to other
load on a shared machine). The suggested WARDEN_JUDGE_FUEL_PER_SECOND is the median across
programs of the per-program medians (wall), rounded to 2 significant digits, compared to
the current setting (``sandboxes.settings.get_settings().judge_fuel_per_second``).

Prints figures; asserts only that each program's output is right.

Usage: python bench/bench_fuel_calibration.py [--runs 5] [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sandboxes.languages.source_runner import Executable, SourceRunner  # noqa: E402
from sandboxes.runtime.sandbox import Sandbox  # noqa: E402
from sandboxes.schema import Grants, Limits, MiB, RunResult, RunStatus  # noqa: E402
from sandboxes.settings import get_settings  # noqa: E402

SIEVE = ROOT / "tests" / "fixtures" / "sieve.wasm"
LIMITS = Limits(fuel=10**12, wall_time_s=60, memory_bytes=512 * MiB)

INT_LOOP = r"""#include <stdio.h>
int main(void) {
    static unsigned a[1 << 16];
    long n; if (scanf("%ld", &n) != 1) return 1;
    unsigned h = 1;
    for (long i = 0; i < n; i++) {
        unsigned j = (unsigned)(i * 2654435761u) & 0xffff;
        a[j] += h ^ (unsigned)i;
        h = h * 31u + a[(j + 17) & 0xffff];
    }
    printf("%u\n", h);
    return 0;
}
"""

FIB = r"""#include <stdio.h>
static int fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }
int main(void) {
    int n, reps; if (scanf("%d %d", &n, &reps) != 2) return 1;
    volatile int vn = n;  /* read each round: fib(n) is not hoisted out of the loop */
    long total = 0;
    for (int r = 0; r < reps; r++) total += fib(vn);
    printf("%ld\n", total / reps);
    return 0;
}
"""

STREAM = r"""#include <stdio.h>
#include <stdlib.h>
int main(void) {
    long mib, passes; if (scanf("%ld %ld", &mib, &passes) != 2) return 1;
    size_t n = (size_t)mib * 1024 * 1024 / sizeof(unsigned);
    unsigned *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    if (!a || !b) return 2;
    for (size_t i = 0; i < n; i++) a[i] = (unsigned)i;
    unsigned long long sum = 0;
    for (long p = 0; p < passes; p++) {
        for (size_t i = 0; i < n; i++) b[i] = a[i] * 3u + (unsigned)p;
        for (size_t i = 0; i < n; i++) sum += b[i];
    }
    printf("%llu\n", sum);
    return 0;
}
"""

SORT = r"""#include <stdio.h>
#include <stdlib.h>
static int cmp(const void *x, const void *y) {
    int a = *(const int *)x, b = *(const int *)y; return (a > b) - (a < b);
}
int main(void) {
    int n; if (scanf("%d", &n) != 1) return 1;
    int *v = malloc(sizeof(int) * (size_t)n);
    unsigned s = 12345;
    for (int i = 0; i < n; i++) { s = s * 1103515245u + 12345u; v[i] = (int)(s >> 1); }
    qsort(v, (size_t)n, sizeof(int), cmp);
    for (int i = 1; i < n; i++) if (v[i - 1] > v[i]) { puts("unsorted"); return 3; }
    printf("%d %d\n", v[0], v[n - 1]);
    return 0;
}
"""


def _int_loop_expected(n: int) -> bytes:
    a = [0] * (1 << 16)
    h = 1
    m = 0xFFFFFFFF
    for i in range(n):
        j = (i * 2654435761) & 0xFFFF
        a[j] = (a[j] + (h ^ (i & m))) & m
        h = (h * 31 + a[(j + 17) & 0xFFFF]) & m
    return f"{h}\n".encode()


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def _stream_expected(mib: int, passes: int) -> bytes:
    n = mib * 1024 * 1024 // 4
    assert 3 * (n - 1) + passes < 2**32  # no unsigned wrap-around: a closed form
    total = sum(3 * n * (n - 1) // 2 + p * n for p in range(passes))
    return f"{total % 2**64}\n".encode()


def _sort_expected(n: int) -> bytes:
    s, lo, hi = 12345, None, None
    for _ in range(n):
        s = (s * 1103515245 + 12345) & 0xFFFFFFFF
        v = s >> 1
        lo = v if lo is None or v < lo else lo
        hi = v if hi is None or v > hi else hi
    return f"{lo} {hi}\n".encode()


@dataclass
class Program:
    name: str
    source: str | None  # C source; None: the sieve fixture
    stdin: bytes
    expected: Callable[[], bytes]  # the output for ``check_stdin`` (given) or ``stdin``
    check_stdin: bytes | None = None  # a small input to check against (too slow in Python)


def programs(quick: bool) -> list[Program]:
    loop_n = 400_000_000 if not quick else 100_000_000
    fib_reps = 60 if not quick else 20
    passes = 12 if not quick else 4
    return [
        Program("sieve.wasm (10^7 x5)", None, b"", lambda: f"{664_579 * 5}\n".encode()),
        Program(f"int loop + array ({loop_n:.0e} iters)", INT_LOOP, f"{loop_n}\n".encode(),
                lambda: _int_loop_expected(200_000), b"200000\n"),
        Program(f"fib(30) recursive x{fib_reps}", FIB, f"30 {fib_reps}\n".encode(),
                lambda: f"{_fib(30)}\n".encode()),
        Program(f"memory stream 64 MiB x{passes}", STREAM, f"64 {passes}\n".encode(),
                lambda: _stream_expected(64, passes)),
        Program("qsort 10^6 ints", SORT, b"1000000\n", lambda: _sort_expected(1_000_000)),
    ]


@dataclass
class Figures:
    name: str
    fuel: list[int]
    wall_s: list[float]
    cpu_s: list[float]

    @property
    def per_wall(self) -> list[float]:
        return [f / w for f, w in zip(self.fuel, self.wall_s, strict=True)]

    @property
    def per_cpu(self) -> list[float]:
        return [f / c for f, c in zip(self.fuel, self.cpu_s, strict=True) if c > 0]

    def summary(self) -> dict[str, object]:
        pw = self.per_wall
        med = statistics.median(pw)
        return {
            "name": self.name, "fuel": self.fuel[0],
            "fuel_deterministic": len(set(self.fuel)) == 1,
            "wall_s_median": round(statistics.median(self.wall_s), 4),
            "fuel_per_wall_s_median": round(med),
            "fuel_per_wall_s_min": round(min(pw)), "fuel_per_wall_s_max": round(max(pw)),
            "spread": round((max(pw) - min(pw)) / med, 4),
            "fuel_per_cpu_s_median": round(statistics.median(self.per_cpu))
            if self.per_cpu else None,
        }


def two_sig(x: float) -> int:
    digits = math.floor(math.log10(abs(x)))
    return int(round(x, -digits + 1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs of each program")
    ap.add_argument("--quick", action="store_true", help="smaller inputs, 3 runs")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    runs = 3 if args.quick and args.runs == 5 else args.runs
    current = get_settings().judge_fuel_per_second
    print(f"fuel calibration: {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f} before start; {runs} runs each; current "
          f"WARDEN_JUDGE_FUEL_PER_SECOND = {current:_}")
    sandbox = Sandbox()
    sources = SourceRunner(sandbox)
    results: list[Figures] = []
    try:
        for prog in programs(args.quick):
            expected = prog.expected()
            run: Callable[[], RunResult]
            if prog.source is None:
                wasm = SIEVE.read_bytes()

                def run(wasm: bytes = wasm) -> RunResult:
                    return sandbox.run(wasm, LIMITS, Grants())
            else:
                t0 = time.perf_counter()
                exe = sources.executable("c", prog.source, LIMITS)
                assert isinstance(exe, Executable), exe
                print(f"  compiled {prog.name!r} in {time.perf_counter() - t0:.2f} s "
                      "(0.00: from the compile cache)")

                def run(exe: Executable = exe, stdin: bytes = prog.stdin) -> RunResult:
                    return sandbox.run_prepared(exe.prepared, LIMITS,
                                                exe.grants(Grants(stdin=stdin)), None,
                                                exe.argv0)
            if prog.check_stdin is not None:
                assert prog.source is not None
                exe_check = sources.executable("c", prog.source, LIMITS)
                assert isinstance(exe_check, Executable)
                small = sandbox.run_prepared(exe_check.prepared, LIMITS, exe_check.grants(
                    Grants(stdin=prog.check_stdin)), None, exe_check.argv0)
                assert small.stdout == expected, (prog.name, small.stdout, expected)
            first = run()  # warm-up: machine code cached, pages touched; not counted
            assert first.status is RunStatus.OK, first
            if prog.check_stdin is not None:
                expected = first.stdout  # checked on the small input; the same every run
            assert first.stdout == expected, (prog.name, first.stdout, expected)
            fig = Figures(prog.name, [], [], [])
            for _ in range(runs):
                c0 = time.process_time()
                result = run()
                cpu = time.process_time() - c0
                assert result.status is RunStatus.OK and result.stdout == expected, result
                fig.fuel.append(result.fuel_used)
                fig.wall_s.append(result.wall_time_s)
                fig.cpu_s.append(cpu)
            s = fig.summary()
            print(f"  {prog.name:<34} fuel {s['fuel']:>14_}  wall p50 {s['wall_s_median']:.3f} s"
                  f"  fuel/s p50 {s['fuel_per_wall_s_median']:.3e} "
                  f"[{s['fuel_per_wall_s_min']:.3e}..{s['fuel_per_wall_s_max']:.3e}, "
                  f"spread {float(s['spread']) * 100:.1f}%]  fuel/CPU-s "  # type: ignore[arg-type]
                  f"{s['fuel_per_cpu_s_median']:.3e}"
                  + ("" if s["fuel_deterministic"] else "  (fuel varied between runs!)"))
            results.append(fig)
    finally:
        sandbox.close()
    medians = [statistics.median(f.per_wall) for f in results]
    cpu_medians = [statistics.median(f.per_cpu) for f in results if f.per_cpu]
    across = statistics.median(medians)
    suggested = two_sig(across)
    print()
    print(f"{'program':<34} {'fuel/wall-s':>12} {'spread':>8} {'fuel/CPU-s':>12}")
    for f in results:
        s = f.summary()
        print(f"{f.name:<34} {s['fuel_per_wall_s_median']:>12.3e} "
              f"{float(s['spread']) * 100:>7.1f}% "  # type: ignore[arg-type]
              f"{s['fuel_per_cpu_s_median']:>12.3e}")
    print(f"median across programs: {across:.4e} fuel/s (wall), "
          f"{statistics.median(cpu_medians):.4e} fuel/s (CPU); range across programs "
          f"{min(medians):.3e}..{max(medians):.3e}")
    print(f"suggested WARDEN_JUDGE_FUEL_PER_SECOND = {suggested:_} "
          f"(current {current:_}: this machine is {across / current:.2f}x the reference; "
          f"a 1 s limit here takes {current / across:.2f} s of wall time)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({
            "cpus": os.cpu_count(), "runs": runs, "programs": [f.summary() for f in results],
            "median_fuel_per_wall_s": round(across),
            "median_fuel_per_cpu_s": round(statistics.median(cpu_medians)),
            "suggested_fuel_per_second": suggested, "current_fuel_per_second": current,
            "ratio_to_current": round(across / current, 4),
            "loadavg_after": os.getloadavg()[0],
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
