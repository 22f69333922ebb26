"""A judge problem as Warden stores it: limits, a checker, an optional interactor, and test
cases in a tree of groups whose data is referenced by sha256 (stored once, by content).

The grading fields follow Kattis (``testdata.yaml``): ``on_reject`` (break: the group stops at
its first failure; continue: it runs everything), ``verdict_mode`` (worst or first failure),
``aggregation`` of scores (sum, min, max, avg), per-test ``accept_score``/``reject_score``,
``ignore_sample`` and ``accept_if_any_accepted``; ``points`` is a pass-fail subtask's worth
(the 2025-09 format's ``max_score`` with ``score_aggregation: pass-fail``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from judge.verdicts import Verdict
from sandboxes.schema import Base64Bytes, Bytes, JobState, MiB, Seconds, Timestamp

# Error types of the problem's and a submission's rules no JSON Schema states (the API
# answers each with a problem type of its own, not a generic validation error)
INVALID_PROBLEM: Final = "invalid_problem"
INVALID_SUBMISSION: Final = "invalid_submission"

SHA256_PATTERN: Final = r"^[0-9a-f]{64}$"
NAME_PATTERN: Final = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
PROBLEM_ID_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,63}$"
MAX_TESTS: Final = 1000
MAX_DEPTH: Final = 4  # root, sample/secret, subtask groups, and one more
MAX_TIME_LIMIT_S: Final = 60.0
MAX_CHECKER_ARGS: Final = 32

Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN)]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


def _rule(message: str) -> PydanticCustomError:
    return PydanticCustomError(INVALID_PROBLEM, message)


class ProblemType(StrEnum):
    PASS_FAIL = "pass-fail"  # noqa: S105 (not a password)
    SCORING = "scoring"


class Program(BaseModel):
    """A program the judge runs besides the submission (checker, interactor): source in a
    supported language, or a WebAssembly module stored as a blob."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    language: str | None = None
    source: str | None = None
    wasm_sha256: Sha256 | None = None

    @model_validator(mode="after")
    def _one(self) -> Program:
        if (self.source is None) != (self.language is None):
            raise _rule("a program's source and language go together")
        if (self.source is None) == (self.wasm_sha256 is None):
            raise _rule("a program is either source (with language) or wasm_sha256")
        return self


class ProgramLimits(BaseModel):
    """What a checker or interactor may use per test (Kattis's validation_* limits)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fuel: int = Field(default=50_000_000_000, ge=1_000, le=1_000_000_000_000)
    wall_time_s: Seconds = Field(default=30.0, gt=0, le=120.0)
    memory_bytes: Bytes = Field(default=512 * MiB, ge=MiB, le=4096 * MiB)
    output_bytes: Bytes = Field(default=8 * MiB, ge=0, le=64 * MiB)


class CheckerKind(StrEnum):
    EXACT = "exact"  # byte for byte
    TOKENS = "tokens"  # Kattis's default validator: whitespace-separated tokens
    FLOAT = "float"  # tokens, numbers within a tolerance
    KATTIS = "kattis"  # a program: `checker input answer feedback_dir/`, exit 42 / 43
    TESTLIB = "testlib"  # a program: `checker input output answer`, exit 0 / 1 / 2 / 3 / 7


class Checker(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: CheckerKind = CheckerKind.TOKENS
    case_sensitive: bool = True
    space_change_sensitive: bool = False
    float_absolute_tolerance: float | None = Field(default=None, ge=0)
    float_relative_tolerance: float | None = Field(default=None, ge=0)
    program: Program | None = None
    args: list[Annotated[str, Field(max_length=256)]] = Field(
        default_factory=list, max_length=MAX_CHECKER_ARGS)
    limits: ProgramLimits = Field(default_factory=ProgramLimits)

    @model_validator(mode="after")
    def _consistent(self) -> Checker:
        custom = self.kind in (CheckerKind.KATTIS, CheckerKind.TESTLIB)
        if custom != (self.program is not None):
            raise _rule(f"a {self.kind.value} checker "
                             + ("needs a program" if custom else "takes no program"))
        if self.kind is CheckerKind.FLOAT and self.float_absolute_tolerance is None \
                and self.float_relative_tolerance is None:
            raise _rule("a float checker needs float_absolute_tolerance and/or "
                             "float_relative_tolerance")
        return self


class TestCase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["test"] = "test"
    name: Name
    input_sha256: Sha256
    answer_sha256: Sha256


def _child_kind(value: object) -> str:
    """A group's child is a test or a group by its ``kind``, else by its fields (a test
    names its data)."""
    if isinstance(value, dict):
        kind = value.get("kind")
        if kind is not None:
            return str(kind)
        return "test" if "input_sha256" in value or "answer_sha256" in value else "group"
    return str(getattr(value, "kind", "test"))


class TestGroup(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["group"] = "group"
    name: Name
    children: list[Annotated[
        Annotated[TestCase, Tag("test")] | Annotated[TestGroup, Tag("group")],
        Discriminator(_child_kind)]] = Field(default_factory=list)
    on_reject: Literal["break", "continue"] = "break"
    verdict_mode: Literal["worst", "first"] = "worst"
    aggregation: Literal["sum", "min", "max", "avg"] = "sum"
    accept_score: float = 1.0
    reject_score: float = 0.0
    points: float | None = Field(default=None, ge=0, description=(
        "A pass-fail subtask's worth: this many points when every test in it is accepted, "
        "0 otherwise (its tests' own scores are then not summed)"))
    ignore_sample: bool = False
    accept_if_any_accepted: bool = False

    def walk(self, path: str = "") -> Iterator[tuple[str, TestCase]]:
        """Every test case under this group with its full name, in judging order."""
        for child in self.children:
            name = f"{path}{child.name}"
            if isinstance(child, TestCase):
                yield name, child
            else:
                yield from child.walk(name + "/")


class ProblemLimits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    time_limit_s: Seconds = Field(default=1.0, gt=0, le=MAX_TIME_LIMIT_S, description=(
        "Per test: the submission's fuel budget is this many seconds of the calibrated "
        "fuel rate (WARDEN_JUDGE_FUEL_PER_SECOND); the same on any machine"))
    memory_bytes: Bytes = Field(default=256 * MiB, ge=MiB, le=4096 * MiB)
    output_bytes: Bytes = Field(default=8 * MiB, ge=0, le=64 * MiB)
    stack_bytes: Bytes = Field(default=8 * MiB, ge=64 * 1024, le=64 * MiB)
    language_time_multipliers: dict[str, Annotated[float, Field(gt=0, le=20)]] = Field(
        default_factory=dict, description="Language id -> time limit multiplier")


class Problem(BaseModel):
    """A problem's content. Test data is referenced by sha256 (uploaded as blobs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(default="", max_length=256)
    type: ProblemType = ProblemType.PASS_FAIL
    limits: ProblemLimits = Field(default_factory=ProblemLimits)
    checker: Checker = Field(default_factory=Checker)
    interactor: Program | None = Field(default=None, description=(
        "Interactive problems: the interactor runs beside the submission, its stdout the "
        "submission's stdin and back, with `input answer feedback_dir/` as arguments; it "
        "decides the verdict by the Kattis protocol (exit 42 / 43)"))
    interactor_limits: ProgramLimits = Field(default_factory=ProgramLimits)
    tests: TestGroup

    @field_validator("tests")
    @classmethod
    def _tests(cls, root: TestGroup) -> TestGroup:
        cases = list(root.walk())
        if not cases:
            raise _rule("a problem needs at least one test case")
        if len(cases) > MAX_TESTS:
            raise _rule(f"a problem has at most {MAX_TESTS} test cases")
        names = [n for n, _ in cases]
        if len(set(names)) != len(names):
            raise _rule("test case names must be unique within their group")
        if _depth(root) > MAX_DEPTH:
            raise _rule(f"groups nest at most {MAX_DEPTH} deep")
        return root

    @model_validator(mode="after")
    def _checker_for_interactive(self) -> Problem:
        if self.interactor is not None and self.checker.kind is not CheckerKind.TOKENS:
            raise _rule("an interactive problem's interactor is its checker: leave "
                             "`checker` out")
        return self

    def cases(self) -> list[tuple[str, TestCase]]:
        return list(self.tests.walk())

    def blobs(self) -> set[str]:
        """Every sha256 the problem refers to (test data, program modules)."""
        found = {h for _, c in self.cases() for h in (c.input_sha256, c.answer_sha256)}
        for program in (self.checker.program, self.interactor):
            if program is not None and program.wasm_sha256 is not None:
                found.add(program.wasm_sha256)
        return found


def _depth(group: TestGroup) -> int:
    return 1 + max((_depth(c) for c in group.children if isinstance(c, TestGroup)), default=0)


_ID = re.compile(PROBLEM_ID_PATTERN)


def check_problem_id(problem_id: str) -> str:
    if not _ID.fullmatch(problem_id):
        raise ValueError(f"problem id {problem_id!r} must match {PROBLEM_ID_PATTERN}")
    return problem_id


class ProblemRecord(BaseModel):
    """A stored problem: every replace makes a new version; submissions name theirs."""

    id: str
    version: int
    created_at: Timestamp
    updated_at: Timestamp
    problem: Problem


class TestResult(BaseModel):
    """One test of a submission."""

    name: str
    verdict: Verdict
    time_s: float | None = Field(default=None, description=(
        "Deterministic time: fuel used / WARDEN_JUDGE_FUEL_PER_SECOND"))
    fuel_used: int | None = None
    wall_time_s: float | None = None
    memory_peak_bytes: int | None = None
    score: float | None = None
    exit_code: int | None = None
    message: str | None = Field(default=None, description=(
        "The checker's message (judgemessage.txt), or why the run ended"))


class GroupResult(BaseModel):
    name: str
    verdict: Verdict
    score: float


class SubmissionRecord(BaseModel):
    id: str
    problem_id: str
    problem_version: int
    language: str | None = None
    state: JobState
    created_at: Timestamp
    finished_at: Timestamp | None = None
    verdict: Verdict | None = Field(default=None, description="Set once judged")
    score: float | None = None
    first_failure: str | None = Field(default=None, description=(
        "The name of the first test (in judging order) whose verdict is not AC"))
    compile_output: str | None = None
    tests: list[TestResult] = Field(default_factory=list)
    groups: list[GroupResult] = Field(default_factory=list)
    error: str | None = None


class ProblemUpload(BaseModel):
    """``PUT /v1/problems/{id}``: the problem, and the bytes of any blob it names that the
    tenant has not stored yet (standard base64, keyed by their sha256)."""

    model_config = ConfigDict(extra="forbid")

    problem: Problem
    blobs: dict[Sha256, Base64Bytes] = Field(
        default_factory=dict, max_length=2 * MAX_TESTS + 2,
        json_schema_extra={"propertyNames": {"pattern": SHA256_PATTERN}})


class BlobStored(BaseModel):
    sha256: str
    size: int
    charged_bytes: int = Field(description="Bytes newly counted against stored_bytes")


class ProblemList(BaseModel):
    problems: list[str]


class SubmissionCreate(BaseModel):
    """A submission to a problem: source in a language, or a module (base64 or WAT)."""

    model_config = ConfigDict(extra="forbid")

    language: str | None = None
    source: str | None = Field(default=None, max_length=1024 * 1024)
    wasm_base64: str | None = None
    wat: str | None = None
    compiler_flags: list[str] = Field(default_factory=list, max_length=16)

    @model_validator(mode="after")
    def _one(self) -> SubmissionCreate:
        given = [n for n in ("source", "wasm_base64", "wat") if getattr(self, n) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                INVALID_SUBMISSION, "give exactly one of source (with language), wasm_base64 "
                "or wat")
        if (self.source is None) != (self.language is None):
            raise PydanticCustomError(INVALID_SUBMISSION, "source and language go together")
        return self


class SubmissionAccepted(BaseModel):
    id: str
    state: JobState


class SubmissionList(BaseModel):
    submissions: list[SubmissionRecord]
