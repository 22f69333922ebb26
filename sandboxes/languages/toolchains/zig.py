"""C, C++ and Zig → wasm32-wasi with the ``ziglang`` package's zig, inside the jail.

Zig builds libc, libc++ and compiler_rt into its global cache on first use (tens of
seconds). Sharing one writable cache between tenants would let one compile poison
another's, and zig cannot use a read-only cache. So: a trusted warm-up builds those
libraries once, copies the finished archives into a read-only *sysroot*, and every
untrusted compile only compiles its own source (``-c``, private throwaway caches) and links
against the sysroot with ``zig wasm-ld``. Nothing a tenant's compile writes outlives it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from sandboxes.languages.toolchains.base import (
    CompileOutcome,
    Step,
    compile_in_jail,
    file_lock,
    within_budget,
)
from sandboxes.languages.toolchains.jail import Bind, Jail, JailLimits

_SPEC = importlib.util.find_spec("ziglang")
assert _SPEC is not None and _SPEC.origin is not None, "the ziglang package is not installed"
ZIG_DIR = Path(_SPEC.origin).resolve().parent
ZIG_VERSION = importlib.metadata.version("ziglang")
SYSROOT_GUEST = "/sysroot"
ZIG_GUEST = "/zig"

# Archives the warm-up keeps, in link order (libc++ before libc++abi before libc).
C_LIBS = ("libc.a", "libzigc.a")
CXX_LIBS = ("libc++.a", "libc++abi.a")
RT_LIBS = ("libcompiler_rt.a",)
CRT = "crt1-command.o"

# zig's own defaults for wasm32-wasi commands, with a bounded error count.
LINK_FLAGS = (
    "--error-limit=20", "--export-memory", "--strip-all", "--stack-first",
    "--entry", "_start", "-z", "stack-size=16777216", "--build-id=none",
)
COMMON_CC_FLAGS = ("-target", "wasm32-wasi", "-ferror-limit=20", "-fno-exceptions")

_WARM_C = b'#include <stdio.h>\nint main(void) { puts("warm"); return 0; }\n'
_WARM_CXX = b'#include <iostream>\nint main() { std::cout << "warm" << std::endl; }\n'


class ZigToolchain:
    """One zig version: its read-only sysroot and the jail that uses it."""

    def __init__(self, toolchain_dir: Path, work_root: Path, limits: JailLimits) -> None:
        self.home = toolchain_dir / f"zig-{ZIG_VERSION}"
        self.sysroot = self.home / "sysroot"
        self.work_root = work_root
        self.limits = limits
        self.version = ZIG_VERSION

    # -- warm-up (trusted input only) -----------------------------------------------------
    def ensure_sysroot(self) -> Path:
        """Build the sysroot once per machine; concurrent callers wait on one file lock."""
        if (self.sysroot / CRT).exists():
            return self.sysroot
        self.home.mkdir(parents=True, exist_ok=True)
        with file_lock(self.home / ".lock"):
            if not (self.sysroot / CRT).exists():
                self._build_sysroot()
        return self.sysroot

    def _build_sysroot(self) -> None:
        with tempfile.TemporaryDirectory(dir=self.home) as tmp:
            work = Path(tmp)
            env = {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(work / "g"),
                   "ZIG_LOCAL_CACHE_DIR": str(work / "l")}
            (work / "warm.cpp").write_bytes(_WARM_CXX)
            proc = subprocess.run(
                [sys.executable, "-m", "ziglang", "c++", *COMMON_CC_FLAGS, "-O2", "-v",
                 "warm.cpp", "-o", "warm.wasm"],
                cwd=work, env=env, capture_output=True, text=True, timeout=1800, check=False,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"zig warm-up failed: {proc.stderr[-2000:]}")
            link = next(
                (ln for ln in proc.stderr.splitlines() if ln.startswith("wasm-ld ")), ""
            )
            found = {
                Path(tok).name: work / tok for tok in link.split() if tok.endswith((".a", ".o"))
            }
            staged = work / "sysroot"
            staged.mkdir()
            for name in (CRT, *C_LIBS, *CXX_LIBS, *RT_LIBS):
                if name not in found:
                    raise RuntimeError(f"zig warm-up did not link {name}: {link}")
                shutil.copyfile(found[name], staged / name)
                (staged / name).chmod(0o444)
            staged.rename(self.sysroot)

    # -- untrusted compiles ----------------------------------------------------------------
    def jail(self) -> Jail:
        return Jail(
            binds=[Bind(ZIG_DIR, ZIG_GUEST), Bind(self.sysroot, SYSROOT_GUEST)],
            self_exe=f"{ZIG_GUEST}/zig",  # zig finds its lib dir from its own path
            env={
                "ZIG_GLOBAL_CACHE_DIR": "/tmp/zig-global",  # private, gone after the compile
                "ZIG_LOCAL_CACHE_DIR": "/tmp/zig-local",
            },
        )

    def compile_c(self, source: bytes, flags: Sequence[str], cxx: bool,
                  budget_s: float | None = None) -> CompileOutcome:
        self.ensure_sysroot()
        name = "main.cpp" if cxx else "main.c"
        driver = "c++" if cxx else "cc"
        std = ("-std=c++20",) if cxx else ("-std=c17",)
        libs = (*CXX_LIBS, *C_LIBS) if cxx else C_LIBS
        compile_step = Step(
            [f"{ZIG_GUEST}/zig", driver, *COMMON_CC_FLAGS, "-O2", *std, *flags,
             "-c", name, "-o", "main.o"]
        )
        return compile_in_jail(
            self.jail(), self.work_root, name, source,
            [compile_step, self._link_step([f"{SYSROOT_GUEST}/{CRT}", "main.o", *self._sys(libs)])],
            "main.wasm", within_budget(self.limits, budget_s),
        )

    def compile_zig(self, source: bytes, flags: Sequence[str],
                    budget_s: float | None = None) -> CompileOutcome:
        self.ensure_sysroot()
        mode = [f for f in flags if f.startswith("-O")] or ["-OReleaseSafe"]
        rest = [f for f in flags if not f.startswith("-O")]
        compile_step = Step(
            [f"{ZIG_GUEST}/zig", "build-obj", "main.zig", "-target", "wasm32-wasi",
             "-O", mode[-1][2:], "-fstrip", *rest, "-femit-bin=main.o"]
        )
        return compile_in_jail(
            self.jail(), self.work_root, "main.zig", source,
            [compile_step, self._link_step(["main.o"])],
            "main.wasm", within_budget(self.limits, budget_s),
        )

    def _link_step(self, inputs: Sequence[str]) -> Step:
        return Step(
            [f"{ZIG_GUEST}/zig", "wasm-ld", *LINK_FLAGS, "-o", "main.wasm", *inputs,
             *self._sys(RT_LIBS)]
        )

    @staticmethod
    def _sys(names: Sequence[str]) -> list[str]:
        return [f"{SYSROOT_GUEST}/{n}" for n in names]
