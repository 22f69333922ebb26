"""The steps of a compile whose tools are themselves WebAssembly, each a sandbox run.

clang/lld (C, C++) and Go's compile/link run as Warden's own sandbox runs: fuel, memory,
wall and output limits; the toolchain's files read-only beside the job; the job's files in
a private in-memory ``/tmp`` that one step leaves to the next. Nothing a compile reads or
writes is a host file, and the worker needs no privilege at all.

Compile limits are fuel: a compile bomb stops at the same instruction on every machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from sandboxes.languages.toolchains.base import MAX_OUTPUT_MODULE_BYTES, CompileOutcome
from sandboxes.runtime.sandbox import Prepared, Sandbox
from sandboxes.runtime.streams import RunIO
from sandboxes.schema import Grants, Limits, MiB, RunResult, RunStatus, ScratchGrant
from sandboxes.wasi.memfs import ReadOnlyData

WORK: Final = "/tmp"  # the job's private, writable, in-memory directory
OUTPUT: Final = "main.wasm"  # what the last step leaves in WORK


@dataclass(frozen=True)
class CompileBudget:
    """What one compile (all its steps together) may use."""

    fuel: int
    memory_bytes: int
    wall_s: float
    output_bytes: int
    scratch_bytes: int = 256 * MiB


@dataclass(frozen=True)
class ToolStep:
    """One run of a tool: its module, argv[0] and arguments, and what to call it in a
    message (``the compiler``, ``the linker``)."""

    prepared: Prepared
    argv0: str
    args: Sequence[str]
    what: str


def run_tool(sandbox: Sandbox, step: ToolStep, system_files: Mapping[str, ReadOnlyData],
             seed: Mapping[str, bytes], budget: CompileBudget, fuel: int, wall_s: float,
             env: Mapping[str, str] | None = None) -> tuple[RunResult, dict[str, bytes]]:
    """Run one step with ``fuel`` and ``wall_s`` left of the budget; its result and the
    files it left in the job dir."""
    limits = Limits(fuel=max(fuel, 1000), memory_bytes=budget.memory_bytes,
                    wall_time_s=max(wall_s, 0.001), stdout_bytes=budget.output_bytes,
                    stderr_bytes=budget.output_bytes)
    grants = Grants(args=list(step.args), env=dict(env or {}),
                    scratch=ScratchGrant(quota_bytes=budget.scratch_bytes))
    left: dict[str, bytes] = {}
    run_io = RunIO(system_files=system_files, scratch_seed=seed, scratch_files=left,
                   collect_limits=(64, MAX_OUTPUT_MODULE_BYTES))
    result = sandbox.run_prepared(step.prepared, limits, grants, argv0=step.argv0, io=run_io)
    return result, left


def run_steps(sandbox: Sandbox, steps: Sequence[ToolStep],
              system_files: Mapping[str, ReadOnlyData], files: dict[str, bytes],
              budget: CompileBudget, env: Mapping[str, str] | None = None,
              ) -> tuple[CompileOutcome, list[RunResult]]:
    """Run the steps in order, each with what is left of the budget, stopping at the first
    that fails; the outcome (``main.wasm`` of the last, or the messages and why it stopped)
    and the result of each step that ran (its fuel, time, memory)."""
    fuel, wall = budget.fuel, budget.wall_s
    messages: list[str] = []
    results: list[RunResult] = []
    for step in steps:
        result, left = run_tool(sandbox, step, system_files, files, budget, fuel, wall, env)
        results.append(result)
        fuel -= result.fuel_used
        wall -= result.wall_time_s
        # the job dir is the compiler's own: messages name the source as it was sent
        text = (result.stdout + result.stderr).decode("utf-8", "replace").strip() \
            .replace(f"{WORK}/", "")
        if text:
            messages.append(text)
        if result.status is not RunStatus.OK:
            why = describe(result, step.what, budget)
            return CompileOutcome(None, joined(messages, budget, why),
                                  timed_out=result.status is RunStatus.WALL_TIMEOUT,
                                  wall_s=budget.wall_s - wall), results
        files = left
    wasm = files.get(OUTPUT)
    if wasm is None:
        return CompileOutcome(None, "the compiler produced no module",
                              wall_s=budget.wall_s - wall, transient=True), results
    return CompileOutcome(wasm, joined(messages, budget), wall_s=budget.wall_s - wall), results


def joined(messages: list[str], budget: CompileBudget, why: str = "") -> str:
    """The steps' messages within the output cap, and why the compile stopped, if it did."""
    text = "\n".join(m for m in messages if m)[:budget.output_bytes]
    return "\n".join(part for part in (text, why) if part)


def describe(result: RunResult, what: str, budget: CompileBudget | None = None) -> str:
    """Why a step failed, for the compile error (the step's own output comes first)."""
    status = result.status
    if status is RunStatus.NONZERO_EXIT:
        return "" if result.stderr or result.stdout else f"{what} exited with status " \
            f"{result.exit_code}"
    if status is RunStatus.FUEL_EXHAUSTED:
        return f"[{what} ran out of its fuel budget: compile stopped]"
    if status is RunStatus.WALL_TIMEOUT:
        limit = f" of {budget.wall_s:g} s" if budget is not None else ""
        return f"[compile time limit{limit} exceeded]"
    if status is RunStatus.MEMORY_LIMIT:
        return f"[{what} ran out of memory: compile stopped]"
    if status is RunStatus.OUTPUT_LIMIT:
        cap = f" at {budget.output_bytes} bytes" if budget is not None else ""
        return f"[compiler output cut{cap}; compile stopped]"
    if status is RunStatus.TRAP:
        return f"[{what} failed: {result.message or 'it trapped'}]"
    return f"[{what} could not run: {result.message or status.value}]"
