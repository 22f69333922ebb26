"""Grading by the group tree (Kattis semantics) and the parallel workers' should_run."""

from __future__ import annotations

import random
from typing import Any

import pytest

from judge.grading import Grade, Plan, failed_whole, grade, should_run
from judge.problem import GroupResult, Problem, ProblemType
from judge.problem import TestCase as Case  # not Test* names: pytest collects those
from judge.problem import TestGroup as Group
from judge.problem import TestResult as Result
from judge.verdicts import Verdict

AC, WA, TLE, RE, IE, CE, SKIPPED = (Verdict.AC, Verdict.WA, Verdict.TLE, Verdict.RE,
                                    Verdict.IE, Verdict.CE, Verdict.SKIPPED)
HASH = "0" * 64


def t(name: str) -> Case:
    return Case(name=name, input_sha256=HASH, answer_sha256=HASH)


def g(name: str, *children: Case | Group, **config: Any) -> Group:
    return Group(name=name, children=list(children), **config)


def problem(*children: Case | Group, scoring: bool = False, **root: Any) -> Problem:
    kind = ProblemType.SCORING if scoring else ProblemType.PASS_FAIL
    return Problem(type=kind, tests=g("root", *children, **root))


def results(**verdicts: Verdict) -> dict[str, Result]:
    """Results by name; `secret__a` stands for "secret/a"."""
    out = {}
    for key, verdict in verdicts.items():
        name = key.replace("__", "/")
        out[name] = Result(name=name, verdict=verdict, time_s=0.5, fuel_used=123,
                               message=f"{verdict.value} here")
    return out


def listed(grade_: Grade) -> dict[str, Verdict]:
    return {r.name: r.verdict for r in grade_.tests}


def groups(grade_: Grade) -> dict[str, tuple[Verdict, float]]:
    return {r.name: (r.verdict, r.score) for r in grade_.groups}


def classic() -> Problem:
    """A pass-fail problem: samples, then secret tests; every group breaks (the default)."""
    return problem(g("sample", t("1"), t("2")), g("secret", t("a"), t("b"), t("c")))


def test_all_accepted() -> None:
    p = classic()
    got = grade(p, results(sample__1=AC, sample__2=AC, secret__a=AC, secret__b=AC,
                           secret__c=AC))
    assert (got.verdict, got.score, got.first_failure) == (AC, 1.0, None)
    assert [r.name for r in got.tests] == [n for n, _ in p.cases()]
    assert groups(got) == {"": (AC, 5.0), "sample": (AC, 2.0), "secret": (AC, 3.0)}
    assert [r.name for r in got.groups] == ["", "sample", "secret"]


def test_break_skips_the_rest_whatever_ran() -> None:
    p = classic()
    ran = results(sample__1=AC, sample__2=AC, secret__a=AC, secret__b=WA, secret__c=TLE)
    got = grade(p, ran)
    assert (got.verdict, got.score, got.first_failure) == (WA, 0.0, "secret/b")
    assert listed(got)["secret/c"] is SKIPPED
    skipped = got.tests[-1]
    assert skipped == Result(name="secret/c", verdict=SKIPPED)  # no time, no message
    assert got.tests[3] == ran["secret/b"]
    # the same grade whether secret/c ran (with any verdict) or not
    for other in ({}, results(secret__c=AC), results(secret__c=RE)):
        assert grade(p, {**{k: v for k, v in ran.items() if k != "secret/c"},
                         **other}) == got


def test_a_failure_in_a_break_root_skips_later_groups() -> None:
    got = grade(classic(), results(sample__1=WA, sample__2=AC, secret__a=AC))
    assert got.verdict is WA
    assert listed(got) == {"sample/1": WA, "sample/2": SKIPPED, "secret/a": SKIPPED,
                           "secret/b": SKIPPED, "secret/c": SKIPPED}
    assert groups(got)["secret"] == (SKIPPED, 0.0)


def test_continue_runs_everything_and_takes_the_worst() -> None:
    p = problem(g("secret", t("a"), t("b"), t("c"), on_reject="continue"))
    got = grade(p, results(secret__a=WA, secret__b=AC, secret__c=TLE))
    assert listed(got) == {"secret/a": WA, "secret/b": AC, "secret/c": TLE}
    assert (got.verdict, got.first_failure) == (TLE, "secret/a")  # TLE is worse than WA
    assert groups(got)["secret"] == (TLE, 1.0)


def test_continue_with_verdict_mode_first() -> None:
    p = problem(g("secret", t("a"), t("b"), t("c"), on_reject="continue",
                  verdict_mode="first"))
    got = grade(p, results(secret__a=AC, secret__b=WA, secret__c=RE))
    assert got.verdict is WA
    assert listed(got)["secret/c"] is RE  # it still ran and is reported


def test_a_continue_group_inside_a_break_group_runs_to_its_end() -> None:
    p = problem(g("secret", g("g1", t("x"), t("y"), on_reject="continue"), g("g2", t("z"))))
    got = grade(p, results(secret__g1__x=WA, secret__g1__y=AC, secret__g2__z=AC))
    assert listed(got) == {"secret/g1/x": WA, "secret/g1/y": AC, "secret/g2/z": SKIPPED}
    assert [r.name for r in got.groups] == ["", "secret", "secret/g1", "secret/g2"]
    plan = Plan(p)
    assert plan.should_run({"secret/g1/x": WA}, "secret/g1/y")
    assert not plan.should_run({"secret/g1/x": WA}, "secret/g2/z")


def test_subtasks_with_points() -> None:
    p = problem(
        g("sample", t("1"), points=0),
        g("secret", g("g1", t("a"), t("b"), points=30), g("g2", t("c"), points=70),
          on_reject="continue"),
        scoring=True, on_reject="continue")
    got = grade(p, results(sample__1=AC, secret__g1__a=AC, secret__g1__b=WA,
                           secret__g2__c=AC))
    assert (got.verdict, got.score, got.first_failure) == (WA, 70.0, "secret/g1/b")
    assert groups(got) == {"": (WA, 70.0), "sample": (AC, 0.0), "secret": (WA, 70.0),
                           "secret/g1": (WA, 0.0), "secret/g2": (AC, 70.0)}
    full = grade(p, results(sample__1=AC, secret__g1__a=AC, secret__g1__b=AC,
                            secret__g2__c=AC))
    assert (full.verdict, full.score) == (AC, 100.0)


def test_a_pass_fail_problem_scores_one_or_zero() -> None:
    p = problem(g("secret", g("g1", t("a"), points=30), g("g2", t("c"), points=70),
                  on_reject="continue"), on_reject="continue")
    assert grade(p, results(secret__g1__a=AC, secret__g2__c=AC)).score == 1.0
    half = grade(p, results(secret__g1__a=AC, secret__g2__c=WA))
    assert (half.verdict, half.score) == (WA, 0.0)
    assert groups(half)["secret"] == (WA, 30.0)  # group scores still say what passed


def test_checker_scores_and_accept_reject_scores() -> None:
    p = problem(g("secret", t("a"), t("b"), t("c"), on_reject="continue",
                  accept_score=10, reject_score=-1), scoring=True)
    ran = results(secret__a=AC, secret__b=WA, secret__c=AC)
    ran["secret/c"] = ran["secret/c"].model_copy(update={"score": 3.5})
    assert grade(p, ran).score == 10 - 1 + 3.5


@pytest.mark.parametrize(("aggregation", "expected"), [
    ("sum", 6.0), ("min", 1.0), ("max", 3.0), ("avg", 2.0)])
def test_aggregation(aggregation: str, expected: float) -> None:
    p = problem(g("secret", t("a"), t("b"), t("c"), aggregation=aggregation), scoring=True)
    ran = {name: Result(name=name, verdict=AC, score=score)
           for name, score in (("secret/a", 1.0), ("secret/b", 3.0), ("secret/c", 2.0))}
    assert grade(p, ran).score == expected


def test_an_empty_group_scores_zero() -> None:
    p = problem(g("empty", aggregation="min"), g("secret", t("a")), scoring=True,
                aggregation="max")
    got = grade(p, results(secret__a=AC))
    assert groups(got)["empty"] == (AC, 0.0)
    assert got.score == 1.0


def test_skipped_tests_are_left_out_of_the_aggregation() -> None:
    p = problem(g("secret", t("a"), t("b"), t("c"), aggregation="avg", reject_score=0.5),
                scoring=True)
    got = grade(p, results(secret__a=AC, secret__b=WA, secret__c=AC))
    assert got.score == (1.0 + 0.5) / 2  # the average of what was judged


def test_ignore_sample() -> None:
    p = problem(g("sample", t("1")), g("secret", t("a"), t("b")), scoring=True,
                ignore_sample=True)
    got = grade(p, results(sample__1=WA, secret__a=AC, secret__b=AC))
    assert (got.verdict, got.score) == (AC, 2.0)
    assert got.first_failure == "sample/1"  # still the first test not accepted
    assert groups(got)["sample"] == (WA, 0.0)
    assert Plan(p).should_run({"sample/1": WA}, "secret/a")
    # without it, the break root stops at the failed sample
    strict = problem(g("sample", t("1")), g("secret", t("a"), t("b")), scoring=True)
    assert grade(strict, results(sample__1=WA, secret__a=AC)).verdict is WA
    assert not Plan(strict).should_run({"sample/1": WA}, "secret/a")


def test_accept_if_any_accepted() -> None:
    p = problem(g("any", t("a"), t("b"), on_reject="continue", accept_if_any_accepted=True),
                g("after", t("z")))
    got = grade(p, results(any__a=WA, any__b=AC, after__z=AC))
    assert (got.verdict, got.first_failure) == (AC, "any/a")
    assert groups(got)["any"] == (AC, 1.0)
    none = grade(p, results(any__a=WA, any__b=TLE, after__z=AC))
    assert none.verdict is TLE
    assert listed(none)["after/z"] is SKIPPED
    plan = Plan(p)
    assert plan.should_run({"any/a": WA}, "after/z")  # any/b may still accept the group
    assert not plan.should_run({"any/a": WA, "any/b": TLE}, "after/z")


def test_should_run_with_knowledge_out_of_order() -> None:
    p = classic()
    plan = Plan(p)
    assert plan.order == [n for n, _ in p.cases()]
    assert all(plan.should_run({}, name) for name in plan.order)
    later_failure = {"secret/c": WA, "secret/b": AC}
    assert plan.should_run(later_failure, "secret/a")  # an earlier test always matters
    assert plan.should_run(later_failure, "sample/1")
    assert not plan.should_run({"secret/a": WA}, "secret/b")
    assert not plan.should_run({"secret/a": TLE}, "secret/c")
    assert not plan.should_run({"sample/2": RE}, "secret/a")  # the root breaks too
    assert plan.should_run({"sample/2": RE}, "sample/1")
    assert plan.should_run({"secret/a": SKIPPED, "sample/1": AC}, "secret/b")
    assert should_run(p, {"secret/a": WA}, "secret/c") is False
    with pytest.raises(ValueError, match="no test"):
        plan.should_run({}, "secret/zz")


def test_should_run_in_a_continue_root() -> None:
    plan = Plan(problem(g("sample", t("1")), g("secret", t("a"), t("b")),
                        on_reject="continue"))
    assert plan.should_run({"sample/1": WA}, "secret/a")
    assert not plan.should_run({"secret/a": WA}, "secret/b")


def test_a_reached_test_without_a_result_never_passes() -> None:
    p = classic()
    got = grade(p, results(sample__1=AC, sample__2=AC, secret__a=AC, secret__c=AC))
    assert listed(got)["secret/b"] is SKIPPED
    assert got.verdict is IE  # a judge fault, not an accepted submission
    assert grade(p, {}).verdict is IE


def test_results_are_named_by_their_full_name() -> None:
    ran = {"secret/a": Result(name="a", verdict=AC)}
    got = grade(problem(g("secret", t("a"))), ran)
    assert got.tests == [Result(name="secret/a", verdict=AC)]


def test_failed_whole() -> None:
    p = problem(g("sample", t("1")), g("secret", g("g1", t("a")), t("b")))
    got = failed_whole(p, CE, "main.c:1: error")
    assert (got.verdict, got.score, got.first_failure, got.message) == (
        CE, 0.0, None, "main.c:1: error")
    assert got.tests == [Result(name=n, verdict=SKIPPED)
                         for n in ("sample/1", "secret/g1/a", "secret/b")]
    assert got.groups == [GroupResult(name="", verdict=CE, score=0.0),
                          GroupResult(name="sample", verdict=SKIPPED, score=0.0),
                          GroupResult(name="secret", verdict=SKIPPED, score=0.0),
                          GroupResult(name="secret/g1", verdict=SKIPPED, score=0.0)]


# --- parallel judging gives the sequential outcome ---------------------------------------

def _random_tree(rng: random.Random, depth: int, counter: list[int]) -> list[Any]:
    children: list[Any] = []
    for i in range(rng.randint(0, 3) if depth else rng.randint(1, 3)):
        if depth < 2 and rng.random() < 0.5:
            name = "sample" if depth == 0 and i == 0 else f"g{i}"
            children.append(g(name, *_random_tree(rng, depth + 1, counter),
                              on_reject=rng.choice(["break", "continue"]),
                              verdict_mode=rng.choice(["worst", "first"]),
                              accept_if_any_accepted=rng.random() < 0.2,
                              points=rng.choice([None, None, 10.0])))
        else:
            counter[0] += 1
            children.append(t(f"t{i}"))
    return children


def test_parallel_judging_in_any_order_matches_sequential_judging() -> None:
    rng = random.Random(20240601)
    checked = refused = ran_anyway = 0
    for _ in range(300):
        counter = [0]
        children = _random_tree(rng, 0, counter)
        if counter[0] == 0:
            continue
        p = problem(*children, scoring=rng.random() < 0.5,
                    on_reject=rng.choice(["break", "continue"]),
                    ignore_sample=rng.random() < 0.5)
        plan = Plan(p)
        truth = {n: rng.choice([AC, AC, AC, WA, TLE]) for n in plan.order}
        everything = plan.grade(results(**{n.replace("/", "__"): v for n, v in
                                           truth.items()}))
        for _ in range(3):  # workers pick tests in some order, each asking should_run
            order = plan.order[:]
            rng.shuffle(order)
            known: dict[str, Verdict] = {}
            for name in order:
                if plan.should_run(known, name):
                    known[name] = truth[name]
                else:
                    refused += 1
            ran_anyway += sum(1 for r in everything.tests if r.verdict is SKIPPED)
            ran = results(**{n.replace("/", "__"): v for n, v in known.items()})
            assert plan.grade(ran) == everything  # no test that mattered was skipped
            checked += 1
    assert checked > 500
    assert refused > 200 and ran_anyway > 200  # both sides of the rule were exercised
