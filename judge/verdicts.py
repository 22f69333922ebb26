"""The one verdict enum of the code base, its precedence, and what a sandbox run means.

Precedence (worst first) follows Kattis's default grader (``worst_error``): IE, CE, RE, MLE,
TLE, OLE, WA, AC. A group that stops at its first failure takes that failure's verdict; one
that goes on takes the worst of its results by this order. ``skipped`` is not a verdict of a
submission, only of a test that was not run.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Final

from sandboxes.schema import RunStatus


class Verdict(StrEnum):
    AC = "AC"  # accepted
    WA = "WA"  # wrong answer
    TLE = "TLE"  # time (fuel) limit exceeded, or the wall-clock safety cap
    MLE = "MLE"  # memory limit exceeded
    OLE = "OLE"  # output limit exceeded
    RE = "RE"  # run-time error: a trap, a non-zero exit, a refused file write
    CE = "CE"  # compile error (or a module that cannot be run at all)
    IE = "IE"  # internal (judge) error: Warden's, the checker's or the interactor's fault
    SKIPPED = "skipped"  # a test not run (its group had already failed)

    @property
    def accepted(self) -> bool:
        return self is Verdict.AC


# Worst first.
PRECEDENCE: Final = (Verdict.IE, Verdict.CE, Verdict.RE, Verdict.MLE, Verdict.TLE,
                     Verdict.OLE, Verdict.WA, Verdict.AC)
_RANK: Final = {v: i for i, v in enumerate(PRECEDENCE)}


def worst(verdicts: Iterable[Verdict]) -> Verdict:
    """The worst verdict by :data:`PRECEDENCE` (skipped tests do not count); AC if none."""
    ranked = [v for v in verdicts if v is not Verdict.SKIPPED]
    return min(ranked, key=_RANK.__getitem__, default=Verdict.AC)


_BY_STATUS: Final[dict[RunStatus, Verdict | None]] = {
    RunStatus.OK: None,  # the checker decides
    RunStatus.NONZERO_EXIT: Verdict.RE,
    RunStatus.TRAP: Verdict.RE,
    RunStatus.SCRATCH_LIMIT: Verdict.RE,
    RunStatus.FUEL_EXHAUSTED: Verdict.TLE,
    RunStatus.WALL_TIMEOUT: Verdict.TLE,
    RunStatus.MEMORY_LIMIT: Verdict.MLE,
    RunStatus.OUTPUT_LIMIT: Verdict.OLE,
    RunStatus.COMPILE_ERROR: Verdict.CE,
    RunStatus.INVALID_MODULE: Verdict.CE,
    RunStatus.LINK_ERROR: Verdict.CE,
    RunStatus.UNSUPPORTED: Verdict.CE,
    RunStatus.CANCELLED: Verdict.IE,
    RunStatus.INTERNAL_ERROR: Verdict.IE,
}


def run_verdict(status: RunStatus) -> Verdict | None:
    """The verdict a submission's run earns by how it ended; None when it ended normally
    (exit 0), so the checker decides."""
    return _BY_STATUS[status]
