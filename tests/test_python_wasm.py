"""The Python runtime (CPython 3.12 for WASI) through the real Sandbox, with Warden's limits.

One interpreter is prepared per module; its compiled artifact is kept in a persistent temp
dir so only the first test session pays the ~4-12 s compile of the 26 MB module.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxes.languages.toolchains import python_wasm
from sandboxes.languages.toolchains.python_wasm import (
    ARGV0,
    PYTHON_MODULE_LIMIT_BYTES,
    PythonRuntimeError,
    python_args,
    python_grants,
    python_wasm_bytes,
)
from sandboxes.runtime.sandbox import Prepared, Sandbox
from sandboxes.schema import Limits, RunResult, RunStatus
from sandboxes.settings import Settings

LIMITS = Limits(module_bytes=PYTHON_MODULE_LIMIT_BYTES, fuel=3_000_000_000, wall_time_s=20)
CACHE_DIR = Path(tempfile.gettempdir()) / "warden-test-python-wasm"


@pytest.fixture(scope="module")
def python() -> Iterator[tuple[Sandbox, Prepared]]:
    sb = Sandbox(Settings(data_dir=CACHE_DIR))
    try:
        # The first compile takes 4 s idle, a minute on a busy 2-core machine.
        yield sb, sb.prepare(python_wasm_bytes(), LIMITS, compile_timeout_s=600)
    finally:
        sb.compiler.close()


def run(
    python: tuple[Sandbox, Prepared],
    source: str,
    stdin: bytes = b"",
    limits: Limits = LIMITS,
    args: list[str] | None = None,
    files: dict[str, bytes] | None = None,
) -> RunResult:
    sb, prepared = python
    grants = python_grants(source, stdin=stdin, args=args or [], files=files)
    return sb.run_prepared(prepared, limits, grants, argv0=ARGV0)


def test_pinned_file_is_verified() -> None:
    path = python_wasm.python_wasm_path()
    assert path.name == "python-3.12.0.wasm"
    python_wasm.verify(path)


def test_tampered_file_is_rejected(tmp_path: Path) -> None:
    fake = tmp_path / "python.wasm"
    fake.write_bytes(b"\0asm" + b"\0" * (python_wasm.WASM_SIZE - 4))
    with pytest.raises(PythonRuntimeError, match="SHA-256"):
        python_wasm.verify(fake)
    short = tmp_path / "short.wasm"
    short.write_bytes(b"\0asm")
    with pytest.raises(PythonRuntimeError, match="bytes"):
        python_wasm.verify(short)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PythonRuntimeError, match="cannot read"):
        python_wasm.verify(tmp_path / "missing.wasm")


def test_argv_and_grants() -> None:
    assert python_wasm.python_argv("/app/main.py") == ["python", "-s", "/app/main.py"]
    assert python_args(extra=["a"]) == ["-s", "/app/main.py", "a"]
    grants = python_grants("print(1)", args=["a"], env={"PYTHONPATH": "/app/lib", "X": "1"})
    assert grants.args == ["-s", "/app/main.py", "a"]
    assert grants.env == {"PYTHONPATH": "/pylib:/app/lib", "X": "1"}
    assert grants.files["app/main.py"] == b"print(1)"
    assert sorted(grants.files) == [
        "app/main.py",
        "pylib/encodings/__init__.pyc",
        "pylib/encodings/aliases.pyc",
        "pylib/encodings/utf_8.pyc",
        "pylib/sitecustomize.pyc",
    ]
    with pytest.raises(ValueError, match="reserved"):
        python_grants("", files={"pylib/x.py": b""})


def test_hello(python: tuple[Sandbox, Prepared]) -> None:
    r = run(python, "import sys\nprint('hello', sys.version_info[:2], sys.argv)", args=["x"])
    assert r.status is RunStatus.OK, r
    assert r.stdout == b"hello (3, 12) ['/app/main.py', 'x']\n"
    assert r.stderr == b""
    assert 0 < r.fuel_used < 200_000_000  # ~157 M with the overlay; ~248 M without


def test_exit_quit_and_codecs(python: tuple[Sandbox, Prepared]) -> None:
    src = (
        "import sys\n"
        "print('é'.encode('latin-1'), 'ü'.encode('utf-16-le'), '€'.encode('cp1252'))\n"
        "print(sys.stdout.encoding, sys.modules['encodings'].__file__)\n"
        "exit(5)"
    )
    r = run(python, src)
    assert r.status is RunStatus.NONZERO_EXIT and r.exit_code == 5, r
    assert r.stdout == (
        b"b'\\xe9' b'\\xfc\\x00' b'\\x80'\nutf-8 /pylib/encodings/__init__.pyc\n"
    )
    assert run(python, "quit()").status is RunStatus.OK


def test_user_modules_import(python: tuple[Sandbox, Prepared]) -> None:
    r = run(python, "import helper\nprint(helper.VALUE)", files={"app/helper.py": b"VALUE = 7"})
    assert r.status is RunStatus.OK, r
    assert r.stdout == b"7\n"


def test_input_and_stdin(python: tuple[Sandbox, Prepared]) -> None:
    src = "name = input()\nprint('hi', name)\nimport sys\nprint(repr(sys.stdin.read()))"
    r = run(python, src, stdin=b"ada\nrest\nof it")
    assert r.status is RunStatus.OK, r
    assert r.stdout == b"hi ada\n'rest\\nof it'\n"


def test_sys_exit_code(python: tuple[Sandbox, Prepared]) -> None:
    r = run(python, "print('before')\nimport sys\nsys.exit(3)")
    assert r.status is RunStatus.NONZERO_EXIT
    assert r.exit_code == 3
    assert r.stdout == b"before\n"


def test_exception_traceback(python: tuple[Sandbox, Prepared]) -> None:
    r = run(python, "def f():\n    raise ValueError('boom')\nf()")
    assert r.status is RunStatus.NONZERO_EXIT
    assert r.exit_code == 1
    assert b"Traceback (most recent call last)" in r.stderr
    assert b'File "/app/main.py", line 2, in f' in r.stderr
    assert b"ValueError: boom" in r.stderr


def test_infinite_loop_runs_out_of_fuel(python: tuple[Sandbox, Prepared]) -> None:
    limits = LIMITS.model_copy(update={"fuel": 500_000_000})
    r = run(python, "while True:\n    pass", limits=limits)
    assert r.status is RunStatus.FUEL_EXHAUSTED


@pytest.mark.parametrize(
    "source",
    ["x = bytearray(10**9)", "x = []\nwhile True:\n    x.append(bytearray(1 << 20))"],
)
def test_memory_bomb(python: tuple[Sandbox, Prepared], source: str) -> None:
    limits = LIMITS.model_copy(update={"memory_bytes": 64 * 1024 * 1024})
    r = run(python, source, limits=limits)
    assert r.status in (RunStatus.MEMORY_LIMIT, RunStatus.NONZERO_EXIT), r
    assert r.memory_peak_bytes <= limits.memory_bytes
    if r.status is RunStatus.NONZERO_EXIT:
        assert b"MemoryError" in r.stderr


def test_no_host_files(python: tuple[Sandbox, Prepared]) -> None:
    src = (
        "import os\n"
        "try:\n    print(open('/etc/passwd').read())\nexcept OSError as e:\n    print('no', e)\n"
        "try:\n    print(open('../../../../etc/passwd').read())\n"
        "except OSError as e:\n    print('no', e)\n"
        "print(sorted(os.listdir('/')))\n"
        "print(sorted(os.listdir('/app')))\n"
    )
    r = run(python, src)
    assert r.status is RunStatus.OK, r
    assert b"root:" not in r.stdout
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith("no ") and lines[1].startswith("no ")
    assert lines[2] == "['app', 'pylib']"  # the script and the runtime's overlay only
    assert lines[3] == "['main.py']"


def test_no_sockets(python: tuple[Sandbox, Prepared]) -> None:
    src = "import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 80))\nprint('connected')"
    r = run(python, src)
    assert r.status is RunStatus.NONZERO_EXIT, r
    assert b"connected" not in r.stdout
    assert b"OSError" in r.stderr  # WASI preview1 here has no socket creation at all


def test_no_subprocess(python: tuple[Sandbox, Prepared]) -> None:
    r = run(python, "import subprocess\nsubprocess.run(['ls'])\nprint('ran')")
    assert r.status is RunStatus.NONZERO_EXIT, r
    assert b"ran" not in r.stdout
    assert b"does not support processes" in r.stderr
    r = run(python, "import os\nos.system('ls')")
    assert r.status is RunStatus.NONZERO_EXIT and b"has no attribute 'system'" in r.stderr
