"""Build Warden's JavaScript interpreter: QuickJS-NG plus our driver, as a WASI P1 command.

The engine sources come from the pinned ``quickjs-ng`` sdist on PyPI (its
``upstream-quickjs/`` folder); the archive's SHA-256 is checked by pip (``--require-hashes``,
before pip runs anything from it) and again here. Only the engine's own ``.c``/``.h`` files
are taken out of the archive, by base name, so no archive path ever reaches the filesystem.
``driver.c`` and ``inspect.js`` (the console formatter, embedded as a generated header) sit
next to this file. Compiling needs PyPI ``ziglang``; nothing is downloaded except the sdist
(and whatever pip needs to read its metadata).

    python -m sandboxes.languages.toolchains.quickjs.build OUT.wasm [--work-dir DIR]

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

from sandboxes.languages.toolchains.base import file_lock
from sandboxes.languages.toolchains.wasm_bytes import (
    read_sleb,
    read_uleb,
    sha256_file,
    split_sections,
    write_name,
    write_sleb,
    write_uleb,
)
from sandboxes.languages.toolchains.zig import ZIG_VERSION

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
# The host passes ``--stack-size`` = a quarter of the run's wasm (native) stack (native
# frames are up to ~3.3x the shadow ones), so the shadow stack is sized for the largest
# stack limit (64 MiB -> 16 MiB) plus the driver's 64 KiB reserve. Untouched, it costs no
# memory.
WASM_STACK_BYTES: Final = 16 * 1024 * 1024 + 64 * 1024
JS_STACK_BYTES: Final = 2 * 1024 * 1024  # without --stack-size: for the default 8 MiB

COMPILE_FLAGS: Final = (
    "-target", "wasm32-wasi", "-O2",
    "-D_WASI_EMULATED_SIGNAL", "-D_GNU_SOURCE",
    "-fno-strict-aliasing", "-Wno-everything",
    "-Werror=implicit-function-declaration", "-Werror=int-conversion",
    "-Werror=incompatible-pointer-types",
)
# Reactor (exports _initialize, warden_init, warden_start): build.py pre-initialises it and
# turns it into a command whose _start is warden_start. See snapshot_reactor().
LINK_FLAGS: Final = (
    "-target", "wasm32-wasi", "-O2", "-s", "-mexec-model=reactor",
    "-lwasi-emulated-signal",
    f"-Wl,-z,stack-size={WASM_STACK_BYTES}",
)
# Plain command (main), no snapshot: ~1.6 M more instructions per run. For debugging.
COMMAND_LINK_FLAGS: Final = tuple(f for f in LINK_FLAGS if f != "-mexec-model=reactor")
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
        repr(COMPILE_FLAGS), repr(LINK_FLAGS), str(JS_STACK_BYTES), ZIG_VERSION,
        str(SNAPSHOT_FORMAT),
    ):
        h.update(part.encode() + b"\0")
    h.update(Path(__file__).read_bytes() + b"\0")
    h.update(DRIVER_C.read_bytes() + b"\0")
    h.update(INSPECT_JS.read_bytes())
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
    if archive.is_file() and sha256_file(archive) == QUICKJS_NG_SDIST_SHA256:
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
    digest = sha256_file(archive)
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
    if sha256_file(archive) != QUICKJS_NG_SDIST_SHA256:
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


# -- pre-initialisation ("wizening") -------------------------------------------------------
SNAPSHOT_FORMAT: Final = 1
_WASM_PAGE: Final = 65536
_SEGMENT_GAP: Final = 64  # zero runs shorter than this stay inside a data segment
_SEC_MEMORY, _SEC_GLOBAL, _SEC_EXPORT, _SEC_START = 5, 6, 7, 8
_SEC_DATA, _SEC_DATACOUNT = 11, 12


def _sections(module: bytes) -> list[tuple[int, bytes]]:
    sections = split_sections(module)
    if sections is None:
        raise BuildError("not a core wasm module")
    return sections


def _stack_top(global_section: bytes) -> int:
    """Initial value of global 0, which wasm-ld makes ``__stack_pointer`` (mutable i32)."""
    count, pos = read_uleb(global_section, 0)
    if count < 1 or global_section[pos] != 0x7F or global_section[pos + 1] != 1:
        raise BuildError("global 0 is not a mutable i32 (__stack_pointer)")
    if global_section[pos + 2] != 0x41:
        raise BuildError("__stack_pointer is not initialised by i32.const")
    value, _ = read_sleb(global_section, pos + 3)
    return value


def _data_segments(memory: bytes) -> list[tuple[int, bytes]]:
    """Non-zero runs of ``memory`` as (offset, bytes), short zero gaps merged in."""
    runs: list[list[int]] = []
    for match in re.finditer(rb"[^\x00]+", memory):
        start, end = match.span()
        if runs and start - runs[-1][1] < _SEGMENT_GAP:
            runs[-1][1] = end
        else:
            runs.append([start, end])
    return [(start, memory[start:end]) for start, end in runs]


def rewrite_snapshot(reactor: bytes, memory: bytes) -> bytes:
    """The reactor with ``memory`` as its initial memory and ``warden_start`` as ``_start``.

    Only the memory, export, data and data-count sections change; code, tables and globals
    stay as linked. The shadow stack (below the initial ``__stack_pointer``) is dead once
    the initialiser returned, so it is zeroed rather than stored.
    """
    sections = _sections(reactor)
    ids = [sid for sid, _ in sections]
    if _SEC_START in ids:
        raise BuildError("reactor has a start section")
    if len(memory) % _WASM_PAGE:
        raise BuildError("memory snapshot is not whole pages")
    globals_ = next((body for sid, body in sections if sid == _SEC_GLOBAL), None)
    if globals_ is None:
        raise BuildError("reactor has no globals")
    stack_top = _stack_top(globals_)
    if not 0 < stack_top <= len(memory):
        raise BuildError(f"unexpected __stack_pointer {stack_top}")
    image = bytes(stack_top) + memory[stack_top:]
    segments = _data_segments(image)
    out = bytearray(reactor[:8])
    for sid, body in sections:
        if sid == _SEC_MEMORY:
            count, pos = read_uleb(body, 0)
            flags = body[pos]
            if count != 1 or flags not in (0, 1):
                raise BuildError("expected one 32-bit memory")
            _, rest = read_uleb(body, pos + 1)
            pages = write_uleb(len(memory) // _WASM_PAGE)
            body = write_uleb(1) + bytes([flags]) + pages + body[rest:]
        elif sid == _SEC_EXPORT:
            count, pos = read_uleb(body, 0)
            entries: list[bytes] = []
            seen: set[str] = set()
            for _ in range(count):
                length, pos = read_uleb(body, pos)
                name = body[pos : pos + length].decode()
                pos += length
                kind = body[pos]
                index, pos = read_uleb(body, pos + 1)
                if name in ("_initialize", "warden_init"):
                    continue
                if name == "warden_start":
                    name = "_start"
                elif name == "_start":
                    raise BuildError("reactor already exports _start")
                seen.add(name)
                entries.append(write_name(name) + bytes([kind]) + write_uleb(index))
            if "_start" not in seen:
                raise BuildError("reactor does not export warden_start")
            body = write_uleb(len(entries)) + b"".join(entries)
        elif sid == _SEC_DATACOUNT:
            body = write_uleb(len(segments))
        elif sid == _SEC_DATA:
            count, pos = read_uleb(body, 0)
            for _ in range(count):  # only active segments of memory 0 can be replaced safely
                if body[pos] != 0:
                    raise BuildError("reactor has passive or indexed data segments")
                if body[pos + 1] != 0x41:
                    raise BuildError("data segment offset is not i32.const")
                _, pos = read_sleb(body, pos + 2)
                if body[pos] != 0x0B:
                    raise BuildError("data segment offset expression too long")
                size, pos = read_uleb(body, pos + 1)
                pos += size
            body = write_uleb(len(segments)) + b"".join(
                b"\x00\x41" + write_sleb(offset - (1 << 32) if offset >= 1 << 31 else offset)
                + b"\x0b" + write_uleb(len(chunk)) + chunk
                for offset, chunk in segments
            )
        out.append(sid)
        out += write_uleb(len(body)) + body
    return bytes(out)


def snapshot_reactor(reactor: bytes) -> bytes:
    """Run ``_initialize`` and ``warden_init`` once and bake the resulting memory in.

    The initialiser runs under wasmtime with an empty WASI context (no args, env, files or
    stdio); what depends on the run (preopens, argv, env, clocks, Math.random) is set up
    again by ``warden_start``. Saves ~1.6 M instructions (most of a hello-world run).
    """
    import wasmtime

    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    try:
        instance = linker.instantiate(store, wasmtime.Module(engine, reactor))
        exports = instance.exports(store)
        initialize, init, memory = (
            exports["_initialize"], exports["warden_init"], exports["memory"]
        )
        if not (
            isinstance(initialize, wasmtime.Func) and isinstance(init, wasmtime.Func)
            and isinstance(memory, wasmtime.Memory)
        ):
            raise BuildError("reactor exports have unexpected types")
        initialize(store)
        status = init(store)
        if status != 0:
            raise BuildError(f"warden_init failed with {status}")
        image = bytes(memory.read(store, 0, memory.data_len(store)))
    except wasmtime.WasmtimeError as exc:
        raise BuildError(f"pre-initialisation failed: {exc}") from exc
    snapshot = rewrite_snapshot(reactor, image)
    try:
        wasmtime.Module.validate(engine, snapshot)
    except wasmtime.WasmtimeError as exc:
        raise BuildError(f"snapshot module does not validate: {exc}") from exc
    return snapshot


def build_quickjs(
    out_path: Path, work_dir: Path, jobs: int = 2, snapshot: bool = True
) -> None:
    """Build the interpreter to ``out_path`` (atomically: temp file, then rename).

    ``work_dir`` keeps the sdist, sources and objects (reused by later builds).
    ``snapshot=False`` gives a plain command without pre-initialisation (slower start).
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
        extra = []
        if name == "driver.c":
            extra = [
                f"-DWARDEN_JS_STACK={JS_STACK_BYTES}", f"-DWARDEN_WASM_STACK={WASM_STACK_BYTES}",
                "-Wall", "-Wextra",
            ]
            if snapshot:
                extra.append("-DWARDEN_SNAPSHOT")
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
        flags = LINK_FLAGS if snapshot else COMMAND_LINK_FLAGS
        _run([*_zig_cc(), *flags, *map(str, objects), "-o", str(tmp)], "link qjs.wasm")
        if snapshot:
            tmp.write_bytes(snapshot_reactor(tmp.read_bytes()))
        tmp.chmod(0o644)
        tmp.replace(out_path)
    finally:
        tmp.unlink(missing_ok=True)


def ensure_built(cache_dir: Path) -> Path:
    """``cache_dir/qjs-<fingerprint>.wasm``, built first if missing (sdist kept in the cache).

    The name changes whenever the pinned sdist, driver.c, inspect.js, build.py, flags or zig
    change, so a stale module is never reused; older ``qjs-*.wasm`` there are removed.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = cache_dir / f"qjs-{build_fingerprint()[:16]}.wasm"
    if out.is_file():
        return out
    with file_lock(cache_dir / ".build.lock"):  # one builder per cache dir
        if not out.is_file():
            build_quickjs(out, cache_dir / "work")
            for old in cache_dir.glob("qjs-*.wasm"):  # builds of earlier sources
                if old != out and re.fullmatch(r"qjs-[0-9a-f]{16}\.wasm", old.name):
                    old.unlink(missing_ok=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Build {TOOLCHAIN_VERSION} for WASI")
    parser.add_argument("out", type=Path, help="where to write the .wasm")
    parser.add_argument(
        "--work-dir", type=Path, default=None,
        help="keep downloads and objects here (default: a temporary directory)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="parallel compiles (default 2)")
    parser.add_argument(
        "--no-snapshot", action="store_true", help="plain command, no pre-initialisation"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        if args.work_dir is None:
            with tempfile.TemporaryDirectory(prefix="warden-quickjs-") as tmp:
                build_quickjs(args.out, Path(tmp), args.jobs, not args.no_snapshot)
        else:
            build_quickjs(args.out, args.work_dir, args.jobs, not args.no_snapshot)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    size = args.out.stat().st_size
    elapsed = time.perf_counter() - started
    print(f"{TOOLCHAIN_VERSION}: {args.out} ({size} bytes) built in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
