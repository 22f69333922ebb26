"""The compile jail and the compile cache on their own: caps that fire, what a jailed
process can see, what is cached and what is not. Real bwrap, real zig."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sandboxes.languages.compile_cache import CompileCache, compile_key
from sandboxes.languages.registry import LANGUAGES
from sandboxes.languages.source_runner import SourceRunner
from sandboxes.languages.toolchains.base import CompileOutcome
from sandboxes.languages.toolchains.jail import Bind, Jail, JailLimits
from sandboxes.languages.toolchains.zig import SYSROOT_GUEST, ZIG_DIR
from sandboxes.schema import Grants, Limits, RunResult, RunStatus
from tests.test_languages import leaked, make_runner

# A jail with a shell, for probing the jail itself (never used for tenant code).
SHELL_JAIL = Jail(
    binds=[Bind(Path("/usr"))],
    symlinks={"/bin": "usr/bin", "/lib": "usr/lib", "/lib64": "usr/lib64"},
)
LIMITS = JailLimits(wall_s=10, memory_bytes=1 << 30, output_bytes=4096, file_bytes=1 << 20)


def sh(script: str, job_dir: Path, limits: JailLimits = LIMITS) -> tuple[int, str, bool, bool]:
    res = SHELL_JAIL.run(["/bin/sh", "-c", script], job_dir, limits)
    return res.returncode, res.output.decode(), res.timed_out, res.output_truncated


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> SourceRunner:
    r = make_runner(tmp_path_factory.mktemp("jail"))
    r.warm()
    return r


# -- the jail's caps ----------------------------------------------------------------------
def test_wall_cap_kills_the_whole_group(tmp_path: Path) -> None:
    started = time.monotonic()
    code, _, timed_out, _ = sh("sleep 30 & sleep 30", tmp_path,
                               JailLimits(1.0, 1 << 30, 4096, 1 << 20))
    assert timed_out and code != 0
    assert time.monotonic() - started < 5


def test_output_cap_stops_the_process(tmp_path: Path) -> None:
    started = time.monotonic()
    _, out, timed_out, truncated = sh("yes flood", tmp_path)
    assert truncated and not timed_out
    assert len(out) == LIMITS.output_bytes
    assert time.monotonic() - started < 5


def test_memory_cap(tmp_path: Path) -> None:
    code, out, _, _ = sh("/usr/bin/python3 -c 'b = bytearray(1 << 30)' && echo allocated",
                         tmp_path, JailLimits(10, 256 << 20, 4096, 1 << 20))
    assert code != 0 and "MemoryError" in out and "allocated" not in out, out
    code, out, _, _ = sh("/usr/bin/python3 -c 'b = bytearray(1 << 20)' && echo allocated",
                         tmp_path, JailLimits(10, 256 << 20, 4096, 1 << 20))
    assert code == 0 and "allocated" in out, out  # the cap, not a broken interpreter


def test_file_size_cap(tmp_path: Path) -> None:
    code, _, _, _ = sh("head -c 2000000 /dev/zero > /work/big", tmp_path)
    assert code != 0
    assert (tmp_path / "big").stat().st_size <= LIMITS.file_bytes


def test_tmp_is_small_and_private(tmp_path: Path) -> None:
    code, out, _, _ = sh("df -k /tmp 2>/dev/null | tail -1; echo x > /tmp/mark", tmp_path)
    assert code == 0, out
    size_kib = int(out.split()[1])
    assert size_kib <= 256 * 1024  # a capped tmpfs, not the host's RAM
    code, out, _, _ = sh("ls -a /tmp", tmp_path)
    assert "mark" not in out  # each run starts with an empty /tmp


def test_no_proc_no_host_files_no_network_no_env(tmp_path: Path) -> None:
    _, out, _, _ = sh(
        "ls /; cat /proc/self/mountinfo /proc/cpuinfo /etc/passwd 2>&1; env;"
        " /usr/bin/python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 6379))'"
        " 2>&1 | tail -1", tmp_path,
    )
    assert "mountinfo" in out and "No such file" in out
    assert "root:x:0:0" not in out
    assert str(tmp_path) not in out  # the host path behind /work stays unnamed
    assert "PATH=/usr/bin:/bin" in out and "WARDEN" not in out
    assert "Network is unreachable" in out or "Connection refused" in out, out


def test_toolchain_is_read_only(runner: SourceRunner, tmp_path: Path) -> None:
    """The shared sysroot cannot be written by one tenant's compile to poison another's."""
    jail = runner.zig.jail()
    cmd = jail.command(["/zig/zig", "version"], tmp_path)
    ro = [cmd[i + 2] for i, a in enumerate(cmd) if a == "--ro-bind"]
    assert SYSROOT_GUEST in ro and "/zig" in ro
    assert "--bind" in cmd and cmd[cmd.index("--bind") + 2] == "/work"  # the only writable bind
    # zig's caches live in the throwaway /tmp, never in a shared directory.
    env = {cmd[i + 1]: cmd[i + 2] for i, a in enumerate(cmd) if a == "--setenv"}
    assert env["ZIG_GLOBAL_CACHE_DIR"].startswith("/tmp/")
    assert env["ZIG_LOCAL_CACHE_DIR"].startswith("/tmp/")
    for archive in runner.zig.sysroot.iterdir():
        assert archive.stat().st_mode & 0o222 == 0, archive


# -- hostile source against /proc and host paths --------------------------------------------
PROC_SOURCES = {
    "mountinfo": '#include "/proc/self/mountinfo"\nint main(void) { return 0; }\n',
    "cpuinfo": '#include "/proc/cpuinfo"\nint main(void) { return 0; }\n',
    "version": '#include "/proc/version"\nint main(void) { return 0; }\n',
    "environ": '#include "/proc/self/environ"\nint main(void) { return 0; }\n',
    "exe_is_zig": '#include "/proc/self/exe"\nint main(void) { return 0; }\n',
}


@pytest.mark.parametrize("case", sorted(PROC_SOURCES))
def test_proc_is_not_in_the_jail(runner: SourceRunner, case: str) -> None:
    res = runner.run("c", PROC_SOURCES[case], Limits(), Grants())
    assert res.status is RunStatus.COMPILE_ERROR, res.status
    text = f"{res.compile_output}{res.message}"
    assert not leaked(res)
    for host_path in (str(runner.sandbox.settings.data_dir), str(ZIG_DIR)):
        assert host_path not in text


def test_concurrent_tenants_cannot_see_each_other(runner: SourceRunner) -> None:
    """Two compiles at once: each has its own job dir, and neither can name the host
    directory that holds both."""
    root = runner.sandbox.settings.compile_root
    probe = (
        f'#if __has_include("{root}") || __has_include("/work/../compile-jobs")\n'
        '#error other jobs visible\n#endif\n'
    )
    slow = "".join(f"int f{i}(int x) {{ return x * {i} + 1; }}\n" for i in range(5000))
    srcs = {
        "a": probe + slow + '#include <stdio.h>\nint main(void) { puts("a"); return 0; }\n',
        "b": probe + '#include <stdio.h>\nint main(void) { puts("b"); return 0; }\n',
    }
    outcomes = run_at_once(lambda src: runner.run("c", src, Limits(), Grants()), srcs)
    (a0, a1, a), (b0, b1, b) = outcomes["a"], outcomes["b"]
    assert a.stdout == b"a\n", a
    assert b.stdout == b"b\n", b
    assert b0 < a1 and a0 < b1  # the two compiles overlapped in time


def run_at_once(
    run: Callable[[str], RunResult], sources: dict[str, str]
) -> dict[str, tuple[float, float, RunResult]]:
    """Each source run on its own thread, all started together: (start, end, result)."""
    outcomes: dict[str, tuple[float, float, RunResult]] = {}

    def one(name: str, src: str) -> None:
        started = time.monotonic()
        res = run(src)
        outcomes[name] = (started, time.monotonic(), res)

    threads = [threading.Thread(target=one, args=item) for item in sources.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


# -- the compile cache ----------------------------------------------------------------------
def test_compile_key_covers_every_input() -> None:
    base = compile_key("c", "zig-1/abc", ["-O2"], b"src")
    variants = {
        compile_key("cpp", "zig-1/abc", ["-O2"], b"src"),
        compile_key("c", "zig-1/abd", ["-O2"], b"src"),
        compile_key("c", "zig-1/abc", ["-O1"], b"src"),
        compile_key("c", "zig-1/abc", ["-O2", "-DX"], b"src"),
        compile_key("c", "zig-1/abc", ["-DX", "-O2"], b"src"),
        compile_key("c", "zig-1/abc", ["-O2"], b"src "),
        compile_key("c", "zig-1/abc", [], b"-O2src"),  # no ambiguity between fields
    }
    assert base not in variants and len(variants) == 7
    assert compile_key("c", "zig-1/abc", ["-O2"], b"src") == base


def test_toolchain_version_includes_the_recipe(runner: SourceRunner) -> None:
    for lang in ("c", "cpp", "zig", "rust", "go"):
        version = runner.toolchain_version(LANGUAGES[lang])
        name, recipe = version.rsplit("/", 1)
        assert len(recipe) == 12 and name, version


@pytest.mark.parametrize(
    "first",
    [
        CompileOutcome(None, "bwrap: No permissions to creating new namespace", transient=True),
        CompileOutcome(None, "killed", transient=True),
        CompileOutcome(None, "[compile time limit of 4 s exceeded]", timed_out=True),
    ],
)
def test_failures_outside_the_source_are_not_cached(tmp_path: Path,
                                                    first: CompileOutcome) -> None:
    cache = CompileCache(tmp_path, 8, 1 << 20)
    calls: list[int] = []

    def flaky() -> CompileOutcome:
        calls.append(1)
        return first if len(calls) == 1 else CompileOutcome(b"\0asm\1\0\0\0", "")

    one, cached_one = cache.get("k", flaky)
    two, cached_two = cache.get("k", flaky)
    three, cached_three = cache.get("k", flaky)
    assert (one.wasm, cached_one) == (None, False)
    assert (two.wasm, cached_two) == (b"\0asm\1\0\0\0", False)  # compiled again
    assert (three.wasm, cached_three) == (b"\0asm\1\0\0\0", True)
    assert len(calls) == 2


def test_compile_errors_are_cached(tmp_path: Path) -> None:
    cache = CompileCache(tmp_path, 8, 1 << 20)
    calls: list[int] = []

    def broken() -> CompileOutcome:
        calls.append(1)
        return CompileOutcome(None, "main.c:1: error: expected ';'")

    cache.get("k", broken)
    again, cached = cache.get("k", broken)
    assert cached and again.message == "main.c:1: error: expected ';'" and len(calls) == 1


def test_compiler_output_cap_stops_a_flood(runner: SourceRunner) -> None:
    """Warnings do not count against clang's error limit: the output cap has to stop it."""
    src = "#warning w\n" * 200_000 + "int main(void) { return 0; }\n"
    started = time.monotonic()
    res = runner.run("c", src, Limits(), Grants())
    assert res.status is RunStatus.COMPILE_ERROR
    assert res.compile_output is not None and "[compiler output cut at" in res.compile_output
    assert len(res.compile_output) <= runner.sandbox.settings.compile_output_bytes + 200
    assert time.monotonic() - started < runner.sandbox.settings.source_compile_timeout_s


# -- flags per language ---------------------------------------------------------------------
FLAG_CASES = {
    "cpp": (["-std=c++17", "-O1", "-DX=1", "-Wall"], ["-I/etc", "-fplugin=x.so", "-x", "c"]),
    "zig": (["-OReleaseFast"], ["-femit-bin=/work/x", "--zig-lib-dir", "-I/etc"]),
    "rust": (["--edition=2018", "-Copt-level=1", "-Coverflow-checks=on"],
             ["-L/etc", "--extern", "-Clinker=/bin/sh", "--cfg", "-Zunstable-options"]),
    "go": (["-gcflags=-B"], ["-gcflags=-N", "-ldflags=-X main.x=1", "-toolexec=/bin/sh",
                             "-o", "-overlay=/x", "-tags=x", "-mod=mod"]),
    "python": ([], ["-O", "-c"]),
    "javascript": ([], ["--std"]),
    "ruby": ([], ["-e", "-rsocket", "--enable-gems"]),
}


@pytest.mark.parametrize("lang", sorted(FLAG_CASES))
def test_flag_allow_list_per_language(lang: str) -> None:
    allowed, refused = FLAG_CASES[lang]
    language = LANGUAGES[lang]
    assert language.check_flags(allowed) is None
    for flag in refused:
        problem = language.check_flags([flag])
        assert problem is not None and "not allowed" in problem, flag
    if allowed:
        too_many = language.check_flags(allowed * 17)
        assert too_many is not None and "at most" in too_many


def test_rust_codegen_flag_keeps_optimisation(runner: SourceRunner) -> None:
    assert "-O" in runner.rust.command(["-Coverflow-checks=on"])
    assert "-Coverflow-checks=on" in runner.rust.command(["-Coverflow-checks=on"])
    assert "-O" not in runner.rust.command(["-Copt-level=1"])
    src = "fn main() { let v: u8 = 255; let n = std::env::args().count() as u8;" \
          ' println!("{}", v + n); }\n'
    res = runner.run("rust", src, Limits(), Grants(), flags=["-Coverflow-checks=on"])
    assert res.status is RunStatus.TRAP or res.status is RunStatus.NONZERO_EXIT, res.status
    assert b"overflow" in res.stderr  # the checks the flag asked for are really on
