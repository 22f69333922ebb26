"""Judging one test: run the submission (or the submission and the interactor, wired
together), then the checker, all in the sandbox; a TestResult out. Never raises.

The submission's time limit is a fuel budget (``judge.timing``): the verdict and the
reported time are the same on an idle or a loaded machine. Wall time is only a safety cap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from judge.checkers import CheckOutcome, check_output
from judge.problem import CheckerKind, Problem, ProblemType, ProgramLimits, TestResult
from judge.protocols import (
    ANSWER_FILE,
    INPUT_FILE,
    OUTPUT_FILE,
    kattis_args,
    kattis_outcome,
    testlib_args,
    testlib_outcome,
)
from judge.timing import fuel_budget, fuel_time, time_limit_for, wall_cap
from judge.verdicts import Verdict, run_verdict
from sandboxes.errors import SandboxError
from sandboxes.languages.source_runner import Executable
from sandboxes.runtime.control import CancelToken
from sandboxes.runtime.sandbox import Sandbox
from sandboxes.runtime.stacks import start_guest_thread
from sandboxes.runtime.streams import ByteStream, RunIO
from sandboxes.schema import Grants, KiB, Limits, MiB, RunResult, RunStatus, ScratchGrant

FEEDBACK_QUOTA_BYTES = 1 * MiB
_MESSAGE_CHARS = 4096


@dataclass(frozen=True)
class TimingConfig:
    """The calibration constant and the wall-clock safety cap (settings)."""

    fuel_per_second: int
    wall_factor: float = 3.0
    wall_extra_s: float = 1.0


@dataclass(frozen=True)
class TestOutcome:
    """A judged test: what the grading sees, and the submission's own run (for the job
    record and fuel accounting)."""

    verdict: Verdict
    run: RunResult
    time_s: float | None
    score: float | None = None
    message: str | None = None


def submission_limits(problem: Problem, language: str | None, timing: TimingConfig) -> Limits:
    """The submission's limits on one test: the time limit as fuel, wall time as a cap."""
    tl = time_limit_for(problem.limits, language)
    return Limits(
        fuel=min(fuel_budget(tl, 1.0, timing.fuel_per_second), 1_000_000_000_000),
        wall_time_s=wall_cap(tl, timing.wall_factor, timing.wall_extra_s),
        memory_bytes=problem.limits.memory_bytes,
        stack_bytes=problem.limits.stack_bytes,
        stdout_bytes=problem.limits.output_bytes,
        stderr_bytes=64 * KiB,
    )


def program_limits(limits: ProgramLimits) -> Limits:
    return Limits(fuel=limits.fuel, wall_time_s=limits.wall_time_s,
                  memory_bytes=limits.memory_bytes, stdout_bytes=limits.output_bytes,
                  stderr_bytes=64 * KiB)


class TestJudge:
    """Runs tests of one problem. Thread-safe (the Sandbox is)."""

    def __init__(self, sandbox: Sandbox, problem: Problem, timing: TimingConfig) -> None:
        self.sandbox = sandbox
        self.problem = problem
        self.timing = timing

    def judge(self, solution: Executable, language: str | None, checker: Executable | None,
              interactor: Executable | None, test_input: bytes, answer: bytes,
              cancel: CancelToken | None = None) -> TestOutcome:
        limits = submission_limits(self.problem, language, self.timing)
        if self.problem.interactor is not None:
            if interactor is None:
                return _internal("the interactor is not available")
            return self._interactive(solution, interactor, limits, test_input, answer, cancel)
        run = self.sandbox.run_prepared(solution.prepared, limits,
                                        solution.grants(Grants(stdin=test_input)), cancel,
                                        solution.argv0)
        time_s = fuel_time(run.fuel_used, self.timing.fuel_per_second)
        verdict = run_verdict(run.status)
        if verdict is not None:
            return TestOutcome(verdict, run, time_s, message=_run_message(run))
        checked = self._check(checker, run.stdout, test_input, answer, cancel)
        return TestOutcome(checked.verdict, run, time_s, checked.score, checked.message)

    # -- checking ------------------------------------------------------------------------
    def _check(self, checker: Executable | None, output: bytes, test_input: bytes,
               answer: bytes, cancel: CancelToken | None) -> CheckOutcome:
        spec = self.problem.checker
        scoring = self.problem.type is ProblemType.SCORING
        if spec.kind in (CheckerKind.EXACT, CheckerKind.TOKENS, CheckerKind.FLOAT):
            return check_output(spec, output, answer)
        if checker is None:
            return CheckOutcome(Verdict.IE, "the checker is not available")
        limits = program_limits(spec.limits)
        feedback: dict[str, bytes] = {}
        if spec.kind is CheckerKind.KATTIS:
            grants = Grants(stdin=output, args=kattis_args(list(spec.args)),
                            files={INPUT_FILE: test_input, ANSWER_FILE: answer},
                            scratch=ScratchGrant(quota_bytes=FEEDBACK_QUOTA_BYTES))
            run = self.sandbox.run_prepared(checker.prepared, limits, checker.grants(grants),
                                            cancel, checker.argv0,
                                            RunIO(scratch_files=feedback))
            return kattis_outcome(run, feedback, scoring)
        grants = Grants(args=testlib_args(),
                        files={INPUT_FILE: test_input, OUTPUT_FILE: output,
                               ANSWER_FILE: answer})
        run = self.sandbox.run_prepared(checker.prepared, limits, checker.grants(grants),
                                        cancel, checker.argv0)
        return testlib_outcome(run, scoring, None)

    # -- interactive ---------------------------------------------------------------------
    def _interactive(self, solution: Executable, interactor: Executable, limits: Limits,
                     test_input: bytes, answer: bytes,
                     cancel: CancelToken | None) -> TestOutcome:
        """Kattis's rules: the interactor crashing or breaking the protocol is IE; the
        interactor exiting first with WA is WA; otherwise the submission's own TLE / RE /
        MLE / OLE; otherwise the interactor's verdict. The submission never sees the input."""
        to_solution, to_interactor = ByteStream(), ByteStream()
        feedback: dict[str, bytes] = {}
        i_io = RunIO(stdin=to_interactor, stdout_tee=to_solution.write, scratch_files=feedback)
        s_io = RunIO(stdin=to_solution, stdout_tee=to_interactor.write)
        i_limits = program_limits(self.problem.interactor_limits).model_copy(
            update={"wall_time_s": limits.wall_time_s + 1.0})
        i_grants = interactor.grants(Grants(
            args=kattis_args([]), files={INPUT_FILE: test_input, ANSWER_FILE: answer},
            scratch=ScratchGrant(quota_bytes=FEEDBACK_QUOTA_BYTES)))
        i_cancel = CancelToken()
        if cancel is not None:
            cancel.subscribe(i_cancel.cancel)
        box: list[RunResult] = []

        def run_interactor() -> None:
            try:
                box.append(self.sandbox.run_prepared(interactor.prepared, i_limits, i_grants,
                                                     i_cancel, interactor.argv0, i_io))
            finally:
                to_solution.close()  # the submission reads end of file from now on

        thread = start_guest_thread(run_interactor, "warden-interactor")
        run = self.sandbox.run_prepared(solution.prepared, limits, solution.grants(Grants()),
                                        cancel, solution.argv0, s_io)
        to_interactor.close()  # the interactor sees the submission's end as end of file
        thread.join(i_limits.wall_time_s + 5.0)
        if thread.is_alive():
            i_cancel.cancel()
            thread.join(5.0)
        time_s = fuel_time(run.fuel_used, self.timing.fuel_per_second)
        if not box:
            return TestOutcome(Verdict.IE, run, time_s, message="the interactor did not end")
        i_run = box[0]
        judged = kattis_outcome(i_run, feedback, self.problem.type is ProblemType.SCORING)
        if judged.verdict is Verdict.IE:
            return TestOutcome(Verdict.IE, run, time_s, message=judged.message)
        first = (i_io.ended_at or 0.0) <= (s_io.ended_at or time.monotonic())
        if first and judged.verdict is Verdict.WA:
            return TestOutcome(Verdict.WA, run, time_s, message=judged.message)
        own = run_verdict(run.status)
        if own is not None:
            return TestOutcome(own, run, time_s, message=_run_message(run))
        return TestOutcome(judged.verdict, run, time_s, judged.score, judged.message)


def _run_message(run: RunResult) -> str | None:
    parts = [run.status.value]
    if run.exit_code is not None and run.status is RunStatus.NONZERO_EXIT:
        parts.append(f"exit code {run.exit_code}")
    if run.message:
        parts.append(run.message)
    return ": ".join(parts)[:_MESSAGE_CHARS]


def _internal(message: str) -> TestOutcome:
    return TestOutcome(Verdict.IE, RunResult(status=RunStatus.INTERNAL_ERROR, message=message),
                       None, message=message)




def test_result(name: str, outcome: TestOutcome) -> TestResult:
    """What a submission shows of one test."""
    run = outcome.run
    return TestResult(
        name=name, verdict=outcome.verdict, time_s=outcome.time_s, fuel_used=run.fuel_used,
        wall_time_s=round(run.wall_time_s, 6), memory_peak_bytes=run.memory_peak_bytes,
        score=outcome.score, exit_code=run.exit_code, message=outcome.message)


def module_executable(sandbox: Sandbox, wasm: bytes, limits: Limits) -> Executable | RunResult:
    """A submitted (or stored) module, prepared once; the RunResult that says why it
    cannot run (invalid, link error)."""
    try:
        return Executable(sandbox.prepare(wasm, limits), "main.wasm", _as_given)
    except SandboxError as err:
        return RunResult(status=err.status, message=err.message)


def _as_given(grants: Grants) -> Grants:
    return grants
