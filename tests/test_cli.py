"""`warden run` end to end, as a subprocess (the way users call it)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests import wat_modules as W
from tests.conftest import FIXTURES


def warden(*args: str, data_dir: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "sandboxes.cli", *args],
        capture_output=True,
        timeout=120,
        env={"WARDEN_DATA_DIR": str(data_dir), "PATH": "/usr/bin:/bin"},
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
