"""The exit codes of ``warden run``, ``warden submit`` and ``warden job``: one table, so a
script can tell a limit from a trap from a compile error from an API that is down, whether
the job ran in-process or through the API. A guest's own exit code passes through for
``nonzero_exit`` (capped at 255), so these codes are only unambiguous with ``--json``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

from sandboxes.schema import JobRecord, JobState, RunResult, RunStatus, TrapKind


class ExitCode(IntEnum):
    """Codes that say how a run or a request ended (besides the guest's own)."""

    OK = 0
    USAGE = 2
    PENDING = 118
    INTERNAL = 119
    API = 120
    CANCELLED = 121
    COMPILE_ERROR = 122
    TRAP = 123
    LIMIT = 124
    REJECTED = 125
    INTERRUPTED = 130


GUEST_CODE_MAX: Final = 255  # a shell keeps 8 bits: a guest's 256 must not read as success

MEANING: Final[dict[ExitCode, str]] = {
    ExitCode.OK: "the run ended ok. A guest that exits nonzero exits with its own code "
                 "(above 255: 255, so a failed run never exits 0), which may equal one of "
                 "the codes below: --json tells them apart",
    ExitCode.USAGE: "bad command line, or an invalid setting (a WARDEN_ environment "
                    "variable)",
    ExitCode.PENDING: "the job is still queued or running (the wait ran out)",
    ExitCode.INTERNAL: "Warden failed (internal_error, or the job failed outside its run)",
    ExitCode.API: "the API cannot be reached, or answered with a server error",
    ExitCode.CANCELLED: "the job was cancelled",
    ExitCode.COMPILE_ERROR: "the source did not compile",
    ExitCode.TRAP: "the guest trapped (a runtime error: a Rust panic, unreachable, "
                   "a bad memory access, a division by zero)",
    ExitCode.LIMIT: "a limit ended the run: fuel, wall time, memory, stack, output or "
                    "scratch",
    ExitCode.REJECTED: "rejected input: an invalid, unlinkable or unsupported module, an "
                       "unreadable file, a bad option value, or a request the API refused",
    ExitCode.INTERRUPTED: "Ctrl-C while waiting for a job (the job goes on)",
}

_BY_STATUS: Final[dict[RunStatus, ExitCode]] = {
    RunStatus.OK: ExitCode.OK,
    RunStatus.TRAP: ExitCode.TRAP,
    RunStatus.FUEL_EXHAUSTED: ExitCode.LIMIT,
    RunStatus.WALL_TIMEOUT: ExitCode.LIMIT,
    RunStatus.MEMORY_LIMIT: ExitCode.LIMIT,
    RunStatus.OUTPUT_LIMIT: ExitCode.LIMIT,
    RunStatus.SCRATCH_LIMIT: ExitCode.LIMIT,
    RunStatus.CANCELLED: ExitCode.CANCELLED,
    RunStatus.INVALID_MODULE: ExitCode.REJECTED,
    RunStatus.LINK_ERROR: ExitCode.REJECTED,
    RunStatus.UNSUPPORTED: ExitCode.REJECTED,
    RunStatus.COMPILE_ERROR: ExitCode.COMPILE_ERROR,
    RunStatus.INTERNAL_ERROR: ExitCode.INTERNAL,
}


def exit_code(result: RunResult) -> int:
    """The process exit code for ``result``. A stack overflow is the stack limit's doing,
    so it is a limit, not a trap; a failed run never exits 0."""
    if result.status is RunStatus.NONZERO_EXIT:
        return min(result.exit_code or 1, GUEST_CODE_MAX)
    if result.status is RunStatus.TRAP and result.trap_kind is TrapKind.STACK_OVERFLOW:
        return ExitCode.LIMIT
    return _BY_STATUS[result.status]


def record_exit_code(record: JobRecord) -> int:
    """A job's exit code: its result's, else why it has none (still pending, cancelled
    before it ran, or failed outside the sandbox)."""
    if record.result is not None:
        return exit_code(record.result)
    if not record.state.terminal:
        return ExitCode.PENDING
    return ExitCode.CANCELLED if record.state is JobState.CANCELLED else ExitCode.INTERNAL


def help_text() -> str:
    """The table for ``--help`` (one paragraph per code: typer folds single newlines)."""
    lines = [f"{int(code)}: {text}." for code, text in MEANING.items()]
    return "Exit codes:\n\n" + "\n\n".join(lines)
