"""Judging in this process with the real sandbox: deterministic time under load, interactive
deadlocks, checker failures as IE, testlib checkers, and `warden problem verify` on the
Kattis fixtures."""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from judge.grading import Grade
from judge.kattis import load_package
from judge.local import judge_locally
from judge.problem import (
    Checker,
    CheckerKind,
    Problem,
    ProblemLimits,
    Program,
    ProgramLimits,
)
from judge.problem import TestCase as Case
from judge.problem import TestGroup as Group
from judge.runner import TimingConfig
from judge.verdicts import Verdict
from sandboxes.languages.source_runner import SourceRunner
from sandboxes.runtime.sandbox import Sandbox
from service.cli import app

KATTIS = Path(__file__).resolve().parents[1] / "fixtures" / "kattis"
FUEL_PER_S = 8_000_000_000


@pytest.fixture(scope="module")
def sources() -> Iterator[SourceRunner]:
    runner = SourceRunner(Sandbox())
    yield runner
    runner.sandbox.close()


def problem_of(cases: list[tuple[bytes, bytes]], **fields: object
               ) -> tuple[Problem, dict[str, bytes]]:
    blobs: dict[str, bytes] = {}
    children = []
    for i, (given, answer) in enumerate(cases):
        ids = []
        for data in (given, answer):
            sha = hashlib.sha256(data).hexdigest()
            blobs[sha] = data
            ids.append(sha)
        children.append(Case(name=f"{i + 1:02d}", input_sha256=ids[0], answer_sha256=ids[1]))
    tests = Group(name="root", children=[Group(name="secret", children=children)])
    return Problem(tests=tests, **fields), blobs  # type: ignore[arg-type]


def judge(sources: SourceRunner, problem: Problem, blobs: dict[str, bytes], language: str,
          source: str) -> Grade:
    return judge_locally(sources, problem, blobs, language, source,
                         timing=TimingConfig(FUEL_PER_S, 3.0, 1.0))


def _burn() -> None:
    end = time.monotonic() + 120
    x = 0
    while time.monotonic() < end:
        x += 1


# A loop of n rounds, n from stdin: its fuel is a function of n only.
SPIN = """#include <stdio.h>
int main(void) { long n; volatile long x = 0; if (scanf("%ld", &n) != 1) return 1;
for (long i = 0; i < n; i++) x += i; printf("%ld\\n", n); return 0; }"""


def test_same_verdict_and_time_under_load(sources: SourceRunner) -> None:
    """Near the limit, judged 10 times while every core is busy: the same verdict and the
    same reported time each time (fuel, not the clock, is the time)."""
    probe_problem, probe_blobs = problem_of([(b"1000000\n", b"1000000\n")],
                                            limits=ProblemLimits(time_limit_s=1.0))
    probe = judge(sources, probe_problem, probe_blobs, "c", SPIN)
    per_million = probe.tests[0].time_s
    assert per_million is not None and per_million > 0
    limit = 0.05
    near = int(1_000_000 * limit * 0.9 / per_million)  # ~90 % of the budget
    over = int(1_000_000 * limit * 1.1 / per_million)
    problem, blobs = problem_of([(f"{near}\n".encode(), f"{near}\n".encode()),
                                 (f"{over}\n".encode(), f"{over}\n".encode())],
                                limits=ProblemLimits(time_limit_s=limit))
    problem = problem.model_copy(update={"tests": problem.tests.model_copy(update={
        "children": [problem.tests.children[0].model_copy(update={"on_reject": "continue"})]})})
    hogs = [multiprocessing.Process(target=_burn, daemon=True)
            for _ in range(multiprocessing.cpu_count())]
    for hog in hogs:
        hog.start()
    try:
        seen = set()
        for _ in range(10):
            grade = judge(sources, problem, blobs, "c", SPIN)
            seen.add(tuple((t.verdict, t.time_s, t.fuel_used) for t in grade.tests))
    finally:
        for hog in hogs:
            hog.kill()
    assert len(seen) == 1, seen
    (first, second), = seen
    assert first[0] is Verdict.AC and first[1] is not None and first[1] < limit
    assert second[0] is Verdict.TLE and second[1] == pytest.approx(limit)


GUESSER_THAT_WAITS = """#include <stdio.h>
int main(void) { char line[64]; if (fgets(line, sizeof line, stdin)) puts(line); return 0; }"""


def test_interactive_deadlock_ends_tle(sources: SourceRunner) -> None:
    """The submission waits for input while the interactor waits for a guess: the wall cap
    ends it TLE within its bound, and no lane hangs."""
    pkg = load_package(KATTIS / "guess")
    problem = pkg.problem.model_copy(update={"limits": pkg.problem.limits.model_copy(
        update={"time_limit_s": 0.2})})
    started = time.monotonic()
    grade = judge(sources, problem, pkg.blobs, "c", GUESSER_THAT_WAITS)
    elapsed = time.monotonic() - started
    assert grade.verdict is Verdict.TLE
    assert grade.tests[0].time_s is not None and grade.tests[0].time_s < 0.2  # no fuel spent
    assert elapsed < 30  # wall cap 3 x 0.2 + 1 s per test, a few tests: never a hang


def _custom(kind: CheckerKind, source: str, language: str = "c",
            fuel: int = 10_000_000_000) -> Checker:
    return Checker(kind=kind, program=Program(language=language, source=source),
                   limits=ProgramLimits(fuel=fuel, wall_time_s=5.0))


ECHO = "n = input()\nprint(n)\n"


@pytest.mark.parametrize(("checker_source", "why"), [
    ("int main(void) { return 0; }", "exit code 0"),  # 0 is not a Kattis verdict
    ("int main(void) { volatile int z = 0; return 1 / z; }", "trap"),
    ("int main(void) { for (;;) {} }", "fuel"),
])
def test_broken_kattis_checker_is_ie_not_wa(sources: SourceRunner, checker_source: str,
                                            why: str) -> None:
    problem, blobs = problem_of([(b"5\n", b"5\n")], checker=_custom(
        CheckerKind.KATTIS, checker_source, fuel=100_000_000))
    grade = judge(sources, problem, blobs, "python", ECHO)
    assert grade.verdict is Verdict.IE, (why, grade)


TESTLIB_LIKE = r"""#include <stdio.h>
/* testlib's protocol: checker input output answer; 0 accepted, 1 wrong answer */
int main(int argc, char **argv) {
  long out, ans; FILE *o = fopen(argv[2], "r"), *a = fopen(argv[3], "r");
  if (!o || !a || fscanf(a, "%ld", &ans) != 1) return 3;
  if (fscanf(o, "%ld", &out) != 1) { fprintf(stderr, "no number"); return 2; }
  if (out != ans) { fprintf(stderr, "expected %ld, got %ld", ans, out); return 1; }
  return 0; }"""


def test_testlib_checker(sources: SourceRunner) -> None:
    problem, blobs = problem_of([(b"5\n", b"5\n"), (b"6\n", b"7\n")],
                                checker=_custom(CheckerKind.TESTLIB, TESTLIB_LIKE))
    grade = judge(sources, problem, blobs, "python", ECHO)
    assert [t.verdict for t in grade.tests] == [Verdict.AC, Verdict.WA]
    assert grade.tests[1].message is not None and "expected 7, got 6" in grade.tests[1].message


def test_checker_never_sees_host_files(sources: SourceRunner) -> None:
    """A checker is a sandboxed guest like any other: /etc/passwd does not exist for it."""
    peek = r"""#include <stdio.h>
int main(int argc, char **argv) { FILE *f = fopen("/etc/passwd", "r");
  FILE *m = fopen("/tmp/judgemessage.txt", "w"); fputs(f ? "found" : "absent", m);
  fclose(m); return 42; }"""
    problem, blobs = problem_of([(b"1\n", b"1\n")], checker=_custom(CheckerKind.KATTIS, peek))
    grade = judge(sources, problem, blobs, "python", ECHO)
    assert grade.verdict is Verdict.AC and grade.tests[0].message == "absent"


@pytest.mark.parametrize("package", ["aplusb", "floatdiv", "guess", "subtasks"])
def test_verify_kattis_fixture(package: str) -> None:
    result = CliRunner().invoke(app, ["problem", "verify", str(KATTIS / package)])
    assert result.exit_code == 0, result.output
    assert "BAD" not in result.output and result.output.count("ok ") >= 2


def test_verify_reports_a_misplaced_submission(tmp_path: Path) -> None:
    import shutil

    shutil.copytree(KATTIS / "aplusb", tmp_path / "aplusb")
    wrong = tmp_path / "aplusb" / "submissions" / "accepted" / "wrong.c"
    shutil.copy(KATTIS / "aplusb" / "submissions" / "wrong_answer" / "off_by_one.c", wrong)
    result = CliRunner().invoke(app, ["problem", "verify", str(tmp_path / "aplusb")])
    assert result.exit_code == 1
    assert "BAD submissions/accepted/wrong.c: WA" in result.output


def test_verify_wants_full_score_from_accepted(tmp_path: Path) -> None:
    """On a scoring problem, an accepted submission that scores less than full is BAD."""
    import shutil

    shutil.copytree(KATTIS / "subtasks", tmp_path / "subtasks")
    partial = tmp_path / "subtasks" / "submissions" / "partially_accepted" / "loop.c"
    shutil.move(partial, tmp_path / "subtasks" / "submissions" / "accepted" / "loop.c")
    (tmp_path / "subtasks" / ".timelimit").write_text("1\n")  # no 60 s derivation run
    result = CliRunner().invoke(app, ["problem", "verify", str(tmp_path / "subtasks")])
    assert result.exit_code == 1
    assert "BAD submissions/accepted/loop.c: AC score 30" in result.output
