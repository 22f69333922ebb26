"""A worker with no user namespaces, no capabilities and a read-only root (what a
Kubernetes pod with the default seccomp profile and a read-only root filesystem gives)
serves WebAssembly, C, C++, Go, Python, JavaScript and Ruby: their compilers and
interpreters run inside the sandbox. Rust, which still compiles natively in the bwrap jail,
is refused with a clear message. ``warden run`` is the worker's own code path (a SourceRunner)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def _locked_down(tmp_path: Path, *command: str) -> subprocess.CompletedProcess[bytes]:
    """``command`` under an outer jail that denies user namespaces, drops every capability
    and makes the whole root read-only: only a private /tmp and the data dir are writable
    (the toolchains and their machine code, built by `warden warm`, are read-only)."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "tmp").mkdir(exist_ok=True)
    jail = ["bwrap", "--ro-bind", "/", "/", "--bind", str(data), str(data),
            "--dev", "/dev", "--proc", "/proc", "--unshare-user", "--disable-userns",
            "--cap-drop", "ALL", "--die-with-parent", "--setenv", "WARDEN_DATA_DIR", str(data),
            "--setenv", "TMPDIR", str(data / "tmp"), "--chdir", str(ROOT), "--"]
    return subprocess.run([*jail, *command], capture_output=True, timeout=600, check=False)


def test_the_outer_jail_really_denies_namespaces(tmp_path: Path) -> None:
    nested = _locked_down(tmp_path, "bwrap", "--unshare-user", "--ro-bind", "/", "/", "true")
    assert nested.returncode != 0 and b"namespace" in nested.stderr, nested


@pytest.mark.parametrize(("example", "expected"), [
    ("hello.wat", b"hello"), ("hello.c", b"hello"), ("hello.cpp", b"hello"),
    ("hello.go", b"hello"), ("hello.py", b"hello"), ("hello.js", b"hello"),
    ("hello.rb", b"hello"),
])
def test_locked_down_worker_serves_the_sandboxed_languages(
        tmp_path: Path, example: str, expected: bytes) -> None:
    done = _locked_down(tmp_path, sys.executable, "-m", "sandboxes.cli", "run",
                        str(EXAMPLES / example))
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert expected in done.stdout.lower(), done.stdout
    assert b"status=ok" in done.stderr


def test_rust_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    done = _locked_down(tmp_path, sys.executable, "-m", "sandboxes.cli", "run",
                        str(EXAMPLES / "hello.rs"))
    assert done.returncode == 125, done  # unsupported
    text = done.stderr.decode()
    assert "status=unsupported" in text and "compile jail unavailable" in text, text
