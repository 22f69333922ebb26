"""Judging a whole submission in this process (``warden problem verify``, tests): compile
once, run the tests on a few threads in judging order, skip what the group rules make
pointless, grade. The workers do the same steps spread over the cluster."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from judge.grading import Grade, Plan, failed_whole
from judge.problem import Problem, Program, ProgramLimits, TestResult
from judge.runner import (
    TestJudge,
    TimingConfig,
    module_executable,
    program_limits,
    submission_limits,
    test_result,
)
from judge.verdicts import Verdict, run_verdict
from sandboxes.languages.source_runner import Executable, SourceRunner
from sandboxes.schema import RunResult

BlobSource = Callable[[str], bytes]


@dataclass(frozen=True)
class Programs:
    """A problem's checker and interactor, prepared (None: not needed)."""

    checker: Executable | None
    interactor: Executable | None


class ProgramError(Exception):
    """A checker or interactor that cannot be built: every test would be IE."""


def prepare_program(sources: SourceRunner, program: Program, limits: ProgramLimits,
                    blob: BlobSource, what: str) -> Executable:
    run_limits = program_limits(limits)
    built: Executable | RunResult
    if program.wasm_sha256 is not None:
        built = module_executable(sources.sandbox, blob(program.wasm_sha256), run_limits)
    else:
        assert program.language is not None and program.source is not None
        built = sources.executable(program.language, program.source, run_limits)
    if isinstance(built, RunResult):
        detail = built.compile_output or built.message or built.status.value
        raise ProgramError(f"the {what} cannot be built: {detail}"[:4096])
    return built


def prepare_programs(sources: SourceRunner, problem: Problem, blob: BlobSource) -> Programs:
    checker = interactor = None
    if problem.checker.program is not None:
        checker = prepare_program(sources, problem.checker.program, problem.checker.limits,
                                  blob, "checker")
    if problem.interactor is not None:
        interactor = prepare_program(sources, problem.interactor, problem.interactor_limits,
                                     blob, "interactor")
    return Programs(checker, interactor)


def prepare_submission(sources: SourceRunner, problem: Problem, language: str | None,
                       source: str | None, module: bytes | None, timing: TimingConfig,
                       flags: list[str] | None = None) -> Executable | RunResult:
    limits = submission_limits(problem, language, timing)
    if module is not None:
        return module_executable(sources.sandbox, module, limits)
    assert language is not None and source is not None
    return sources.executable(language, source, limits, flags)


def compile_failure(problem: Problem, result: RunResult) -> Grade:
    """The grade of a submission that never ran: CE (IE if Warden failed)."""
    verdict = run_verdict(result.status) or Verdict.IE
    return failed_whole(problem, verdict, result.compile_output or result.message)


def judge_locally(sources: SourceRunner, problem: Problem, blobs: Mapping[str, bytes],
                  language: str | None, source: str | None = None,
                  module: bytes | None = None, timing: TimingConfig | None = None,
                  lanes: int = 2) -> Grade:
    timing = timing or TimingConfig(sources.sandbox.settings.judge_fuel_per_second,
                                    sources.sandbox.settings.judge_wall_factor,
                                    sources.sandbox.settings.judge_wall_extra_s)
    try:
        programs = prepare_programs(sources, problem, blobs.__getitem__)
    except ProgramError as err:
        return failed_whole(problem, Verdict.IE, str(err))
    solution = prepare_submission(sources, problem, language, source, module, timing)
    if isinstance(solution, RunResult):
        return compile_failure(problem, solution)
    plan = Plan(problem)
    judge = TestJudge(sources.sandbox, problem, timing)
    cases = dict(problem.cases())
    known: dict[str, Verdict] = {}
    results: dict[str, TestResult] = {}
    lock = threading.Lock()

    def run(name: str) -> None:
        with lock:
            if not plan.should_run(known, name):
                return
        case = cases[name]
        outcome = judge.judge(solution, language, programs.checker, programs.interactor,
                              blobs[case.input_sha256], blobs[case.answer_sha256])
        with lock:
            known[name] = outcome.verdict
            results[name] = test_result(name, outcome)

    with concurrent.futures.ThreadPoolExecutor(max(lanes, 1)) as pool:
        list(pool.map(run, plan.order))
    return plan.grade(results)
