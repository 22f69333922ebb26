"""Judge jobs on a worker: a submission's compile job, then one job per test.

The compile job compiles the source once (or checks the module), stores the module by hash
and queues one test job per test case in the tenant's queue, so that the tests spread over
every free lane of every worker. A test job first asks whether the group rules still need
it (an earlier test of a stop-at-first-failure group already failed: skipped, not run),
runs the test (``judge.runner``), records its result; the job that records the last one
grades the submission and tells the waiters.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from judge.grading import Grade, Plan, failed_whole
from judge.local import ProgramError, Programs, compile_failure, prepare_programs
from judge.problem import Problem, TestCase, TestResult
from judge.runner import (
    TestJudge,
    TimingConfig,
    module_executable,
    submission_limits,
    test_result,
)
from judge.verdicts import Verdict
from sandboxes.languages.registry import LANGUAGES
from sandboxes.languages.source_runner import Executable, compile_error_result
from sandboxes.runtime.control import CancelToken
from sandboxes.schema import Grants, JobSpec, JobState, RunResult, RunStatus
from workers.problem_store import ProblemStore, sha256_of, test_jobs_key
from workers.queue import Submission
from workers.runtime import WorkerRuntime
from workers.store import job_key, new_job_id

log = logging.getLogger(__name__)

JUDGE_FIELD: Final = "judge"  # the job record's field naming its judge task
_BLOB_CACHE_BYTES: Final = 256 * 1024 * 1024
_PROBLEMS_CACHED: Final = 64


@dataclass(frozen=True)
class _Loaded:
    """A problem version as tests need it: parsed once per process, not once per test."""

    problem: Problem
    plan: Plan
    cases: dict[str, TestCase]


class JudgeTask(BaseModel):
    """What a judge job does, kept beside its spec in the job record."""

    model_config = ConfigDict(extra="forbid")

    submission: str
    phase: str  # "compile" | "test"
    test: str | None = None


class JudgeWorker:
    """The judge's per-process state: problems, their prepared programs and test data."""

    def __init__(self, rt: WorkerRuntime) -> None:
        self.rt = rt
        self.problems = ProblemStore(rt.client, rt.settings.job_ttl_s)
        s = rt.settings
        self.timing = TimingConfig(s.judge_fuel_per_second, s.judge_wall_factor,
                                   s.judge_wall_extra_s)
        self._lock = threading.Lock()
        self._problems: OrderedDict[tuple[str, str, int], _Loaded] = OrderedDict()
        self._programs: dict[tuple[str, str, int], Programs | ProgramError] = {}
        self._blobs: OrderedDict[str, bytes] = OrderedDict()
        self._blob_bytes = 0

    # -- entry ---------------------------------------------------------------------------
    def run(self, job_id: str, task_json: str, spec: JobSpec,
            cancel: CancelToken) -> RunResult | None:
        task = JudgeTask.model_validate_json(task_json)
        fields = self.problems.submission_fields(task.submission)
        if not fields:
            return RunResult(status=RunStatus.CANCELLED, message="the submission is gone")
        key = (fields["tenant"], fields["problem_id"], int(fields["version"]))
        loaded = self._problem(key)
        if loaded is None:
            grade_msg = "the problem version this submission names is gone"
            self.problems.finish(task.submission, _whole_ie(grade_msg), JobState.FAILED,
                                 grade_msg)
            return RunResult(status=RunStatus.CANCELLED, message=grade_msg)
        problem, plan = loaded.problem, loaded.plan
        language = fields.get("language") or None
        if task.phase == "compile":
            return self._compile(task.submission, key, problem, plan, language, spec)
        assert task.test is not None
        return self._test(task.submission, key, loaded, language, task.test, spec, cancel)

    # -- phases --------------------------------------------------------------------------
    def _compile(self, submission: str, key: tuple[str, str, int], problem: Problem,
                 plan: Plan, language: str | None, spec: JobSpec) -> RunResult:
        limits = submission_limits(problem, language, self.timing).model_copy(
            update={"compile_time_s": spec.limits.compile_time_s})
        programs = self._programs_for(key, problem)
        if isinstance(programs, ProgramError):
            self.problems.finish(submission, failed_whole(problem, Verdict.IE, str(programs)))
            return RunResult(status=RunStatus.OK, message=str(programs))
        test_spec: JobSpec
        compile_output: str | None = None
        if spec.module_sha256 is not None:
            module = self.rt.module(spec.module_sha256)
            if module is None:
                return self._whole(submission, problem, RunResult(
                    status=RunStatus.INTERNAL_ERROR, message="the submitted module expired"))
            built = module_executable(self.rt.sandbox, module, limits)
            if isinstance(built, RunResult):
                return self._whole(submission, problem, built)
            test_spec = JobSpec(module_sha256=spec.module_sha256, limits=limits,
                                grants=Grants())
        else:
            assert spec.language is not None and spec.source is not None
            lang = LANGUAGES.get(spec.language)
            if lang is not None and not lang.interpreted:
                outcome, _ = self.rt.sources.compile(lang, spec.source.encode(),
                                                     spec.compiler_flags,
                                                     spec.limits.compile_time_s)
                if outcome.wasm is None:
                    return self._whole(submission, problem, compile_error_result(outcome))
                sha = sha256_of(outcome.wasm)
                self.rt.store.put_module(sha, outcome.wasm)
                compile_output = outcome.message or None
                test_spec = JobSpec(module_sha256=sha, limits=limits, grants=Grants())
            else:
                built_src = self.rt.sources.executable(spec.language, spec.source, limits,
                                                       spec.compiler_flags)
                if isinstance(built_src, RunResult):
                    return self._whole(submission, problem, built_src)
                test_spec = JobSpec(language=spec.language, source=spec.source,
                                    compiler_flags=spec.compiler_flags, limits=limits,
                                    grants=Grants())
        self.problems.set_running(submission, compile_output)
        jobs: list[Submission] = []
        extra: list[tuple[Any, ...]] = []
        for name in plan.order:
            job_id = new_job_id()
            jobs.append((test_spec, None, job_id))
            task = JudgeTask(submission=submission, phase="test", test=name)
            extra.append(("HSET", job_key(job_id), JUDGE_FIELD, task.model_dump_json()))
            extra.append(("HSET", test_jobs_key(submission), name, job_id))
        extra.append(("EXPIRE", test_jobs_key(submission), self.rt.settings.job_ttl_s))
        self.rt.queue.submit_internal(jobs, key[0], extra)
        return RunResult(status=RunStatus.OK, compile_output=compile_output,
                         message=f"queued {len(jobs)} tests")

    def _test(self, submission: str, key: tuple[str, str, int], loaded: _Loaded,
              language: str | None, name: str, spec: JobSpec,
              cancel: CancelToken) -> RunResult:
        problem, plan = loaded.problem, loaded.plan
        if not plan.should_run(self.problems.known_verdicts(submission), name):
            self._record(submission, problem, plan,
                         TestResult(name=name, verdict=Verdict.SKIPPED))
            return RunResult(status=RunStatus.OK, message="skipped by the group rules")
        case = loaded.cases[name]
        programs = self._programs_for(key, problem)
        solution = self._solution(spec)
        inputs = self._blob(case.input_sha256), self._blob(case.answer_sha256)
        if isinstance(programs, ProgramError) or isinstance(solution, RunResult) \
                or inputs[0] is None or inputs[1] is None:
            why = (str(programs) if isinstance(programs, ProgramError)
                   else solution.message if isinstance(solution, RunResult)
                   else "the test data is gone")
            self._record(submission, problem, plan,
                         TestResult(name=name, verdict=Verdict.IE, message=why))
            return RunResult(status=RunStatus.INTERNAL_ERROR, message=why)
        outcome = TestJudge(self.rt.sandbox, problem, self.timing).judge(
            solution, language, programs.checker, programs.interactor, inputs[0], inputs[1],
            cancel)
        if outcome.run.status is RunStatus.CANCELLED:
            return outcome.run  # the submission is not graded on a cancelled test
        self._record(submission, problem, plan, test_result(name, outcome))
        return outcome.run

    # -- helpers -------------------------------------------------------------------------
    def _whole(self, submission: str, problem: Problem, result: RunResult) -> RunResult:
        """The submission ended before any test (compile error): graded at once."""
        self.problems.finish(submission, compile_failure(problem, result))
        return result

    def _record(self, submission: str, problem: Problem, plan: Plan,
                result: TestResult) -> None:
        done, total = self.problems.record_test(submission, result)
        if total and done == total:
            grade = plan.grade(self.problems.test_results(submission))
            self.problems.finish(submission, grade)

    def _solution(self, spec: JobSpec) -> Executable | RunResult:
        if spec.module_sha256 is not None:
            module = self.rt.module(spec.module_sha256)
            if module is None:
                return RunResult(status=RunStatus.INTERNAL_ERROR,
                                 message="the compiled submission expired")
            return module_executable(self.rt.sandbox, module, spec.limits)
        assert spec.language is not None and spec.source is not None
        return self.rt.sources.executable(spec.language, spec.source, spec.limits,
                                          spec.compiler_flags)

    def _problem(self, key: tuple[str, str, int]) -> _Loaded | None:
        with self._lock:
            hit = self._problems.get(key)
            if hit is not None:
                self._problems.move_to_end(key)
                return hit
        problem = self.problems.problem(*key)
        if problem is None:
            return None
        loaded = _Loaded(problem, Plan(problem), dict(problem.cases()))
        with self._lock:
            self._problems[key] = loaded
            while len(self._problems) > _PROBLEMS_CACHED:
                old, _ = self._problems.popitem(last=False)
                self._programs.pop(old, None)
        return loaded

    def _programs_for(self, key: tuple[str, str, int],
                      problem: Problem) -> Programs | ProgramError:
        with self._lock:
            hit = self._programs.get(key)
        if hit is not None:
            return hit
        try:
            built: Programs | ProgramError = prepare_programs(
                self.rt.sources, problem, self._blob_or_raise)
        except ProgramError as err:
            built = err
        with self._lock:
            self._programs[key] = built
        return built

    def _blob_or_raise(self, sha256: str) -> bytes:
        data = self._blob(sha256)
        if data is None:
            raise ProgramError(f"blob {sha256} is gone")
        return data

    def _blob(self, sha256: str) -> bytes | None:
        """Test data by hash: from this process's LRU, else from Redis (then kept)."""
        with self._lock:
            data = self._blobs.get(sha256)
            if data is not None:
                self._blobs.move_to_end(sha256)
                return data
        data = self.problems.blob(sha256)
        if data is None or len(data) > _BLOB_CACHE_BYTES // 4:
            return data
        with self._lock:
            if sha256 not in self._blobs:
                self._blobs[sha256] = data
                self._blob_bytes += len(data)
                while self._blob_bytes > _BLOB_CACHE_BYTES:
                    _, old = self._blobs.popitem(last=False)
                    self._blob_bytes -= len(old)
        return data


def _whole_ie(message: str) -> Grade:
    return Grade(Verdict.IE, 0.0, None, [], [], message)


_judges: dict[int, JudgeWorker] = {}
_judges_lock = threading.Lock()


def judge_worker(rt: WorkerRuntime) -> JudgeWorker:
    with _judges_lock:
        found = _judges.get(id(rt))
        if found is None:
            found = _judges[id(rt)] = JudgeWorker(rt)
        return found


