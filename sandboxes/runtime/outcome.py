"""Turn how a wasm call ended into a status: one place that reads wasmtime's errors."""

from __future__ import annotations

import re
from dataclasses import dataclass

import wasmtime

from sandboxes.runtime.control import RunControl
from sandboxes.schema import RunStatus, TrapKind

_TRAP_KINDS: dict[wasmtime.TrapCode, TrapKind] = {
    wasmtime.TrapCode.UNREACHABLE: TrapKind.UNREACHABLE,
    wasmtime.TrapCode.STACK_OVERFLOW: TrapKind.STACK_OVERFLOW,
    wasmtime.TrapCode.MEMORY_OUT_OF_BOUNDS: TrapKind.MEMORY_OUT_OF_BOUNDS,
    wasmtime.TrapCode.TABLE_OUT_OF_BOUNDS: TrapKind.TABLE_OUT_OF_BOUNDS,
    wasmtime.TrapCode.INDIRECT_CALL_TO_NULL: TrapKind.INDIRECT_CALL_TO_NULL,
    wasmtime.TrapCode.BAD_SIGNATURE: TrapKind.BAD_SIGNATURE,
    wasmtime.TrapCode.INTEGER_DIVISION_BY_ZERO: TrapKind.INTEGER_DIVISION_BY_ZERO,
    wasmtime.TrapCode.INTEGER_OVERFLOW: TrapKind.INTEGER_OVERFLOW,
    wasmtime.TrapCode.BAD_CONVERSION_TO_INTEGER: TrapKind.BAD_CONVERSION_TO_INTEGER,
}
_MAX_MESSAGE = 2000


@dataclass
class Outcome:
    status: RunStatus
    exit_code: int | None = None
    trap_kind: TrapKind | None = None
    message: str | None = None


def classify(error: BaseException | None, control: RunControl) -> Outcome:
    """Status of a finished call. A stop the controller asked for wins over the trap it made."""
    if control.reason is not None:
        return Outcome(control.reason.value, message=_limit_message(control))
    if control.exit_code is not None:  # Warden's proc_exit: the trap it made is the exit
        exit_code = control.exit_code
        return Outcome(RunStatus.OK if exit_code == 0 else RunStatus.NONZERO_EXIT,
                       exit_code=exit_code)
    if error is None:
        return Outcome(RunStatus.OK, exit_code=0)
    if isinstance(error, wasmtime.ExitTrap):
        return Outcome(
            RunStatus.OK if error.code == 0 else RunStatus.NONZERO_EXIT, exit_code=error.code
        )
    if isinstance(error, wasmtime.Trap):
        code = error.trap_code
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return Outcome(RunStatus.FUEL_EXHAUSTED, message="fuel exhausted")
        if code == wasmtime.TrapCode.INTERRUPT:
            return Outcome(RunStatus.WALL_TIMEOUT, message="interrupted")
        kind = _TRAP_KINDS.get(code, TrapKind.OTHER) if code is not None else TrapKind.OTHER
        return Outcome(RunStatus.TRAP, trap_kind=kind, message=_short(trap_message(error.message)))
    if isinstance(error, wasmtime.WasmtimeError):
        return Outcome(RunStatus.TRAP, trap_kind=TrapKind.OTHER,
                       message=_short(trap_message(str(error))))
    return Outcome(RunStatus.INTERNAL_ERROR, message=f"internal error: {type(error).__name__}")


def _limit_message(control: RunControl) -> str:
    assert control.reason is not None
    return {
        RunStatus.WALL_TIMEOUT: "wall-clock time limit exceeded",
        RunStatus.CANCELLED: "cancelled",
        RunStatus.OUTPUT_LIMIT: "output limit exceeded (output truncated)",
        RunStatus.SCRATCH_LIMIT: "scratch directory quota exceeded",
        RunStatus.INTERNAL_ERROR: "internal error in a WASI call (logged on the worker)",
    }[control.reason.value]


_FRAME = re.compile(r"^\s*\d+:\s*(?P<frame>.*?)\s*$")
_MAX_FRAMES = 8


def trap_message(text: str) -> str:
    """wasmtime's trap text made readable: the cause first, then the backtrace with runs
    of the same frame (a recursion) shown once with a count, at most ``_MAX_FRAMES`` lines.
    Text in any other shape is kept as it is."""
    head, sep, cause = text.partition("\nCaused by:\n")
    if not sep or "backtrace:" not in head:
        return text
    frames = [m.group("frame") for line in head.split("\n")[1:]
              if (m := _FRAME.match(line)) and m.group("frame")]
    runs: list[tuple[str, int]] = []
    for frame in frames:
        if runs and runs[-1][0] == frame:
            runs[-1] = (frame, runs[-1][1] + 1)
        else:
            runs.append((frame, 1))
    lines = [" ".join(cause.split())]
    if runs:
        lines.append("wasm backtrace (innermost first):")
    for frame, count in runs[:_MAX_FRAMES]:
        lines.append(f"  {frame}" + (f"  (x{count})" if count > 1 else ""))
    if len(runs) > _MAX_FRAMES:
        lines.append(f"  ... {sum(c for _, c in runs[_MAX_FRAMES:])} more frames")
    return "\n".join(lines)


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "…"
