"""What every compiling toolchain returns, and the shared steps of a jailed compile."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from sandboxes.languages.toolchains.jail import (
    Jail,
    JailLimits,
    JailResult,
    job_directory,
    read_output,
)

# A compiled module larger than this is refused (the sandbox's own hard maximum).
MAX_OUTPUT_MODULE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class CompileOutcome:
    """A module, or why there is none: the compiler's (capped) message."""

    wasm: bytes | None
    message: str
    timed_out: bool = False
    wall_s: float = 0.0
    # Failed for a reason outside the source (the jail could not start, the compiler was
    # killed, no module appeared): worth retrying, never worth caching.
    transient: bool = False

    @property
    def ok(self) -> bool:
        return self.wasm is not None


@dataclass(frozen=True)
class Step:
    """One command run in the jail; the compile fails at the first step that fails."""

    argv: Sequence[str]


def within_budget(limits: JailLimits, budget_s: float | None) -> JailLimits:
    """``limits`` with its wall time cut to the job's remaining compile budget."""
    if budget_s is None or budget_s >= limits.wall_s:
        return limits
    return dataclasses.replace(limits, wall_s=max(budget_s, 0.001))


def compile_in_jail(
    jail: Jail,
    root: Path,
    source_name: str,
    source: bytes,
    steps: Sequence[Step],
    output_name: str,
    limits: JailLimits,
) -> CompileOutcome:
    """Write the source into a fresh job dir, run the steps jailed, read the module back."""
    wall = 0.0
    with job_directory(root) as job_dir:
        (job_dir / source_name).write_bytes(source)
        for step in steps:
            remaining = JailLimits(
                max(limits.wall_s - wall, 0.001), limits.memory_bytes, limits.output_bytes,
                limits.file_bytes,
            )
            result = jail.run(step.argv, job_dir, remaining)
            wall += result.wall_s
            if not result.ok:
                message = describe_failure(result, limits)
                transient = killed_by_signal(result) or result.output.startswith(b"bwrap: ")
                return CompileOutcome(None, message, result.timed_out, wall, transient)
        wasm = read_output(job_dir, output_name, MAX_OUTPUT_MODULE_BYTES)
    if wasm is None:
        return CompileOutcome(None, "the compiler produced no module", wall_s=wall,
                              transient=True)
    return CompileOutcome(wasm, "", wall_s=wall)


def describe_failure(result: JailResult, limits: JailLimits) -> str:
    text = result.output.decode("utf-8", "replace")
    if result.output_truncated:
        text += f"\n[compiler output cut at {limits.output_bytes} bytes; compile stopped]"
    if result.timed_out:
        text += f"\n[compile time limit of {limits.wall_s:g} s exceeded]"
    elif killed_by_signal(result):
        sig = -result.returncode if result.returncode < 0 else result.returncode - 128
        text += f"\n[compiler killed by signal {sig} (memory or file size cap?)]"
    return text.strip() or f"compiler exited with status {result.returncode}"


def killed_by_signal(result: JailResult) -> bool:
    """bwrap reports a jailed process's death by signal N as exit status 128 + N."""
    return result.returncode < 0 or result.returncode > 128


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock across processes: one warm-up builds, the others wait for it."""
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
