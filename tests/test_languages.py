"""Source languages end to end: jailed compile (real zig / rustc in bwrap) or interpreter,
then a real wasmtime run. Each language: hello, stdin echo, exit code, runtime error,
infinite loop → fuel, memory bomb → memory limit."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxes.languages import source_runner as source_runner_module
from sandboxes.languages.registry import LANGUAGES
from sandboxes.languages.source_runner import SourceRunner
from sandboxes.languages.toolchains import python_runtime
from sandboxes.runtime.sandbox import Sandbox
from sandboxes.schema import Grants, Limits, MiB, RunResult, RunStatus
from sandboxes.settings import Settings


def make_runner(data_dir: Path, **settings: object) -> SourceRunner:
    return SourceRunner(Sandbox(Settings(data_dir=data_dir, **settings)))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SourceRunner]:
    r = make_runner(tmp_path_factory.mktemp("langs"))
    r.warm()
    yield r


PROGRAMS: dict[str, dict[str, str]] = {
    "c": {
        "hello": '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n',
        "echo": "#include <stdio.h>\nint main(void) { int c;"
        " while ((c = getchar()) != EOF) putchar(c); return 0; }\n",
        "exit": "int main(void) { return 3; }\n",
        "crash": "#include <stdlib.h>\nint main(void) { abort(); }\n",
        "loop": "int main(void) { volatile unsigned x = 0; for (;;) x++; }\n",
        "bomb": "#include <stdlib.h>\n#include <string.h>\nchar *volatile sink;\n"
        "int main(void) { for (;;) { char *p = malloc(1 << 20); if (!p) return 1;"
        " memset(p, 1, 1 << 20); sink = p; } }\n",
    },
    "cpp": {
        "hello": '#include <cstdio>\nint main() { std::puts("hello"); }\n',
        "echo": "#include <cstdio>\nint main() { int c;"
        " while ((c = std::getchar()) != EOF) std::putchar(c); }\n",
        "exit": "#include <cstdlib>\nint main() { std::exit(3); }\n",
        "crash": "#include <cstdlib>\nint main() { std::abort(); }\n",
        "loop": "int main() { volatile unsigned x = 0; for (;;) x++; }\n",
        "bomb": "#include <vector>\nint main() { std::vector<std::vector<char>> v;"
        " for (;;) v.emplace_back(1 << 20, 'x'); }\n",
    },
    "zig": {
        "hello": 'const std = @import("std");\npub fn main(init: std.process.Init) !void {\n'
        '    try std.Io.File.stdout().writeStreamingAll(init.io, "hello\\n");\n}\n',
        "echo": 'const std = @import("std");\npub fn main(init: std.process.Init) !void {\n'
        "    var buf: [256]u8 = undefined;\n"
        "    while (true) {\n"
        "        const n = std.Io.File.stdin().readStreaming(init.io, &.{&buf})"
        " catch break;\n"
        "        if (n == 0) break;\n"
        "        try std.Io.File.stdout().writeStreamingAll(init.io, buf[0..n]);\n"
        "    }\n}\n",
        "exit": 'const std = @import("std");\npub fn main() void { std.process.exit(3); }\n',
        "crash": 'pub fn main() void { @panic("boom"); }\n',
        "loop": 'const std = @import("std");\npub fn main() void {\n    var x: u64 = 0;\n'
        "    while (true) { x +%= 1; std.mem.doNotOptimizeAway(x); }\n}\n",
        "bomb": 'const std = @import("std");\npub fn main() !void {\n    while (true) {\n'
        "        const p = try std.heap.page_allocator.alloc(u8, 1 << 20);\n"
        "        @memset(p, 1);\n    }\n}\n",
    },
    "rust": {
        "hello": 'fn main() { println!("hello"); }\n',
        "echo": "use std::io::{Read, Write};\nfn main() { let mut s = Vec::new();"
        " std::io::stdin().read_to_end(&mut s).unwrap();"
        " std::io::stdout().write_all(&s).unwrap(); }\n",
        "exit": "fn main() { std::process::exit(3); }\n",
        "crash": 'fn main() { panic!("boom"); }\n',
        "loop": "fn main() { let mut x: u64 = 0; loop {"
        " unsafe { std::ptr::write_volatile(&mut x, x.wrapping_add(1)); } } }\n",
        "bomb": "fn main() { let mut v: Vec<Vec<u8>> = Vec::new();"
        " loop { v.push(vec![1u8; 1 << 20]); } }\n",
    },
    "go": {
        "hello": 'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("hello") }\n',
        "echo": 'package main\n\nimport (\n\t"io"\n\t"os"\n)\n\n'
        "func main() { io.Copy(os.Stdout, os.Stdin) }\n",
        "exit": 'package main\n\nimport "os"\n\nfunc main() { os.Exit(3) }\n',
        "crash": 'package main\n\nfunc main() { panic("boom") }\n',
        "loop": "package main\n\nvar x uint64\n\nfunc main() {\n\tfor {\n\t\tx++\n\t}\n}\n",
        "bomb": "package main\n\nvar keep [][]byte\n\nfunc main() {\n\tfor {\n"
        "\t\tb := make([]byte, 1<<20)\n\t\tfor i := range b {\n\t\t\tb[i] = 1\n\t\t}\n"
        "\t\tkeep = append(keep, b)\n\t}\n}\n",
    },
    "python": {
        "hello": 'print("hello")\n',
        "echo": "import sys\nsys.stdout.write(sys.stdin.read())\n",
        "exit": "import sys\nsys.exit(3)\n",
        "crash": 'raise ValueError("boom")\n',
        "loop": "while True:\n    pass\n",
        "bomb": "x = []\nwhile True:\n    x.append(bytearray(1 << 20))\n",
    },
    "javascript": {
        "hello": 'console.log("hello");\n',
        "echo": "const s = readStdin();\nprocess.stdout.write(s);\n",
        "exit": "exit(3);\n",
        "crash": 'throw new Error("boom");\n',
        "loop": "for (;;) {}\n",
        "bomb": "const a = [];\nfor (;;) a.push(new Array(1e6).fill(1.5));\n",
    },
    "ruby": {
        "hello": 'puts "hello"\n',
        "echo": "$stdout.write($stdin.read)\n",
        "exit": "exit 3\n",
        "crash": 'raise ArgumentError, "boom"\n',
        "loop": "loop {}\n",
        "bomb": "a = []\nloop { a << (\"x\" * (1 << 20)) }\n",
    },
}


def run(r: SourceRunner, lang: str, case: str, **kw: object) -> RunResult:
    limits = kw.pop("limits", Limits())
    grants = kw.pop("grants", Grants())
    assert isinstance(limits, Limits) and isinstance(grants, Grants)
    return r.run(lang, PROGRAMS[lang][case], limits, grants)


def test_registry_matches_programs() -> None:
    assert set(PROGRAMS) == set(LANGUAGES)
    assert len({lang.judge0_id for lang in LANGUAGES.values()}) == len(LANGUAGES)


def test_judge0_ids_are_stable() -> None:
    """Judge0 clients hard-code these numbers: they must never change."""
    ids = {lang.id: lang.judge0_id for lang in LANGUAGES.values()}
    assert ids == {"c": 50, "cpp": 54, "zig": 1000, "rust": 73, "go": 60, "python": 71,
                   "javascript": 63, "ruby": 72}


def test_warm_prepares_the_interpreters(runner: SourceRunner) -> None:
    """After warm-up, a first Python, JavaScript or Ruby job compiles nothing."""
    misses = runner.sandbox.cache.misses
    for lang in ("python", "javascript", "ruby"):
        res = run(runner, lang, "hello")
        assert res.status is RunStatus.OK
    assert runner.sandbox.cache.misses == misses
    assert {lang for lang, _ in runner._prepared} >= {"python", "javascript", "ruby"}


@pytest.mark.parametrize("lang", sorted(PROGRAMS))
def test_hello(runner: SourceRunner, lang: str) -> None:
    res = run(runner, lang, "hello")
    assert res.status is RunStatus.OK, (res.message, res.compile_output, res.stderr)
    assert res.stdout == b"hello\n"
    assert res.exit_code == 0


@pytest.mark.parametrize("lang", sorted(PROGRAMS))
def test_stdin_echo(runner: SourceRunner, lang: str) -> None:
    data = b"line one\nline two \xc3\xa9\n"
    res = run(runner, lang, "echo", grants=Grants(stdin=data))
    assert res.status is RunStatus.OK, (res.message, res.compile_output, res.stderr)
    assert res.stdout == data


@pytest.mark.parametrize("lang", sorted(PROGRAMS))
def test_exit_code(runner: SourceRunner, lang: str) -> None:
    res = run(runner, lang, "exit")
    assert res.status is RunStatus.NONZERO_EXIT, (res.message, res.compile_output, res.stderr)
    assert res.exit_code == 3


@pytest.mark.parametrize("lang", sorted(PROGRAMS))
def test_runtime_error(runner: SourceRunner, lang: str) -> None:
    res = run(runner, lang, "crash")
    assert res.status in (RunStatus.TRAP, RunStatus.NONZERO_EXIT), (res.message, res.stderr)
    assert res.status is not RunStatus.OK
    if lang in ("python", "javascript", "ruby", "rust", "zig", "go"):
        assert b"boom" in res.stderr  # the language's own error report reaches stderr
    if lang in ("python", "javascript", "ruby"):
        assert res.exit_code == 1


@pytest.mark.parametrize("lang", sorted(PROGRAMS))
def test_infinite_loop_exhausts_fuel(runner: SourceRunner, lang: str) -> None:
    res = run(runner, lang, "loop", limits=Limits(fuel=2_000_000_000, wall_time_s=60))
    assert res.status is RunStatus.FUEL_EXHAUSTED, (res.message, res.compile_output)
    assert res.fuel_used >= 2_000_000_000 - 10_000


@pytest.mark.parametrize("lang", sorted(PROGRAMS))
def test_memory_bomb_hits_memory_limit(runner: SourceRunner, lang: str) -> None:
    res = run(runner, lang, "bomb", limits=Limits(memory_bytes=96 * MiB, wall_time_s=30))
    assert res.status is RunStatus.MEMORY_LIMIT, (res.status, res.message, res.stderr[-300:])
    assert res.memory_peak_bytes <= 96 * MiB


def test_compile_cache_hits_and_survives_restart(tmp_path: Path) -> None:
    src = '#include <stdio.h>\nint main(void) { puts("cached"); return 0; }\n'
    first = make_runner(tmp_path)
    a = first.run("c", src, Limits(), Grants())
    b = first.run("c", src, Limits(), Grants())
    assert (a.status, a.compile_cached, b.compile_cached) == (RunStatus.OK, False, True)
    again = make_runner(tmp_path).run("c", src, Limits(), Grants())
    assert again.stdout == b"cached\n" and again.compile_cached is True
    other = first.run("c", src + "\n", Limits(), Grants())
    assert other.compile_cached is False  # any change in the source is a new key


def test_compile_error_is_reported_not_internal(runner: SourceRunner) -> None:
    res = runner.run("c", "int main(void) { return x; }\n", Limits(), Grants())
    assert res.status is RunStatus.COMPILE_ERROR
    assert res.compile_output is not None and "undeclared identifier" in res.compile_output
    rust = runner.run("rust", "fn main() { let x: u32 = \"s\"; }\n", Limits(), Grants())
    assert rust.status is RunStatus.COMPILE_ERROR
    assert rust.compile_output is not None and "mismatched types" in rust.compile_output


def test_flags_allow_list(runner: SourceRunner) -> None:
    src = '#include <stdio.h>\nint main(void) { printf("%d\\n", VALUE); return 0; }\n'
    ok = runner.run("c", src, Limits(), Grants(), flags=["-DVALUE=42", "-O1"])
    assert ok.status is RunStatus.OK and ok.stdout == b"42\n"
    for bad in ("-I/etc", "-include/etc/passwd", "--sysroot=/", "-fplugin=x.so", "-o/x"):
        res = runner.run("c", src, Limits(), Grants(), flags=[bad])
        assert res.status is RunStatus.COMPILE_ERROR
        assert res.message is not None and "not allowed" in res.message


def test_source_jobs_fail_closed_without_jail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rust still compiles natively, in the jail: without one it is refused, and nothing
    is compiled or cached. C and C++ compile inside the sandbox: they need no jail."""
    monkeypatch.setattr(source_runner_module, "check_jail", lambda: "bwrap is not installed")
    r = make_runner(tmp_path)
    res = r.run("rust", PROGRAMS["rust"]["hello"], Limits(), Grants())
    assert res.status is RunStatus.UNSUPPORTED
    assert res.message is not None and "jail" in res.message
    assert not list((tmp_path / "compiled").glob("**/*.cwasm"))  # nothing compiled or cached
    for lang in ("c", "cpp"):
        done = r.run(lang, PROGRAMS[lang]["hello"], Limits(), Grants())
        assert done.status is RunStatus.OK and done.stdout == b"hello\n", (lang, done)


def test_concurrent_compiles_stay_separate(runner: SourceRunner) -> None:
    results: dict[int, RunResult] = {}

    def compile_one(i: int) -> None:
        src = f'#include <stdio.h>\nint main(void) {{ puts("tenant {i}"); return 0; }}\n'
        results[i] = runner.run("c", src, Limits(), Grants())

    threads = [threading.Thread(target=compile_one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        assert results[i].stdout == f"tenant {i}\n".encode()
    assert not any(runner.sandbox.settings.compile_root.iterdir())  # job dirs are removed


def test_interpreted_program_cannot_shadow_its_source(runner: SourceRunner) -> None:
    res = runner.run("python", "print(1)\n", Limits(), Grants(files={"app/main.py": b"x"}))
    assert res.status is RunStatus.UNSUPPORTED
    assert res.message is not None and "/app" in res.message


def test_python_runtime_choice(runner: SourceRunner, tmp_path: Path) -> None:
    """Warden's own CPython build is used when present; an empty toolchain dir means the
    pinned build; a build whose module does not match its record is not used."""
    assert python_runtime.select(tmp_path).version == python_runtime.pinned().version
    home = python_runtime.built_dir(tmp_path)
    home.mkdir(parents=True)
    (home / "python.wasm").write_bytes(b"\0asm tampered")
    (home / "BUILD-INFO.json").write_text('{"files": {"python.wasm": {"sha256": "00"}}}')
    assert python_runtime.optimised(tmp_path) is None
    assert python_runtime.select(tmp_path).version == python_runtime.pinned().version
    assert runner.python.version == LANGUAGES["python"].version


def test_interpreter_gets_args_and_files(runner: SourceRunner) -> None:
    src = "import sys\nprint(sys.argv[1:], open('/data.txt').read())\n"
    res = runner.run("python", src, Limits(), Grants(args=["a", "b"], files={"data.txt": b"D"}))
    assert res.status is RunStatus.OK, res.stderr
    assert res.stdout == b"['a', 'b'] D\n"
    js = "console.log(process.argv.slice(-2).join(','));\n"
    res = runner.run("javascript", js, Limits(), Grants(args=["x", "y"]))
    assert res.stdout == b"x,y\n", res.stderr


SECRET = "warden-test-secret-7f3a"


@pytest.fixture
def host_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("WARDEN_TEST_HOST_SECRET", SECRET)
    return SECRET


def leaked(res: RunResult) -> bool:
    text = b" ".join(
        [res.stdout, res.stderr, (res.message or "").encode(), (res.compile_output or "").encode()]
    )
    passwd = Path("/etc/passwd").read_bytes().splitlines()[0]
    return SECRET.encode() in text or passwd in text or b"root:x:0:0" in text


HOSTILE_C = {
    "include_passwd": '#include "/etc/passwd"\nint main(void) { return 0; }\n',
    "include_environ": '#include "/proc/self/environ"\nint main(void) { return 0; }\n',
    "include_host_environ": '#include "/proc/1/environ"\nint main(void) { return 0; }\n',
    "embed": "static const char d[] = {\n#embed \"/etc/passwd\"\n, 0};\n"
    '#include <stdio.h>\nint main(void) { puts(d); return 0; }\n',
    "incbin": '__asm__(".section .data.x,\\"\\",@\\n.incbin \\"/etc/passwd\\"\\n");\n'
    "int main(void) { return 0; }\n",
    "has_include": '#if __has_include("/etc/passwd")\n#error host file visible\n#endif\n'
    '#include <stdio.h>\nint main(void) { puts("not visible"); return 0; }\n',
    "million_errors": "int main(void) {\n" + "x;\n" * 1_000_000 + "}\n",
    "huge_array": "int a[0x10000000] = {1};\nint main(void) { return a[5]; }\n",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_C))
def test_hostile_c_source_reads_no_host_data(
    runner: SourceRunner, host_secret: str, case: str
) -> None:
    res = runner.run("c", HOSTILE_C[case], Limits(), Grants())
    assert not leaked(res)
    if case == "has_include":
        assert res.stdout == b"not visible\n"  # the host path does not exist in the jail
    else:  # includes the /proc cases: the jail has no procfs at all
        assert res.status is RunStatus.COMPILE_ERROR, (res.status, res.stdout[:200])
    if case == "million_errors":
        assert res.compile_output is not None and len(res.compile_output) < 70_000


SLOW_HOSTILE = {
    "c:dev_zero": ("c", '#include "/dev/zero"\nint main(void) { return 0; }\n'),
    "c:billion_laughs": (
        "c",
        "#define A x x x x x x x x x x\n"
        + "".join(f"#define {chr(66 + i)} {chr(65 + i)} {chr(65 + i)} {chr(65 + i)}"
                  f" {chr(65 + i)} {chr(65 + i)} {chr(65 + i)} {chr(65 + i)} {chr(65 + i)}"
                  f" {chr(65 + i)} {chr(65 + i)}\n" for i in range(9))
        + "int main(void) { J; }\n",
    ),
    "cpp:template_bomb": (
        "cpp",
        "template <int N> struct F { static const long v = F<N - 1>::v + F<N - 2>::v; };\n"
        "template <> struct F<1> { static const long v = 1; };\n"
        "template <> struct F<0> { static const long v = 0; };\n"
        "template <int N, int M> struct G { using T = typename G<N - 1, M>::T; };\n"
        "template <int M> struct G<0, M> { using T = int; };\n"
        "int main() { return (int)F<100000>::v + sizeof(G<1000000, 1>::T); }\n",
    ),
    "cpp:constexpr_bomb": (
        "cpp",
        "constexpr unsigned long long f(unsigned long long n) { unsigned long long s = 0;"
        " for (unsigned long long i = 0; i < n; ++i) s += i; return s; }\n"
        "constexpr unsigned long long x = f(1ull << 40);\nint main() { return (int)x; }\n",
    ),
}


@pytest.fixture(scope="module")
def strict_runner(tmp_path_factory: pytest.TempPathFactory) -> SourceRunner:
    """Short compile caps, so bombs end quickly. The compiler is loaded first, as a
    worker's warm-up does (1-3 s once per process, not part of any compile)."""
    runner = make_runner(
        tmp_path_factory.mktemp("strict"), source_compile_timeout_s=4.0,
        source_compile_memory_bytes=1024**3,
    )
    runner.clang.prepared()
    return runner


@pytest.mark.parametrize("case", sorted(SLOW_HOSTILE))
def test_compile_bombs_are_capped(strict_runner: SourceRunner, case: str) -> None:
    lang, src = SLOW_HOSTILE[case]
    started = time.monotonic()
    res = strict_runner.run(lang, src, Limits(), Grants())
    assert res.status is RunStatus.COMPILE_ERROR, (res.status, res.message)
    assert res.compile_output is not None and len(res.compile_output) <= 70_000
    assert not leaked(res)
    assert time.monotonic() - started < 4.0 + 3  # the 4 s cap, plus start-up and link
    # What stopped each one: clang's own evaluation limits, or the compile's wall cap. In
    # the sandbox no device exists to include, and clang (as WebAssembly, an assertions
    # build) may reach the 4 s cap before its constexpr step limit.
    expected = {
        "c:dev_zero": ("'/dev/zero' file not found",),
        "c:billion_laughs": ("",),
        "cpp:template_bomb": ("maximum depth",),
        "cpp:constexpr_bomb": ("constexpr", "compile time limit of 4 s exceeded"),
    }[case]
    assert any(e in res.compile_output for e in expected), res.compile_output[-300:]


HOSTILE_INTERPRETED = {
    "python:open_passwd": ("python", "print(open('/etc/passwd').read())\n"),
    "python:listdir": ("python", "import os\nprint(sorted(os.listdir('/')))\n"),
    "python:socket": ("python", "import socket\ns = socket.socket()\n"
                      "s.connect(('127.0.0.1', 6379))\nprint('connected')\n"),
    "python:subprocess": ("python", "import subprocess\n"
                          "print(subprocess.run(['cat', '/etc/passwd']))\n"),
    "python:environ": ("python", "import os\nprint(dict(os.environ))\n"),
    "javascript:loadFile": ("javascript", "console.log(std.loadFile('/etc/passwd'));\n"),
    "javascript:exec": ("javascript", "os.exec(['cat', '/etc/passwd']);\n"),
    "javascript:import_std": ("javascript", "import * as std from 'std';\n"
                              "console.log(std.loadFile('/etc/passwd'));\n"),
    "javascript:require": (
        "javascript", "console.log(require('fs').readFileSync('/etc/passwd'));\n"
    ),
    "ruby:read_passwd": ("ruby", 'puts File.read("/etc/passwd")\n'),
    "ruby:dir_entries": ("ruby", 'p Dir.entries("/").sort\n'),
    "ruby:system": ("ruby", 'system("cat /etc/passwd")\n'),
    "ruby:backticks": ("ruby", "puts `cat /etc/passwd`\n"),
    "ruby:socket": ("ruby", 'require "socket"\nTCPSocket.new("127.0.0.1", 6379)\n'),
    "ruby:environ": ("ruby", "p ENV.to_h\n"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_INTERPRETED))
def test_hostile_interpreted_source_reads_no_host_data(
    runner: SourceRunner, host_secret: str, case: str
) -> None:
    lang, src = HOSTILE_INTERPRETED[case]
    res = runner.run(lang, src, Limits(), Grants())
    assert not leaked(res)
    if case == "python:listdir":
        # The program, plus the pinned build's start-up overlay when that build runs.
        assert res.stdout in (b"['app']\n", b"['app', 'pylib']\n")
    elif case == "ruby:dir_entries":
        assert res.stdout == b'[".", "..", "app"]\n'
    elif case == "ruby:environ":
        assert res.stdout == b"{}\n"
    elif case == "ruby:system":  # ruby.wasm's system() runs nothing (and returns true)
        assert res.status is RunStatus.OK and res.stdout == b"", res
    elif case == "python:environ":
        # Only what the runtime itself sets: nothing of the host's.
        assert res.stdout in (b"{'PYTHONHOME': '/usr/local'}\n", b"{'PYTHONPATH': '/pylib'}\n")
    else:
        assert res.status is not RunStatus.OK, res.stdout
        assert res.stderr, "the failure is explained on stderr"


def test_rust_include_str_reads_no_host_data(runner: SourceRunner, host_secret: str) -> None:
    res = runner.run(
        "rust", 'const X: &str = include_str!("/etc/passwd");\nfn main() { print!("{}", X); }\n',
        Limits(), Grants(),
    )
    assert res.status is RunStatus.COMPILE_ERROR
    assert not leaked(res)


def test_secret_env_is_really_set(host_secret: str) -> None:
    """Guards the leak checks above: the secret they look for is in this process."""
    assert os.environ["WARDEN_TEST_HOST_SECRET"] == SECRET


RECURSION = {  # depth from stdin; prints the depth it reached
    "c": "#include <stdio.h>\nint f(int n) { volatile int pad = n;"
         " return n == 0 ? 0 : 1 + f(n - 1) + (pad - n); }\n"
         "int main(void) { int n; scanf(\"%d\", &n); printf(\"%d\\n\", f(n)); return 0; }\n",
    "rust": "fn f(n: u64, v: &mut Vec<u64>) -> u64 { if n == 0 { return 0; } v.push(n);"
            " let r = 1 + f(n - 1, v); v.pop(); r }\n"
            "fn main() { let mut s = String::new(); std::io::stdin().read_line(&mut s).unwrap();"
            " println!(\"{}\", f(s.trim().parse().unwrap(), &mut Vec::new())); }\n",
    "go": "package main\n\nimport \"fmt\"\n\nfunc f(n int) int {\n\tif n == 0 {\n\t\treturn 0\n"
          "\t}\n\treturn 1 + f(n-1)\n}\n\n"
          "func main() {\n\tvar n int\n\tfmt.Scan(&n)\n\tfmt.Println(f(n))\n}\n",
    "python": "import sys\nsys.setrecursionlimit(10**6)\n"
              "def f(n): return 0 if n == 0 else 1 + f(n - 1)\nprint(f(int(input())))\n",
    "javascript": "function f(n) { return n === 0 ? 0 : 1 + f(n - 1); }\n"
                  "console.log(f(Number(readline())));\n",
    "ruby": "def f(n) = n == 0 ? 0 : 1 + f(n - 1)\nputs f(gets.to_i)\n",
}
# What a judge's DFS needs at the default limits (measured: C ~10^5 levels per 8 MiB).
DEPTHS = {"c": 100_000, "rust": 50_000, "go": 100_000, "python": 20_000, "javascript": 5_000,
          "ruby": 5_000}


@pytest.mark.parametrize("lang", sorted(RECURSION))
def test_deep_recursion_fits_the_default_stack(runner: SourceRunner, lang: str) -> None:
    depth = DEPTHS[lang]
    res = runner.run(lang, RECURSION[lang], Limits(), Grants(stdin=f"{depth}\n".encode()))
    assert res.status is RunStatus.OK, (res.status, res.trap_kind, res.stderr[-300:],
                                        res.compile_output)
    assert res.stdout == f"{depth}\n".encode()
    # Far deeper still ends cleanly: a trap, or the language's own error.
    res = runner.run(lang, RECURSION[lang], Limits(), Grants(stdin=b"50000000\n"))
    assert res.status in (RunStatus.TRAP, RunStatus.NONZERO_EXIT, RunStatus.MEMORY_LIMIT), (
        res.status, res.message)


def test_language_default_limits_apply_only_where_the_tenant_set_none() -> None:
    from sandboxes.schema import LIMIT_BOUNDS, JobSubmission
    from service.submit import to_spec

    default_fuel = int(LIMIT_BOUNDS["fuel"].default)
    python = LANGUAGES["python"]
    assert python.limits(Limits()).fuel == 3 * default_fuel
    assert LANGUAGES["c"].limits(Limits()).fuel == default_fuel
    sub = JobSubmission.model_validate_json(
        '{"language": "python", "source": "print(1)", "limits": {"fuel": 1000000000}}'
    )
    spec, _ = to_spec(sub)
    assert spec.limits.fuel == 1_000_000_000  # the tenant's own value wins
    spec, _ = to_spec(JobSubmission.model_validate_json(
        '{"language": "javascript", "source": "1", "limits": {"memory_bytes": "64MiB"}}'))
    assert (spec.limits.fuel, spec.limits.memory_bytes) == (3 * default_fuel, 64 * MiB)


def test_registry_rust_version_is_the_installed_one() -> None:
    from sandboxes.languages.toolchains.rust import DEBIAN_RUSTC_VERSION, rust_version

    assert rust_version().split(" (")[0] == DEBIAN_RUSTC_VERSION
    assert DEBIAN_RUSTC_VERSION in LANGUAGES["rust"].version


def test_rust_errors_come_in_rustc_full_human_format(runner: SourceRunner) -> None:
    """The short format dropped the source excerpt and the notes (``expected due to
    this``); users get rustc's whole message."""
    res = runner.run("rust", 'fn main() { let x: i32 = "a"; println!("{x}"); }\n', Limits(),
                     Grants())
    assert res.status is RunStatus.COMPILE_ERROR, res
    text = res.compile_output or ""
    assert "error[E0308]: mismatched types" in text, text
    assert "--> main.rs:1:" in text and "expected due to this" in text, text
    assert "\x1b[" not in text  # no colour codes


def test_a_recursion_trap_message_is_short_and_says_why_first(runner: SourceRunner) -> None:
    from tests import wat_modules as W

    res = runner.sandbox.run(W.RECURSE, Limits())
    message = res.message or ""
    assert res.status is RunStatus.TRAP and message.startswith("wasm trap: call stack exhausted")
    assert len(message.splitlines()) <= 12 and "(x" in message, message
