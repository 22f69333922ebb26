"""What a checker program's run means, by the Kattis and testlib protocols.

A checker that fails (traps, runs out of fuel, exits with a code its protocol does not know,
writes a score it may not) is the judge's problem, never the submission's: that is IE, with a
message that says how, so a problem setter can fix the checker.
"""

from __future__ import annotations

import math
import re
from typing import Final

from judge.checkers import CheckOutcome, parse_float
from judge.verdicts import Verdict
from sandboxes.schema import SCRATCH_GUEST_DIR, RunResult, RunStatus

KATTIS_AC: Final = 42
KATTIS_WA: Final = 43
FEEDBACK_DIR: Final = SCRATCH_GUEST_DIR + "/"  # "/tmp/": the checker's private scratch dir
INPUT_FILE: Final = "input"
ANSWER_FILE: Final = "answer"
OUTPUT_FILE: Final = "output"
JUDGE_MESSAGE: Final = "judgemessage.txt"
JUDGE_ERROR: Final = "judgeerror.txt"
SCORE_FILE: Final = "score.txt"
MESSAGE_CHARS: Final = 4096

TESTLIB_OK: Final = 0
TESTLIB_WA: Final = 1
TESTLIB_PE: Final = 2
TESTLIB_FAIL: Final = 3
TESTLIB_POINTS: Final = 7
TESTLIB_UNEXPECTED_EOF: Final = 8  # only with ENABLE_UNEXPECTED_EOF: the output ended early

_ENDED: Final = frozenset({RunStatus.OK, RunStatus.NONZERO_EXIT})
_POINTS: Final = re.compile(rb"points\s+(\S+)", re.IGNORECASE)
_NUMBER: Final = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def kattis_args(extra: list[str]) -> list[str]:
    """`checker input answer feedback_dir/ [extra]`; the team's output is its stdin."""
    return [f"/{INPUT_FILE}", f"/{ANSWER_FILE}", FEEDBACK_DIR, *extra]


def testlib_args() -> list[str]:
    """`checker input output answer`; testlib writes its verdict to stderr."""
    return [f"/{INPUT_FILE}", f"/{OUTPUT_FILE}", f"/{ANSWER_FILE}"]


def kattis_outcome(run: RunResult, feedback: dict[str, bytes], scoring: bool) -> CheckOutcome:
    """A Kattis output validator's verdict: exit 42 accepts, 43 rejects, with
    ``judgemessage.txt`` as the message and ``score.txt`` as the score (scoring problems,
    accepted tests only, as problemtools requires). ``feedback`` maps file names in the
    feedback dir (``score.txt`` or ``/tmp/score.txt``) to their contents."""
    files = {name.removeprefix(FEEDBACK_DIR): data for name, data in feedback.items()}
    message = _text(files.get(JUDGE_MESSAGE, b""))
    if run.status not in _ENDED:
        return _internal(_failed(run), message or _text(files.get(JUDGE_ERROR, b"")))
    code = 0 if run.status is RunStatus.OK else run.exit_code
    if code not in (KATTIS_AC, KATTIS_WA):
        shown = "unknown" if code is None else str(code)
        return _internal(f"checker broke the protocol: exit code {shown} "
                         f"({KATTIS_AC} = accepted, {KATTIS_WA} = wrong answer)",
                         message or _text(run.stderr))
    raw_score = files.get(SCORE_FILE)
    if raw_score is None:
        return CheckOutcome(Verdict.AC if code == KATTIS_AC else Verdict.WA, message)
    if not scoring:
        return _internal("checker wrote score.txt, but the problem is pass-fail", message)
    if code == KATTIS_WA:
        return _internal("checker wrote score.txt with a wrong answer", message)
    score = parse_float(raw_score.strip())
    if score is None or not math.isfinite(score):
        return _internal(f"checker's score.txt is not a finite number: "
                         f"{_text(raw_score[:64])!r}", message)
    return CheckOutcome(Verdict.AC, message, score)


def testlib_outcome(run: RunResult, scoring: bool, max_points: float | None) -> CheckOutcome:
    """A testlib checker's verdict by its exit code (0 ok, 1 wrong answer, 2 presentation
    error, 3 fail, 7 points); its message is what it wrote (stderr, else stdout). Points are
    the test's score on a scoring problem, in [0, max_points] when that is given."""
    message = _text(run.stderr) or _text(run.stdout)
    if run.status not in _ENDED:
        return _internal(_failed(run), message)
    code = 0 if run.status is RunStatus.OK else run.exit_code
    if code == TESTLIB_OK:
        return CheckOutcome(Verdict.AC, message)
    if code == TESTLIB_WA:
        return CheckOutcome(Verdict.WA, message)
    if code == TESTLIB_PE:
        return CheckOutcome(Verdict.WA, _join("presentation error", message))
    if code == TESTLIB_UNEXPECTED_EOF:
        return CheckOutcome(Verdict.WA, _join("unexpected end of output", message))
    if code == TESTLIB_FAIL:
        return _internal("checker failed (testlib fail)", message)
    if code == TESTLIB_POINTS:
        return _points(run, message, scoring, max_points)
    shown = "unknown" if code is None else str(code)
    return _internal(f"checker broke the protocol: exit code {shown} (testlib: 0 ok, "
                     "1 wrong answer, 2 presentation error, 3 fail, 7 points)", message)


def _points(run: RunResult, message: str | None, scoring: bool,
            max_points: float | None) -> CheckOutcome:
    points = _read_points(run.stderr) if run.stderr.strip() else _read_points(run.stdout)
    if points is None or not math.isfinite(points):
        return _internal("checker exited with points (7) but wrote no finite number", message)
    if points < 0 or (max_points is not None and points > max_points):
        bound = "" if max_points is None else f", {max_points:g}"
        return _internal(f"checker gave {points:g} points, outside [0{bound}]", message)
    if scoring:
        return CheckOutcome(Verdict.AC, message, points)
    if max_points is not None and points >= max_points:
        return CheckOutcome(Verdict.AC, message)
    return CheckOutcome(Verdict.WA, _join(f"partial result ({points:g} points) on a "
                                          "pass-fail problem", message))


def _read_points(data: bytes) -> float | None:
    """testlib's quitp writes "points 0.5 ..."; failing that, the first number written."""
    match = _POINTS.search(data)
    if match is not None:
        return parse_float(match.group(1))
    match = _NUMBER.search(data)
    return None if match is None else float(match.group(0))


def _failed(run: RunResult) -> str:
    how = run.status.value
    if run.trap_kind is not None:
        how += f" ({run.trap_kind.value})"
    detail = run.message or run.compile_output
    return f"checker failed: {how}" + (f": {detail}" if detail else "")


def _internal(reason: str, detail: str | None) -> CheckOutcome:
    return CheckOutcome(Verdict.IE, _cap(_join(reason, detail, sep="\n")))


def _join(head: str, tail: str | None, sep: str = ": ") -> str:
    return head if not tail else f"{head}{sep}{tail}"


def _text(data: bytes) -> str | None:
    """A checker's bytes as a message: decoded with replacement, stripped, capped."""
    text = data[:MESSAGE_CHARS * 4].decode("utf-8", errors="replace").strip()
    return _cap(text) or None


def _cap(text: str) -> str:
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS - 1] + "…"
