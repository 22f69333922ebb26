"""Kattis and testlib checker protocols: exit codes, feedback files, scores, failures."""

from __future__ import annotations

import pytest

from judge.checkers import CheckOutcome
from judge.protocols import (
    FEEDBACK_DIR,
    KATTIS_AC,
    KATTIS_WA,
    MESSAGE_CHARS,
    kattis_args,
    kattis_outcome,
)
from judge.protocols import testlib_args as lib_args  # not test_* names: pytest collects those
from judge.protocols import testlib_outcome as lib_outcome
from judge.verdicts import Verdict
from sandboxes.schema import RunResult, RunStatus, TrapKind


def exited(code: int, stderr: bytes = b"", stdout: bytes = b"") -> RunResult:
    if code == 0:
        return RunResult(status=RunStatus.OK, exit_code=0, stderr=stderr, stdout=stdout)
    return RunResult(status=RunStatus.NONZERO_EXIT, exit_code=code, stderr=stderr,
                     stdout=stdout)


def test_arguments_and_paths() -> None:
    assert FEEDBACK_DIR == "/tmp/"
    assert kattis_args([]) == ["/input", "/answer", "/tmp/"]
    assert kattis_args(["case_sensitive", "float_tolerance", "1e-6"]) == [
        "/input", "/answer", "/tmp/", "case_sensitive", "float_tolerance", "1e-6"]
    assert lib_args() == ["/input", "/output", "/answer"]


def test_kattis_exit_codes() -> None:
    assert kattis_outcome(exited(KATTIS_AC), {}, scoring=False) == CheckOutcome(Verdict.AC)
    assert kattis_outcome(exited(KATTIS_WA), {}, scoring=False) == CheckOutcome(Verdict.WA)


@pytest.mark.parametrize("code", [0, 1, 41, 44, 255])
def test_kattis_other_exit_codes_break_the_protocol(code: int) -> None:
    outcome = kattis_outcome(exited(code), {}, scoring=False)
    assert outcome.verdict is Verdict.IE
    assert outcome.message == (f"checker broke the protocol: exit code {code} "
                               "(42 = accepted, 43 = wrong answer)")


def test_kattis_message_is_the_judge_message() -> None:
    feedback = {"judgemessage.txt": b"  line 3: expected 5, got 6\n\n"}
    outcome = kattis_outcome(exited(KATTIS_WA), feedback, scoring=False)
    assert outcome == CheckOutcome(Verdict.WA, "line 3: expected 5, got 6")
    # the guest path is accepted as a key too
    outcome = kattis_outcome(exited(KATTIS_AC), {"/tmp/judgemessage.txt": b"ok"}, False)
    assert outcome == CheckOutcome(Verdict.AC, "ok")


def test_kattis_message_is_decoded_leniently_and_capped() -> None:
    feedback = {"judgemessage.txt": b"\xff" + b"y" * 100_000}
    outcome = kattis_outcome(exited(KATTIS_WA), feedback, scoring=False)
    assert outcome.verdict is Verdict.WA
    assert outcome.message is not None
    assert outcome.message.startswith("\ufffdyyy")
    assert len(outcome.message) == MESSAGE_CHARS


@pytest.mark.parametrize("status", [RunStatus.FUEL_EXHAUSTED, RunStatus.TRAP,
                                    RunStatus.WALL_TIMEOUT, RunStatus.MEMORY_LIMIT,
                                    RunStatus.OUTPUT_LIMIT, RunStatus.COMPILE_ERROR,
                                    RunStatus.INTERNAL_ERROR])
def test_a_failing_checker_is_an_internal_error(status: RunStatus) -> None:
    run = RunResult(status=status)
    for outcome in (kattis_outcome(run, {"judgemessage.txt": b"wrong!"}, scoring=True),
                    lib_outcome(run, scoring=False, max_points=None)):
        assert outcome.verdict is Verdict.IE  # never WA: the submission did nothing wrong
        assert outcome.message is not None
        assert outcome.message.startswith(f"checker failed: {status.value}")


def test_a_trapping_checker_says_how() -> None:
    run = RunResult(status=RunStatus.TRAP, trap_kind=TrapKind.UNREACHABLE,
                    message="wasm trap: unreachable")
    outcome = kattis_outcome(run, {}, scoring=False)
    assert outcome.message == "checker failed: trap (unreachable): wasm trap: unreachable"


def test_kattis_score_on_scoring_problems() -> None:
    outcome = kattis_outcome(exited(KATTIS_AC), {"score.txt": b" 37.5\n"}, scoring=True)
    assert outcome == CheckOutcome(Verdict.AC, None, 37.5)
    # no score.txt: the group's accept_score applies (grading decides)
    assert kattis_outcome(exited(KATTIS_AC), {}, scoring=True) == CheckOutcome(Verdict.AC)
    assert kattis_outcome(exited(KATTIS_WA), {}, scoring=True) == CheckOutcome(Verdict.WA)


@pytest.mark.parametrize(("code", "score", "scoring", "why"), [
    (KATTIS_AC, b"1", False, "pass-fail"),
    (KATTIS_WA, b"0", True, "wrong answer"),
    (KATTIS_AC, b"lots", True, "not a finite number"),
    (KATTIS_AC, b"", True, "not a finite number"),
    (KATTIS_AC, b"inf", True, "not a finite number"),
    (KATTIS_AC, b"nan", True, "not a finite number"),
    (KATTIS_AC, b"1 2", True, "not a finite number"),
])
def test_kattis_score_rules(code: int, score: bytes, scoring: bool, why: str) -> None:
    outcome = kattis_outcome(exited(code), {"score.txt": score, "judgemessage.txt": b"m"},
                             scoring=scoring)
    assert outcome.verdict is Verdict.IE
    assert outcome.score is None
    assert outcome.message is not None
    assert why in outcome.message
    assert outcome.message.endswith("\nm")  # the checker's own words follow


def test_testlib_exit_codes() -> None:
    ok = lib_outcome(exited(0, stderr=b"ok 3 numbers\n"), scoring=False, max_points=None)
    assert ok == CheckOutcome(Verdict.AC, "ok 3 numbers")
    wa = lib_outcome(exited(1, stderr=b"wrong answer 1st numbers differ"), False, None)
    assert wa == CheckOutcome(Verdict.WA, "wrong answer 1st numbers differ")
    pe = lib_outcome(exited(2, stderr=b"wrong output format Unexpected end of file"),
                         False, None)
    assert pe == CheckOutcome(
        Verdict.WA, "presentation error: wrong output format Unexpected end of file")
    assert lib_outcome(exited(2), False, None) == CheckOutcome(Verdict.WA,
                                                                   "presentation error")
    fail = lib_outcome(exited(3, stderr=b"FAIL answer file is broken"), False, None)
    assert fail.verdict is Verdict.IE
    assert fail.message == "checker failed (testlib fail)\nFAIL answer file is broken"


@pytest.mark.parametrize("code", [4, 5, 6, 9, 42, 255])
def test_testlib_unknown_exit_codes_are_internal_errors(code: int) -> None:
    outcome = lib_outcome(exited(code), scoring=True, max_points=None)
    assert outcome.verdict is Verdict.IE
    assert outcome.message is not None
    assert outcome.message.startswith(f"checker broke the protocol: exit code {code}")


def test_testlib_message_falls_back_to_stdout() -> None:
    outcome = lib_outcome(exited(1, stdout=b"differs\n"), scoring=False, max_points=None)
    assert outcome == CheckOutcome(Verdict.WA, "differs")


def test_testlib_points() -> None:
    run = exited(7, stderr=b"points 0.75 two of three right")
    assert lib_outcome(run, scoring=True, max_points=1.0) == CheckOutcome(
        Verdict.AC, "points 0.75 two of three right", 0.75)
    # a checker that writes only its number (quitp's message is "<points> <msg>")
    assert lib_outcome(exited(7, stdout=b"12 of 20\n"), True, None).score == 12.0
    # a partial result on a pass-fail problem is a wrong answer; full points accept
    partial = lib_outcome(run, scoring=False, max_points=1.0)
    assert partial.verdict is Verdict.WA
    assert partial.message == ("partial result (0.75 points) on a pass-fail problem: "
                               "points 0.75 two of three right")
    full = lib_outcome(exited(7, stderr=b"points 1"), scoring=False, max_points=1.0)
    assert full.verdict is Verdict.AC


@pytest.mark.parametrize("stderr", [b"points lots", b"no number here", b"points nan",
                                    b"points 1.5", b"points -1"])
def test_testlib_bad_points_are_internal_errors(stderr: bytes) -> None:
    outcome = lib_outcome(exited(7, stderr=stderr), scoring=True, max_points=1.0)
    assert outcome.verdict is Verdict.IE
    assert outcome.score is None
