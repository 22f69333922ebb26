"""`warden run` end to end, as a subprocess (the way users call it)."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sandboxes.exit_codes import MEANING, ExitCode, exit_code
from sandboxes.languages.registry import LANGUAGES
from sandboxes.schema import RunResult, RunStatus, TrapKind
from tests import wat_modules as W
from tests.conftest import FIXTURES

README = Path(__file__).resolve().parents[1] / "README.md"


def warden(*args: str, data_dir: Path,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "sandboxes.cli", *args],
        capture_output=True,
        timeout=300,
        env={"WARDEN_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin", **(env or {})},
        check=False,
    )


def test_run_wat_human(tmp_path: Path) -> None:
    module = tmp_path / "hello.wat"
    module.write_text(W.HELLO)
    proc = warden("run", str(module), data_dir=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout == b"hello\n"
    assert b"status=ok" in proc.stderr
    assert b"panicked" not in proc.stderr


def test_run_json_with_grants(tmp_path: Path) -> None:
    stdin = tmp_path / "in.txt"
    stdin.write_bytes(b"from stdin\n")
    proc = warden(
        "run", str(FIXTURES / "env_args.wasm"), "--arg", "x", "--env", "K=V",
        "--stdin", str(stdin), "--fuel", "100000000", "--memory", "64MiB", "--timeout", "2s",
        "--json", data_dir=tmp_path,
    )
    result = json.loads(proc.stdout)
    assert result["status"] == "nonzero_exit" and result["exit_code"] == 7
    assert proc.returncode == 7
    import base64

    out = base64.b64decode(result["stdout"]).decode()
    assert "ENV K=V" in out and out.endswith("from stdin\n")


def test_limit_exit_code_and_bad_options(tmp_path: Path) -> None:
    module = tmp_path / "loop.wat"
    module.write_text(W.LOOP)
    proc = warden("run", str(module), "--fuel", "10000", data_dir=tmp_path)
    assert proc.returncode == 124 and b"fuel_exhausted" in proc.stderr
    proc = warden("run", str(module), "--memory", "lots", data_dir=tmp_path)
    assert proc.returncode == 125 and b"not a size" in proc.stderr
    proc = warden("run", str(tmp_path / "missing.wasm"), data_dir=tmp_path)
    assert proc.returncode == 125 and b"cannot read module" in proc.stderr
    proc = warden("run", str(module), "--env", "novalue", data_dir=tmp_path)
    assert proc.returncode == 125 and b"NAME=VALUE" in proc.stderr
    assert b"Traceback" not in proc.stderr


READ_FILE = """(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "input.txt")
  (func (export "_start")
    (drop (call $open (i32.const 3) (i32.const 0) (i32.const 16) (i32.const 9) (i32.const 0)
                      (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 32)))
    (i32.store (i32.const 40) (i32.const 1024)) (i32.store (i32.const 44) (i32.const 512))
    (drop (call $read (i32.load (i32.const 32)) (i32.const 40) (i32.const 1) (i32.const 48)))
    (i32.store (i32.const 44) (i32.load (i32.const 48)))
    (drop (call $write (i32.const 1) (i32.const 40) (i32.const 1) (i32.const 52)))))"""


def test_run_with_a_granted_file(tmp_path: Path) -> None:
    module = tmp_path / "cat.wat"
    module.write_text(READ_FILE)
    data = tmp_path / "data.txt"
    data.write_bytes(b"granted file contents\n")
    proc = warden("run", str(module), "--file", f"input.txt={data}", data_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"granted file contents\n"
    # Without the grant the file does not exist for the guest: nothing is printed.
    proc = warden("run", str(module), data_dir=tmp_path)
    assert proc.stdout == b""
    proc = warden("run", str(module), "--file", f"../x={data}", data_dir=tmp_path)
    assert proc.returncode == 125 and b"relative path" in proc.stderr
    assert b"Traceback" not in proc.stderr


def test_languages_lists_the_registry(tmp_path: Path) -> None:
    from sandboxes.languages.registry import LANGUAGES

    proc = warden("languages", "--json", data_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert [lang["id"] for lang in listed] == list(LANGUAGES)
    assert {lang["id"]: lang["judge0_id"] for lang in listed}["rust"] == 73
    human = warden("languages", data_dir=tmp_path)
    assert human.returncode == 0 and b"Rust" in human.stdout and b"1.63" in human.stdout


def test_exit_codes_above_255_never_exit_0(tmp_path: Path) -> None:
    """A shell keeps 8 bits of an exit code: a guest's 256 must not read as success."""
    for code, expected in ((256, 255), (512, 255), (300, 255), (255, 255), (3, 3)):
        module = tmp_path / f"exit{code}.wat"
        module.write_text(W.PROC_EXIT.format(code=code))
        proc = warden("run", str(module), data_dir=tmp_path)
        assert proc.returncode == expected, (code, proc.returncode, proc.stderr)
        assert b"status=nonzero_exit" in proc.stderr and f"exit={code}".encode() in proc.stderr


def test_sizes_and_durations_too_large_are_one_clear_line(tmp_path: Path) -> None:
    module = tmp_path / "hello.wat"
    module.write_text(W.HELLO)
    huge = "1" + "0" * 400
    for option, value in (("--memory", huge + "MiB"), ("--stack", huge),
                          ("--scratch", huge + "KiB"), ("--timeout", huge + "s")):
        proc = warden("run", str(module), option, value, data_dir=tmp_path)
        assert proc.returncode == 125, (option, proc.stderr)
        assert b"Traceback" not in proc.stderr and proc.stderr.count(b"\n") == 1, proc.stderr
        assert b"too large" in proc.stderr or b"too long" in proc.stderr, proc.stderr


# -- exit codes ----------------------------------------------------------------------------
def test_every_status_has_an_exit_code_and_limits_traps_and_compile_errors_differ() -> None:
    codes = {status: exit_code(RunResult(status=status, exit_code=3))
             for status in RunStatus}
    assert codes[RunStatus.OK] == 0 and codes[RunStatus.NONZERO_EXIT] == 3
    assert codes[RunStatus.TRAP] == ExitCode.TRAP
    assert codes[RunStatus.COMPILE_ERROR] == ExitCode.COMPILE_ERROR
    assert codes[RunStatus.INVALID_MODULE] == ExitCode.REJECTED
    assert codes[RunStatus.INTERNAL_ERROR] == ExitCode.INTERNAL
    assert codes[RunStatus.CANCELLED] == ExitCode.CANCELLED
    for limit in (RunStatus.FUEL_EXHAUSTED, RunStatus.WALL_TIMEOUT, RunStatus.MEMORY_LIMIT,
                  RunStatus.OUTPUT_LIMIT, RunStatus.SCRATCH_LIMIT):
        assert codes[limit] == ExitCode.LIMIT, limit
    overflow = RunResult(status=RunStatus.TRAP, trap_kind=TrapKind.STACK_OVERFLOW)
    assert exit_code(overflow) == ExitCode.LIMIT  # the stack limit's doing
    assert len(set(ExitCode)) == len(ExitCode) and set(MEANING) == set(ExitCode)


def test_the_exit_codes_are_in_the_readme_and_in_help(tmp_path: Path) -> None:
    """Generated-checked: the README's table says exactly what the code does."""
    section = README.read_text().split("### Command line", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", section, re.M))
    assert rows == {str(int(code)): text for code, text in MEANING.items()}
    shown = warden("run", "--help", data_dir=tmp_path, env={"COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.decode().split())
    for code, meaning in MEANING.items():
        assert f"{int(code)}: {' '.join(meaning.split())}" in text, code


def test_a_trap_a_limit_and_a_stack_overflow_exit_differently(tmp_path: Path) -> None:
    codes = {}
    for name, wat, options in (("trap", W.UNREACHABLE, ()), ("div", W.DIV_ZERO, ()),
                               ("fuel", W.LOOP, ("--fuel", "10000")),
                               ("stack", W.RECURSE, ("--stack", "64KiB"))):
        module = tmp_path / f"{name}.wat"
        module.write_text(wat)
        proc = warden("run", str(module), *options, data_dir=tmp_path)
        codes[name] = proc.returncode
        assert b"Traceback" not in proc.stderr, proc.stderr
    assert codes == {"trap": 123, "div": 123, "fuel": 124, "stack": 124}, codes


def _fresh(text: str) -> str:
    """Source no compile cache has seen (so its compile time is its own)."""
    return f"{text}\n// {random.getrandbits(64)}\n"


def test_a_rust_panic_is_a_trap_and_a_compile_error_is_its_own_code(tmp_path: Path) -> None:
    panic = tmp_path / "panic.rs"
    panic.write_text(_fresh('fn main() { let v: Vec<i32> = Vec::new(); println!("{}", v[3]); }'))
    proc = warden("run", str(panic), data_dir=tmp_path)
    assert proc.returncode == ExitCode.TRAP, proc.stderr
    assert b"panicked" in proc.stderr and b"status=trap" in proc.stderr
    bad = tmp_path / "bad.c"
    bad.write_text(_fresh("int main(void) { return nope; }"))
    proc = warden("run", str(bad), data_dir=tmp_path)
    assert proc.returncode == ExitCode.COMPILE_ERROR, proc.stderr


# -- what a file is ------------------------------------------------------------------------
def test_an_unknown_suffix_asks_for_lang_instead_of_parsing_wat(tmp_path: Path) -> None:
    program = tmp_path / "prog.txt"
    program.write_text('#include <stdio.h>\nint main(void) { puts("c via --lang"); }\n')
    proc = warden("run", str(program), data_dir=tmp_path)
    assert proc.returncode == ExitCode.REJECTED
    message = proc.stderr.decode()
    assert "--lang" in message and "expected `(`" not in message, message
    assert all(language in message for language in LANGUAGES), message
    assert message.count("\n") == 1, message
    proc = warden("run", str(program), "--lang", "c", data_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"c via --lang\n"
    proc = warden("run", str(program), "--lang", "cobol", data_dir=tmp_path)
    assert proc.returncode == ExitCode.REJECTED and b"unknown language 'cobol'" in proc.stderr
    # wasm bytes are a module under any name; .wat stays WAT
    renamed = tmp_path / "hello.bin"
    renamed.write_bytes((FIXTURES / "hello.wasm").read_bytes())
    proc = warden("run", str(renamed), data_dir=tmp_path)
    assert proc.returncode == 0 and proc.stdout == b"hello\n", proc.stderr


def test_source_is_never_called_a_module(tmp_path: Path) -> None:
    proc = warden("run", str(tmp_path / "main.rs"), data_dir=tmp_path)
    assert proc.returncode == ExitCode.REJECTED
    assert b"cannot read source" in proc.stderr and b"module" not in proc.stderr, proc.stderr
    proc = warden("run", str(tmp_path / "main.wat"), data_dir=tmp_path)
    assert b"cannot read module" in proc.stderr, proc.stderr


def test_help_lists_every_language_suffix(tmp_path: Path) -> None:
    proc = warden("run", "--help", data_dir=tmp_path, env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    for language in LANGUAGES.values():
        suffix = Path(language.file_name).suffix
        assert re.search(rf"{re.escape(suffix)}\b", proc.stdout.decode()), suffix


# -- the summary line ----------------------------------------------------------------------
def test_a_compile_error_summary_has_no_run_figures(tmp_path: Path) -> None:
    bad = tmp_path / "bad.c"
    bad.write_text(_fresh("int main(void) { return undeclared_name; }"))
    proc = warden("run", str(bad), data_dir=tmp_path)
    lines = proc.stderr.decode().splitlines()
    assert any("undeclared_name" in line for line in lines), lines  # the compiler's words
    summary = next(line for line in lines if line.startswith("[warden] status="))
    assert re.fullmatch(r"\[warden\] status=compile_error compile=\d+\.\d\dms", summary), summary
    assert lines[-1] == "[warden] compilation failed", lines
    again = warden("run", str(bad), data_dir=tmp_path)  # the verdict, from the cache
    assert "[warden] status=compile_error compile=cached" in again.stderr.decode()


def test_a_compiled_run_reports_its_compile_time(tmp_path: Path) -> None:
    source = tmp_path / "hi.c"
    source.write_text(_fresh('#include <stdio.h>\nint main(void) { puts("hi"); return 0; }'))
    proc = warden("run", str(source), data_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = proc.stderr.decode().splitlines()[-1]
    assert re.fullmatch(r"\[warden\] status=ok exit=0 time=\S+ fuel=\d+ memory=\S+ "
                        r"compile=\d+\.\d\dms", summary), summary
    again = warden("run", str(source), data_dir=tmp_path)  # both caches hit: nothing compiled
    assert again.returncode == 0 and b"compile=" not in again.stderr, again.stderr


# -- settings ------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [("languages",), ("run", "x.wat"), ("warm",),
                                     ("run", "--help")])
def test_a_bad_setting_is_one_line_naming_it_and_its_range(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    proc = warden(*command, data_dir=tmp_path, env={"WARDEN_WORKERS": "0"})
    assert proc.returncode == 2, proc
    assert proc.stderr.startswith(b"warden: WARDEN_WORKERS=0: must be an integer from 1 to "
                                  b"256 (default "), proc.stderr
    assert proc.stderr.count(b"\n") == 1 and proc.stdout == b"", proc


def test_help_still_works_with_a_bad_setting(tmp_path: Path) -> None:
    proc = warden("--help", data_dir=tmp_path, env={"WARDEN_MAX_BODY_BYTES": "lots"})
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr
    assert b"run" in proc.stdout and b"warm" in proc.stdout


# -- warm ----------------------------------------------------------------------------------
def test_warm_shows_each_step_and_a_summary_of_times(data_dir: Path) -> None:
    """Against the session's data dir (the interpreters compiled once per test session)
    and the machine's toolchains (built by install.sh's own `warden warm`)."""
    proc = warden("warm", "--no-python", data_dir=data_dir, env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    progress, summary = proc.stderr.decode(), proc.stdout.decode()
    steps = ["C and C++ compiler (clang as WebAssembly)",
             "Go standard library, compiler and linker for wasip1", "zig libc and libc++ sysroot",
             "python interpreter", "javascript interpreter", "ruby interpreter"]
    for step in steps:
        assert f"… {step}\n" in progress, progress  # as it starts
        assert re.search(rf"^✓ {re.escape(step)} \d+\.\ds$", progress, re.M), progress
        assert re.search(rf"│ {re.escape(step)} +│ +\d+\.\ds │ ok", summary), summary
    assert [progress.index(f"… {step}") for step in steps] == sorted(
        progress.index(f"… {step}") for step in steps)
    assert re.search(r"│ total +│ +\d+\.\ds │", summary), summary
    assert "toolchains ready in" in summary


def test_limit_errors_name_the_limit_in_plain_words(tmp_path: Path) -> None:
    module = tmp_path / "hello.wat"
    module.write_text(W.HELLO)
    proc = warden("run", str(module), "--memory", "10GiB", data_dir=tmp_path)
    assert proc.returncode == 125, proc.stderr
    assert b"memory must be at most 4GiB" in proc.stderr, proc.stderr
    assert b"4294967296" not in proc.stderr
