"""Build Warden's JavaScript interpreter: QuickJS-NG plus our driver, as a WASI P1 command.

The engine sources come from the pinned ``quickjs-ng`` sdist on PyPI (its
``upstream-quickjs/`` folder); the archive's SHA-256 is checked by pip (``--require-hashes``,
before pip runs anything from it) and again here. Only the engine's own ``.c``/``.h`` files
are taken out of the archive, by base name, so no archive path ever reaches the filesystem.
``driver.c`` and ``inspect.js`` (the console formatter, embedded as a generated header) sit
next to this file. Compiling needs PyPI ``ziglang``; nothing is downloaded except the sdist
(and whatever pip needs to read its metadata).

    python -m sandboxes.toolchains.quickjs.build OUT.wasm [--work-dir DIR]

The module runs as ``["qjs", "/app/main.js", *args]`` with the script in a read-only
preopen; see driver.c for the JavaScript API (console, readline, readStdin, ...).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

QUICKJS_NG_VERSION: Final = "0.17.0.2"
"""Version of the ``quickjs-ng`` sdist on PyPI (the Python binding's release)."""
QUICKJS_NG_SDIST_SHA256: Final = (
    "43d2e48272208721a7aaea8e3f02d4b9318f12ef20cc4f5421b59d9a470706ef"
)
QUICKJS_ENGINE_VERSION: Final = "0.17.0"
"""QuickJS-NG engine version inside that sdist (``QJS_VERSION_*`` in quickjs.h)."""
DRIVER_VERSION: Final = 1
"""Bump when driver.c or inspect.js change behaviour."""
TOOLCHAIN_VERSION: Final = f"QuickJS-NG {QUICKJS_ENGINE_VERSION} (warden driver {DRIVER_VERSION})"

ENGINE_SOURCES: Final = ("quickjs.c", "libregexp.c", "libunicode.c", "dtoa.c")
HERE: Final = Path(__file__).resolve().parent
DRIVER_C: Final = HERE / "driver.c"
INSPECT_JS: Final = HERE / "inspect.js"

# Linear-memory (shadow) stack of the module, and the part of it QuickJS may use before it
# throws "RangeError: Maximum call stack size exceeded". See docs/notes/quickjs.md.
WASM_STACK_BYTES: Final = 1024 * 1024
JS_STACK_BYTES: Final = 256 * 1024

COMPILE_FLAGS: Final = (
    "-target", "wasm32-wasi", "-O2",
    "-D_WASI_EMULATED_SIGNAL", "-D_GNU_SOURCE",
    "-fno-strict-aliasing", "-Wno-everything",
)
LINK_FLAGS: Final = (
    "-target", "wasm32-wasi", "-O2", "-s",
    "-lwasi-emulated-signal",
    f"-Wl,-z,stack-size={WASM_STACK_BYTES}",
)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_SDIST_NAME: Final = f"quickjs_ng-{QUICKJS_NG_VERSION}.tar.gz"
_MAX_MEMBER_BYTES: Final = 16 * 1024 * 1024
_COMMAND_TIMEOUT_S: Final = 900.0


class BuildError(RuntimeError):
    """The interpreter could not be built (download, checksum, archive or compiler)."""


def toolchain_version() -> str:
    """Human-readable version of the built interpreter, e.g. for the languages registry."""
    return TOOLCHAIN_VERSION


def build_fingerprint() -> str:
    """SHA-256 over everything that determines the output: cache built modules on it."""
    h = hashlib.sha256()
    for part in (
        QUICKJS_NG_VERSION, QUICKJS_NG_SDIST_SHA256, str(DRIVER_VERSION),
        repr(COMPILE_FLAGS), repr(LINK_FLAGS), str(JS_STACK_BYTES), zig_version(),
    ):
        h.update(part.encode() + b"\0")
    h.update(DRIVER_C.read_bytes() + b"\0")
    h.update(INSPECT_JS.read_bytes())
    return h.hexdigest()


def zig_version() -> str:
    try:
        from importlib.metadata import version

        return version("ziglang")
    except Exception:
        return "unknown"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _run(cmd: Sequence[str], what: str, cwd: Path | None = None) -> None:
    try:
        proc = subprocess.run(
            list(cmd), cwd=cwd, capture_output=True, timeout=_COMMAND_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{what}: timed out after {_COMMAND_TIMEOUT_S:.0f} s") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).decode(errors="replace")[-4000:]
        raise BuildError(f"{what} failed (exit {proc.returncode}):\n{detail}")


def fetch_sdist(work_dir: Path) -> Path:
    """The pinned sdist in ``work_dir`` (downloaded with pip unless already there), verified."""
    work_dir.mkdir(parents=True, exist_ok=True)
    archive = work_dir / _SDIST_NAME
    if archive.is_file() and _sha256_file(archive) == QUICKJS_NG_SDIST_SHA256:
        return archive
    requirements = work_dir / "quickjs-ng-requirements.txt"
    requirements.write_text(
        f"quickjs-ng=={QUICKJS_NG_VERSION} --hash=sha256:{QUICKJS_NG_SDIST_SHA256}\n"
    )
    _run(
        [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--require-hashes", "--disable-pip-version-check", "-r", str(requirements),
            "-d", str(work_dir),
        ],
        "pip download quickjs-ng",
    )
    if not archive.is_file():
        raise BuildError(f"pip did not produce {archive}")
    digest = _sha256_file(archive)
    if digest != QUICKJS_NG_SDIST_SHA256:
        raise BuildError(
            f"{archive.name}: sha256 {digest} != pinned {QUICKJS_NG_SDIST_SHA256}"
        )
    return archive


def unpack_engine(archive: Path, dest: Path) -> Path:
    """Copy the engine's ``upstream-quickjs/*.c|*.h`` regular files flat into ``dest``.

    Members are matched by exact path and written under their base name, so links, device
    files, absolute paths and ``..`` in the archive are never followed or created.
    """
    if _sha256_file(archive) != QUICKJS_NG_SDIST_SHA256:
        raise BuildError(f"{archive}: checksum mismatch")
    dest.mkdir(parents=True, exist_ok=True)
    prefix = f"quickjs_ng-{QUICKJS_NG_VERSION}/upstream-quickjs/"
    found: set[str] = set()
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if not member.name.startswith(prefix):
                continue
            name = member.name[len(prefix):]
            if not member.isreg() or "/" in name or not _SAFE_NAME.fullmatch(name):
                continue
            if not name.endswith((".c", ".h")) or member.size > _MAX_MEMBER_BYTES:
                continue
            src = tar.extractfile(member)
            if src is None:
                continue
            with src:
                data = src.read(_MAX_MEMBER_BYTES + 1)
            (dest / name).write_bytes(data)
            found.add(name)
    missing = [s for s in (*ENGINE_SOURCES, "quickjs.h") if s not in found]
    if missing:
        raise BuildError(f"{archive.name} lacks {', '.join(missing)}")
    return dest


def _write_inspect_header(dest: Path) -> None:
    """inspect.js as a NUL-terminated C byte array (no escaping pitfalls)."""
    data = INSPECT_JS.read_bytes() + b"\0"
    rows = [
        ",".join(str(b) for b in data[i : i + 32]) for i in range(0, len(data), 32)
    ]
    text = (
        "/* generated by build.py from inspect.js: do not edit */\n"
        "static const char warden_inspect_js[] = {\n" + ",\n".join(rows) + "\n};\n"
    )
    (dest / "inspect_js.h").write_text(text)


def _zig_cc() -> list[str]:
    return [sys.executable, "-m", "ziglang", "cc"]


def build_quickjs(out_path: Path, work_dir: Path, jobs: int = 2) -> None:
    """Build the interpreter to ``out_path`` (atomically: temp file, then rename).

    ``work_dir`` keeps the sdist, sources and objects (reused by later builds).
    Raises BuildError with the tool's message on any failure.
    """
    work_dir = work_dir.resolve()
    out_path = out_path.resolve()
    archive = fetch_sdist(work_dir)
    src = unpack_engine(archive, work_dir / "src")
    _write_inspect_header(src)
    (src / "driver.c").write_bytes(DRIVER_C.read_bytes())
    objs = work_dir / "obj"
    objs.mkdir(exist_ok=True)
    units = [*ENGINE_SOURCES, "driver.c"]

    def compile_one(name: str) -> Path:
        obj = objs / (Path(name).stem + ".o")
        extra = [f"-DWARDEN_JS_STACK={JS_STACK_BYTES}"] if name == "driver.c" else []
        _run(
            [*_zig_cc(), *COMPILE_FLAGS, *extra, "-I", str(src), "-c", str(src / name),
             "-o", str(obj)],
            f"compile {name}",
        )
        return obj

    # quickjs.c is most of the work: start it first so the others overlap with it.
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        objects = list(pool.map(compile_one, units))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=out_path.name + ".", suffix=".tmp", dir=out_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _run([*_zig_cc(), *LINK_FLAGS, *map(str, objects), "-o", str(tmp)], "link qjs.wasm")
        tmp.chmod(0o644)
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_built(cache_dir: Path) -> Path:
    """``cache_dir/qjs-<fingerprint>.wasm``, built first if missing (sdist kept in the cache).

    The name changes whenever the pinned sdist, driver.c, inspect.js, flags or zig change,
    so a stale module is never reused; old ones are left for the caller to prune.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = cache_dir / f"qjs-{build_fingerprint()[:16]}.wasm"
    if not out.is_file():
        build_quickjs(out, cache_dir / "work")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Build {TOOLCHAIN_VERSION} for WASI")
    parser.add_argument("out", type=Path, help="where to write the .wasm")
    parser.add_argument(
        "--work-dir", type=Path, default=None,
        help="keep downloads and objects here (default: a temporary directory)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="parallel compiles (default 2)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        if args.work_dir is None:
            with tempfile.TemporaryDirectory(prefix="warden-quickjs-") as tmp:
                build_quickjs(args.out, Path(tmp), args.jobs)
        else:
            build_quickjs(args.out, args.work_dir, args.jobs)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = args.out.stat().st_size
    elapsed = time.perf_counter() - started
    print(f"{TOOLCHAIN_VERSION}: {args.out} ({size} bytes) built in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
