"""Kattis package import: the four fixture packages read into the problem model, and every
refusal naming the part of the package Warden cannot honour. No sandbox runs here."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from judge.kattis import (
    EXTENSIONS,
    MAX_TEST_FILE_BYTES,
    KattisPackage,
    PackageError,
    load_package,
)
from judge.problem import CheckerKind, ProblemType
from judge.problem import TestCase as Case
from judge.problem import TestGroup as Group
from sandboxes.languages.registry import LANGUAGES
from sandboxes.schema import MiB

FIXTURES = Path(__file__).parent.parent / "fixtures" / "kattis"

# What each fixture submission must get when judged (verdict, score: None for pass-fail), for
# the tests that run them in the sandbox. The time limit is derived from the accepted ones.
EXPECTED: dict[str, dict[str, tuple[str, float | None]]] = {
    "aplusb": {
        "submissions/accepted/aplusb.c": ("AC", None),
        "submissions/accepted/aplusb.py": ("AC", None),
        "submissions/wrong_answer/off_by_one.c": ("WA", None),  # samples pass, secret/03 fails
        "submissions/time_limit_exceeded/spin.c": ("TLE", None),
        "submissions/run_time_error/divzero.c": ("RE", None),
        "submissions/run_time_error/raises.py": ("RE", None),
    },
    "floatdiv": {
        "submissions/accepted/div.c": ("AC", None),
        "submissions/accepted/div.py": ("AC", None),
        "submissions/wrong_answer/one_digit.c": ("WA", None),  # samples pass, secret/01 fails
    },
    "guess": {
        "submissions/accepted/binary.c": ("AC", None),
        "submissions/accepted/binary.py": ("AC", None),
        "submissions/wrong_answer/linear.c": ("WA", None),  # samples pass, secret/02 fails
        "submissions/time_limit_exceeded/spin.c": ("TLE", None),
    },
    "subtasks": {
        "submissions/accepted/formula.c": ("AC", 100.0),
        "submissions/accepted/formula.py": ("AC", 100.0),
        # group1 (n <= 1000) passes, group2 (n ~ 10^12) times out: AC by
        # accept_if_any_accepted, with group1's 30 points.
        "submissions/partially_accepted/loop.c": ("AC", 30.0),
    },
}
VERDICT_OF_CATEGORY = {"accepted": "AC", "partially_accepted": "AC", "wrong_answer": "WA",
                       "time_limit_exceeded": "TLE", "run_time_error": "RE"}


def fixture(name: str) -> KattisPackage:
    return load_package(FIXTURES / name)


def groups(group: Group) -> dict[str, Group]:
    """Every group by its path (root's children are "sample", "secret")."""
    found: dict[str, Group] = {}

    def walk(g: Group, path: str) -> None:
        found[path or g.name] = g
        for child in g.children:
            if isinstance(child, Group):
                walk(child, f"{path}/{child.name}" if path else child.name)
    walk(group, "")
    return found


def make(root: Path, files: dict[str, str | bytes], *, name: str = "prob") -> Path:
    """A package in root/name from relative path -> content."""
    base = root / name
    for rel, content in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return base


def basic(extra: dict[str, str | bytes] | None = None) -> dict[str, str | bytes]:
    """A minimal valid legacy package, with extra (or replaced) files."""
    files: dict[str, str | bytes] = {
        "problem.yaml": "name: P\n",
        "data/sample/1.in": "1\n", "data/sample/1.ans": "1\n",
        "data/secret/1.in": "2\n", "data/secret/1.ans": "2\n",
        "submissions/accepted/a.c": "int main(void) { return 0; }\n",
    }
    files.update(extra or {})
    return files


def refusal(tmp_path: Path, files: dict[str, str | bytes], *, name: str = "prob") -> PackageError:
    with pytest.raises(PackageError) as caught:
        load_package(make(tmp_path, files, name=name))
    return caught.value


# -- the fixtures ------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_blobs_and_submissions(name: str) -> None:
    package = fixture(name)
    assert package.short_name == name
    assert set(package.blobs) == package.problem.blobs()
    for sha, data in package.blobs.items():
        assert hashlib.sha256(data).hexdigest() == sha
    for case_name, case in package.problem.cases():
        stem = FIXTURES / name / "data" / case_name
        assert package.blobs[case.input_sha256] == stem.with_suffix(".in").read_bytes()
        assert package.blobs[case.answer_sha256] == stem.with_suffix(".ans").read_bytes()
    by_path = {s.path: s for s in package.submissions}
    assert set(by_path) == set(EXPECTED[name])
    assert package.skipped == []
    for path, (verdict, _) in EXPECTED[name].items():
        submission = by_path[path]
        assert submission.category == path.split("/")[1]
        assert VERDICT_OF_CATEGORY[submission.category] == verdict
        assert submission.language == {".c": "c", ".py": "python"}[Path(path).suffix]
        assert submission.source == (FIXTURES / name / path).read_text()


def test_aplusb_legacy_default_checker() -> None:
    package = fixture("aplusb")
    problem = package.problem
    assert package.format_version == "legacy"
    assert problem.title == "A plus B"
    assert problem.type is ProblemType.PASS_FAIL
    assert problem.checker.kind is CheckerKind.TOKENS
    assert problem.checker.case_sensitive is False  # the Kattis default validator's default
    assert problem.interactor is None
    assert problem.limits.memory_bytes == 256 * MiB
    assert problem.limits.output_bytes == 8 * MiB
    assert not package.time_limit_fixed and problem.limits.time_limit_s == 1.0
    assert (package.time_multiplier, package.safety_margin) == (5.0, 2.0)
    assert [c.name for c in problem.tests.children] == ["sample", "secret"]
    assert problem.tests.name == "root"
    assert [n for n, _ in problem.cases()] == ["sample/1", "sample/2"] + [
        f"secret/0{i}" for i in range(1, 7)]
    assert all(g.on_reject == "break" for g in groups(problem.tests).values())
    assert package.warnings == []


def test_floatdiv_custom_validator_and_timelimit_file() -> None:
    package = fixture("floatdiv")
    checker = package.problem.checker
    assert checker.kind is CheckerKind.KATTIS
    assert checker.program is not None and checker.program.language == "c"
    source = FIXTURES / "floatdiv/output_validators/checker/checker.c"
    assert checker.program.source == source.read_text()
    assert checker.args == []
    assert package.time_limit_fixed and package.problem.limits.time_limit_s == 1.0
    assert package.problem.limits.memory_bytes == 1024 * MiB  # problemtools' default


def test_guess_interactive_2023_07() -> None:
    package = fixture("guess")
    problem = package.problem
    assert package.format_version == "2023-07-draft"
    assert problem.title == "Guess the Number"  # "en" of the name map
    assert problem.interactor is not None and problem.interactor.language == "c"
    assert "lower" in (problem.interactor.source or "")
    assert problem.checker.kind is CheckerKind.TOKENS
    assert (package.time_multiplier, package.safety_margin) == (2.0, 4.0)
    empty = hashlib.sha256(b"").hexdigest()
    assert all(case.answer_sha256 == empty for _, case in problem.cases())
    assert len(problem.cases()) == 10


def test_subtasks_scoring_groups() -> None:
    package = fixture("subtasks")
    problem = package.problem
    assert problem.type is ProblemType.SCORING
    found = groups(problem.tests)
    assert list(found) == ["root", "sample", "secret", "secret/group1", "secret/group2"]
    root, sample, secret = found["root"], found["sample"], found["secret"]
    assert root.ignore_sample and root.on_reject == "continue"
    assert sample.accept_score == 0 and sample.verdict_mode == "first"
    assert secret.accept_if_any_accepted and secret.verdict_mode == "first"
    assert secret.on_reject == "continue"  # inherited from data/testdata.yaml
    for name, points in (("secret/group1", 30.0), ("secret/group2", 70.0)):
        group = found[name]
        assert (group.accept_score, group.aggregation, group.on_reject) == (points, "min", "break")
        assert not group.ignore_sample
        assert all(isinstance(c, Case) for c in group.children)
    assert any("range" in w for w in package.warnings)


def test_extensions_are_warden_languages() -> None:
    assert set(EXTENSIONS.values()) <= set(LANGUAGES)


# -- refusals ----------------------------------------------------------------------------

def test_missing_secret(tmp_path: Path) -> None:
    files = basic()
    del files["data/secret/1.in"], files["data/secret/1.ans"]
    assert refusal(tmp_path, files).part == "data/secret"


def test_lone_in_and_lone_ans(tmp_path: Path) -> None:
    error = refusal(tmp_path, basic({"data/secret/2.in": "3\n"}))
    assert error.part == "data/secret/2.in"
    assert str(error) == f"data/secret/2.in: {error.message}"
    assert refusal(tmp_path, basic({"data/secret/3.ans": "3\n"}), name="p2").part == \
        "data/secret/3.ans"


def test_empty_group_and_bad_names(tmp_path: Path) -> None:
    files = basic()
    files["data/secret/g1/notes.md"] = "nothing to judge\n"
    assert refusal(tmp_path, files).part == "data/secret/g1"
    files = basic({"data/secret/bad name.in": "1\n", "data/secret/bad name.ans": "1\n"})
    assert refusal(tmp_path, files, name="p2").part == "data/secret/bad name.in"
    assert refusal(tmp_path, basic({"data/extra/1.in": "1\n"}), name="p3").part == "data/extra"


def test_custom_grader_and_grader_flags(tmp_path: Path) -> None:
    files = basic({"data/secret/testdata.yaml": "grading: custom\n"})
    assert refusal(tmp_path, files).part == "data/secret/testdata.yaml: grading"
    files = basic({"data/secret/testdata.yaml": "grader_flags: always_accept\n"})
    assert refusal(tmp_path, files, name="p2").part == "data/secret/testdata.yaml: grader_flags"
    # ignore_sample at the top is inherited by groups without grader_flags of their own.
    files = basic({"data/testdata.yaml": "on_reject: continue\ngrader_flags: ignore_sample\n"})
    assert refusal(tmp_path, files, name="p3").part == "data/sample"
    files = basic({"data/testdata.yaml": "grader_flags: ignore_sample\n",
                   "data/sample/testdata.yaml": "grader_flags: sum\n",
                   "data/secret/testdata.yaml": "grader_flags: sum\n"})
    assert refusal(tmp_path, files, name="p4").part == "data/testdata.yaml: grader_flags"


@pytest.mark.parametrize("kind", ["multi-pass", "submit-answer", "[pass-fail, scoring]"])
def test_unsupported_types(tmp_path: Path, kind: str) -> None:
    files = basic({"problem.yaml": f"problem_format_version: 2025-09\nname: P\ntype: {kind}\n"})
    assert refusal(tmp_path, files).part == "problem.yaml: type"


def test_unsupported_validators(tmp_path: Path) -> None:
    main = 'int main(void) { return 42; }\n'
    two = basic({"problem.yaml": "name: P\nvalidation: custom\n",
                 "output_validators/v/a.cpp": main,
                 "output_validators/v/b.cpp": main})
    error = refusal(tmp_path, two)
    assert error.part == "output_validators/v/" and "2 source files" in error.message
    built = basic({"problem.yaml": "name: P\nvalidation: custom\n",
                   "output_validators/v/v.c": main,
                   "output_validators/v/build": "#!/bin/sh\n"})
    assert refusal(tmp_path, built, name="p2").part == "output_validators/v/"
    testlib = basic({"problem.yaml": "name: P\nvalidation: custom\n",
                     "output_validators/v/v.cpp": '#include "testlib.h"\n' + main})
    error = refusal(tmp_path, testlib, name="p3")
    assert error.part == "output_validators/v/" and "testlib.h" in error.message
    java = basic({"problem.yaml": "name: P\nvalidation: custom\n",
                  "output_validators/v/V.java": "class V {}\n"})
    assert refusal(tmp_path, java, name="p4").part == "output_validators/v/"
    missing = basic({"problem.yaml": "name: P\nvalidation: custom\n"})
    assert refusal(tmp_path, missing, name="p5").part == "output_validators/"
    several = basic({"problem.yaml": "name: P\nvalidation: custom\n",
                     "output_validators/a/a.c": main,
                     "output_validators/b/b.c": main})
    assert refusal(tmp_path, several, name="p6").part == "output_validators/"


def test_validator_headers_are_inlined(tmp_path: Path) -> None:
    files = basic({
        "problem.yaml": "name: P\nvalidation: custom\nvalidator_flags: tolerance 3\n",
        "output_validators/v/validate.h": '#pragma once\n#include "util.h"\nint judge(void);\n',
        "output_validators/v/util.h": "#define OK 42\n",
        "output_validators/v/check.cc": '#include <cstdio>\n#include "validate.h"\n'
                                        '#include "util.h"\nint main() { return OK; }\n'})
    package = load_package(make(tmp_path, files))
    checker = package.problem.checker
    assert checker.kind is CheckerKind.KATTIS and checker.args == ["tolerance", "3"]
    assert checker.program is not None and checker.program.language == "cpp"
    source = checker.program.source or ""
    assert '#include "' not in source and "#pragma once" not in source
    assert source.count("#define OK 42") == 1 and "int judge(void);" in source
    assert '#line 3 "check.cc"' in source  # compiler messages keep the file's line numbers


def test_limits(tmp_path: Path) -> None:
    cases = [
        ("limits:\n  memory: 8192\n", "problem.yaml: limits.memory"),
        ("limits:\n  output: 100\n", "problem.yaml: limits.output"),
        ("limits:\n  time_limit: 61\n", "problem.yaml: limits.time_limit"),
        ("limits:\n  time_multiplier: 0.5\n", "problem.yaml: limits.time_multiplier"),
        ("limits:\n  validation_memory: 5000\n", "problem.yaml: limits.validation_memory"),
    ]
    for i, (limits, part) in enumerate(cases):
        files = basic({"problem.yaml": f"name: P\n{limits}"})
        assert refusal(tmp_path, files, name=f"p{i}").part == part
    files = basic({"problem.yaml": "problem_format_version: 2025-09\nname: P\nlimits:\n"
                                "  time_multipliers: 3\n"})
    assert refusal(tmp_path, files, name="q1").part == "problem.yaml: limits.time_multipliers"
    files = basic({"problem.yaml": "name: P\nlimits:\n  time_limit: 2\n", ".timelimit": "3\n"})
    assert refusal(tmp_path, files, name="q2").part == ".timelimit"


def test_limits_read(tmp_path: Path) -> None:
    files = basic({"problem.yaml": "problem_format_version: 2025-09\nname: P\nlimits:\n"
                                "  time_limit: 2.5\n  time_resolution: 0.5\n  memory: 512\n"
                                "  output: 16\n  validation_time: 10\n"
                                "  time_multipliers: {ac_to_time_limit: 3}\n"})
    package = load_package(make(tmp_path, files))
    limits = package.problem.limits
    assert package.time_limit_fixed and limits.time_limit_s == 2.5
    assert (limits.memory_bytes, limits.output_bytes) == (512 * MiB, 16 * MiB)
    assert (package.time_multiplier, package.safety_margin) == (3.0, 1.5)
    assert package.time_resolution == 0.5
    assert package.problem.interactor_limits.wall_time_s == 10


def test_test_file_size(tmp_path: Path) -> None:
    base = make(tmp_path, basic())
    with (base / "data/secret/1.in").open("wb") as f:
        f.truncate(MAX_TEST_FILE_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(PackageError) as caught:
        load_package(base)
    assert caught.value.part == "data/secret/1.in"


def test_too_deep_and_input_files(tmp_path: Path) -> None:
    files = basic({"data/secret/a/b/c/1.in": "1\n", "data/secret/a/b/c/1.ans": "1\n"})
    assert refusal(tmp_path, files).part == "data/secret/a/b/c"
    files = basic({"data/secret/1.files/f.txt": "x\n"})
    assert refusal(tmp_path, files, name="p2").part == "data/secret/1.files"


def test_short_name(tmp_path: Path) -> None:
    assert refusal(tmp_path, basic(), name="Bad Name!").part == "Bad Name!/"
    package = load_package(make(tmp_path, basic(), name="APlusB"))
    assert package.short_name == "aplusb" and package.warnings


# -- what is read ------------------------------------------------------------------------

def test_testdata_inheritance(tmp_path: Path) -> None:
    files = basic({"problem.yaml": "name: P\ntype: scoring\n",
                   "data/secret/testdata.yaml": "on_reject: continue\naccept_score: 5\n",
                   "data/secret/g1/1.in": "1\n",
                   "data/secret/g1/1.ans": "1\n",
                   "data/secret/g1/sub/1.in": "1\n",
                   "data/secret/g1/sub/1.ans": "1\n",
                   "data/secret/g2/testdata.yaml": "on_reject: break\n",
                   "data/secret/g2/1.in": "1\n",
                   "data/secret/g2/1.ans": "1\n"})
    found = groups(load_package(make(tmp_path, files)).problem.tests)
    assert found["sample"].on_reject == "break"
    for name in ("secret", "secret/g1", "secret/g1/sub"):
        assert found[name].on_reject == "continue" and found[name].accept_score == 5
    assert found["secret/g2"].on_reject == "break" and found["secret/g2"].accept_score == 5
    # Files and directories in one lexicographic order.
    assert [c.name for c in found["secret"].children] == ["1", "g1", "g2"]


def test_default_validator_flags(tmp_path: Path) -> None:
    flags = "validator_flags: float_tolerance 1e-4 case_sensitive\n"
    files = basic({"problem.yaml": "name: P\n" + flags})
    checker = load_package(make(tmp_path, files)).problem.checker
    assert checker.kind is CheckerKind.FLOAT and checker.case_sensitive
    assert checker.float_absolute_tolerance == checker.float_relative_tolerance == 1e-4
    files = basic({"data/secret/testdata.yaml": "output_validator_flags: space_change_sensitive\n",
                   "data/sample/testdata.yaml": "output_validator_flags: space_change_sensitive\n"})
    assert load_package(make(tmp_path, files, name="p2")).problem.checker.space_change_sensitive
    files = basic({"problem.yaml": "name: P\nvalidator_flags: float_tolerance\n"})
    assert refusal(tmp_path, files, name="p3").part == "problem.yaml: validator_flags"
    files = basic({"problem.yaml": "name: P\nvalidator_flags: ignore_case\n"})
    assert refusal(tmp_path, files, name="p4").part == "problem.yaml: validator_flags"
    # One checker per problem: groups may not compare differently.
    files = basic({"data/secret/testdata.yaml": "output_validator_flags: case_sensitive\n"})
    assert refusal(tmp_path, files, name="p5").part == "data/secret/1"


def test_interactive_details(tmp_path: Path) -> None:
    files = basic({"problem.yaml": "name: P\nvalidation: custom interactive\n"
                                "validator_flags: strict\n",
                   "output_validators/i/i.py": "import sys\nsys.exit(42)\n"})
    del files["data/sample/1.in"], files["data/sample/1.ans"], files["data/secret/1.ans"]
    files["data/sample/1.interaction"] = ">1\n<ok\n"
    package = load_package(make(tmp_path, files))
    assert package.problem.interactor is not None
    assert package.problem.interactor.language == "python"
    assert [n for n, _ in package.problem.cases()] == ["secret/1"]  # sample only shown
    assert any("interaction" in w for w in package.warnings)
    assert any("interactor flags" in w for w in package.warnings)
    files = basic({"problem.yaml": "problem_format_version: 2023-07-draft\nname: P\n"
                                "type: interactive\n"})
    assert refusal(tmp_path, files, name="p2").part == "output_validator/"


def test_submissions_skipped(tmp_path: Path) -> None:
    files = basic({"submissions/accepted/Main.java": "class Main {}\n",
                   "submissions/accepted/old.py": "#!/usr/bin/env python2\nprint 1\n",
                   "submissions/accepted/multi/a.c": "int f(void);\n",
                   "submissions/accepted/multi/b.c": "int main(void) { return 0; }\n",
                   "submissions/accepted/one/sol.cpp": '#include "h.hpp"\nint main() { return X; }',
                   "submissions/accepted/one/h.hpp": "#define X 0\n",
                   "submissions/accepted/one/README.md": "notes\n",
                   "submissions/slow_accepted/s.c": "int main(void) { return 0; }\n",
                   "submissions/wrong_answer/w.rs": "fn main() {}\n"})
    package = load_package(make(tmp_path, files))
    by_path = {s.path: s for s in package.submissions}
    assert set(by_path) == {"submissions/accepted/a.c", "submissions/accepted/one/sol.cpp",
                            "submissions/wrong_answer/w.rs"}
    assert by_path["submissions/accepted/one/sol.cpp"].language == "cpp"
    assert "#define X 0" in by_path["submissions/accepted/one/sol.cpp"].source
    assert by_path["submissions/wrong_answer/w.rs"].language == "rust"
    skipped = "\n".join(package.skipped)
    for part in ("Main.java", "old.py", "multi", "slow_accepted"):
        assert part in skipped
    assert len(package.skipped) == 4


def test_metadata_warnings(tmp_path: Path) -> None:
    files = basic({"problem.yaml": "name: P\nauthor: A\nlicense: cc0\nrights_owner: R\n"
                                "uuid: 1\nkeywords: k\nfrobnicate: 1\n"})
    package = load_package(make(tmp_path, files))
    assert package.warnings == ["problem.yaml: frobnicate: not a legacy key; ignored"]
    files = basic({"problem.yaml": "source: S\n",
                   "problem_statement/problem.en.tex": "\\problemname{From the Statement}\n"})
    assert load_package(make(tmp_path, files, name="p2")).problem.title == "From the Statement"


def test_2025_09_scoring(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "problem.yaml": "problem_format_version: 2025-09\nuuid: u\nname: {en: P, de: Q}\n"
                        "type: scoring\nconstants: {limit: 7}\n",
        "data/sample/1.in": "1\n", "data/sample/1.ans": "1\n",
        "data/secret/test_group.yaml": "output_validator_args: [float_tolerance, '1e-6']\n",
        "data/secret/a/test_group.yaml": "max_score: 20\n",
        "data/secret/b/test_group.yaml": "max_score: 30\nscore_aggregation: min\n"
                                         "require_pass: a\n",
        "data/secret/c/test_group.yaml": "max_score: 50\nscore_aggregation: sum\n",
        "output_validator/check.py": "LIMIT = {{limit}}\n",
    }
    for group, n in (("a", 1), ("b", 2), ("c", 4)):
        for i in range(n):
            files[f"data/secret/{group}/{i}.in"] = f"{i}\n"
            files[f"data/secret/{group}/{i}.ans"] = f"{i}\n"
    files["data/sample/test_group.yaml"] = "output_validator_args: [float_tolerance, '1e-6']\n"
    package = load_package(make(tmp_path, files))
    assert package.format_version == "2025-09" and package.problem.title == "P"
    found = groups(package.problem.tests)
    assert found["root"].ignore_sample  # the score is secret's
    assert found["secret"].aggregation == "sum"
    assert found["secret/a"].points == 20
    b, c = found["secret/b"], found["secret/c"]
    assert (b.aggregation, b.accept_score, b.points) == ("min", 30, None)
    assert (c.aggregation, c.accept_score) == ("sum", 12.5)
    checker = package.problem.checker
    assert checker.kind is CheckerKind.KATTIS and checker.args == ["float_tolerance", "1e-6"]
    assert checker.program is not None and checker.program.source == "LIMIT = 7\n"
    assert any("require_pass" in w for w in package.warnings)
    files["data/secret/d/testdata.yaml"] = "on_reject: continue\n"
    assert refusal(tmp_path, files, name="p2").part == "data/secret/d/testdata.yaml"
    del files["data/secret/d/testdata.yaml"]
    files["data/secret/a/test_group.yaml"] = "score_aggregation: sum\n"
    assert refusal(tmp_path, files, name="p3").part == "data/secret/a/test_group.yaml: max_score"
    files["data/secret/a/test_group.yaml"] = "max_score: 20\nargs: [x]\n"
    assert refusal(tmp_path, files, name="p4").part == "data/secret/a/test_group.yaml: args"


def test_symbolic_links(tmp_path: Path) -> None:
    base = make(tmp_path, basic())
    (base / "data/secret/2.in").symlink_to("1.in")  # shared tests, as in problemtools' oddecho
    (base / "data/secret/2.ans").symlink_to(base / "data/secret/1.ans")
    cases = dict(load_package(base).problem.cases())
    assert cases["secret/1"] == cases["secret/2"].model_copy(update={"name": "1"})
    (base / "data/secret/3.in").symlink_to("/etc/hostname")
    (base / "data/secret/3.ans").write_text("x\n")
    with pytest.raises(PackageError) as caught:
        load_package(base)
    assert caught.value.part == "data/secret/3.in"
