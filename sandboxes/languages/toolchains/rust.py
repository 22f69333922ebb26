"""Rust → wasm32-wasi with Debian's ``rustc`` (1.63) and its wasm32-wasi standard library.

The rustup ``rustc`` usually first on PATH has no WASI std and cannot fetch one here, so the
Debian build at /usr/bin/rustc is used, installed by scripts/install.sh. The jail holds only
rustc, the shared libraries it loads (found with ldd), the linker (LLVM's lld as
``rust-lld``) and the wasm32-wasi std: no /etc, no /home, nothing else of the host.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from sandboxes.languages.toolchains.base import CompileOutcome, Step, compile_in_jail, within_budget
from sandboxes.languages.toolchains.jail import Bind, Jail, JailLimits, elf_closure

RUSTC = Path("/usr/bin/rustc")
RUST_LLD = Path("/usr/bin/rust-lld")
WASI_STD = Path("/usr/lib/rustlib/wasm32-wasi")
# What scripts/install.sh installs (Debian bookworm); the compile cache keys on rust_version().
DEBIAN_RUSTC_VERSION = "rustc 1.63.0"


def rust_available() -> str | None:
    """None when Debian's rustc and its wasm32-wasi std are installed, else what is missing."""
    for path in (RUSTC, RUST_LLD, WASI_STD):
        if not path.exists():
            return f"{path} is missing (install Debian's rustc and libstd-rust-dev-wasm32)"
    return None


@functools.lru_cache(maxsize=1)
def rust_version() -> str:
    out = subprocess.run(
        [str(RUSTC), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    return out.stdout.strip() or "rustc (unknown version)"


def _binds() -> list[Bind]:
    """Each file rustc and lld load, at the path the dynamic loader looks for it."""
    binds: dict[str, Bind] = {}
    lld = RUST_LLD.resolve()
    for binary, guest in ((RUSTC, str(RUSTC)), (lld, str(RUST_LLD))):
        for i, path in enumerate(elf_closure(binary)):
            target = guest if i == 0 else str(Path(os.path.realpath(path.parent), path.name))
            binds[target] = Bind(path.resolve(), target)
    binds[str(WASI_STD)] = Bind(WASI_STD)
    return list(binds.values())


class RustToolchain:
    def __init__(self, work_root: Path, limits: JailLimits) -> None:
        self.work_root = work_root
        self.limits = limits

    @property
    def version(self) -> str:
        return rust_version()

    @functools.cached_property
    def _jail(self) -> Jail:
        return Jail(
            binds=_binds(),
            symlinks={"/lib": "usr/lib", "/lib64": "usr/lib64"},
            self_exe=str(RUSTC),  # rustc finds its sysroot (rustlib) from its own path
        )

    @staticmethod
    def command(flags: Sequence[str]) -> list[str]:
        """rustc's argv for the tenant's (already allow-listed) flags."""
        # -O unless the tenant chose an opt level; other -C flags (overflow checks) add to it.
        opt = [f for f in flags if f.startswith("-Copt-level=") or f == "-O"] or ["-O"]
        codegen = [f for f in flags if f.startswith("-C") and not f.startswith("-Copt-level=")]
        edition = [f for f in flags if f.startswith("--edition=")] or ["--edition=2021"]
        return [str(RUSTC), "--target", "wasm32-wasi", edition[-1], "--crate-name", "main",
                "-C", "strip=symbols", opt[-1], *codegen, "--error-format=human", "--color=never",
                "main.rs",
                "-o", "main.wasm"]

    def compile(self, source: bytes, flags: Sequence[str],
                budget_s: float | None = None) -> CompileOutcome:
        return compile_in_jail(
            self._jail, self.work_root, "main.rs", source, [Step(self.command(flags))],
            "main.wasm", within_budget(self.limits, budget_s),
        )
