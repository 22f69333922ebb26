"""Test results to a submission's grade, by the group tree, as Kattis judges in order.

A group judges its children (tests and subgroups) in order; with ``on_reject: break`` it stops
at the first child whose verdict is not AC, so later children are skipped. Tests run in
parallel, so some may have run although sequential judging never reaches them: the grade
reports them as skipped all the same, and the outcome does not depend on scheduling.
:meth:`Plan.should_run` is the conservative side of the same rule: it refuses a test only
when what is already known proves sequential judging cannot reach it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from judge.problem import GroupResult, Problem, ProblemType, TestCase, TestGroup, TestResult
from judge.verdicts import Verdict, worst

SAMPLE: Final = "sample"


@dataclass(frozen=True)
class Grade:
    """A submission's verdict and score with every test (judging order) and group
    (pre-order; the root is named "")."""

    verdict: Verdict
    score: float
    first_failure: str | None
    tests: list[TestResult]
    groups: list[GroupResult]
    message: str | None = None  # why a whole submission failed (compile error output)


@dataclass(eq=False)
class _Node:
    name: str  # full path: "" for the root, "secret/group1", "secret/group1/test3"
    group: TestGroup | None  # None for a test
    parent: TestGroup | None  # None for the root
    children: list[_Node] = field(default_factory=list)


# How a test sits in the tree: each enclosing group, its children, and which holds the test.
_Chain = tuple[tuple[TestGroup, list[_Node], int], ...]


def _counts(group: TestGroup, child: _Node) -> bool:
    """Whether a child's result counts toward its group (ignore_sample drops "sample")."""
    return not (group.ignore_sample and child.group is not None
                and child.group.name == SAMPLE)


class Plan:
    """A problem's judging order and group tree, built once for many calls."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self._chains: dict[str, _Chain] = {}
        self.root = self._build(problem.tests, "", None, ())
        self.order: list[str] = list(self._chains)

    def _build(self, item: TestGroup | TestCase, name: str, parent: TestGroup | None,
               chain: _Chain) -> _Node:
        node = _Node(name, item if isinstance(item, TestGroup) else None, parent)
        if isinstance(item, TestCase):
            self._chains[name] = chain
            return node
        prefix = f"{name}/" if name else ""
        for index, child in enumerate(item.children):
            node.children.append(self._build(child, prefix + child.name, item,
                                             (*chain, (item, node.children, index))))
        return node

    def should_run(self, known: Mapping[str, Verdict], name: str) -> bool:
        """False when ``known`` verdicts prove sequential judging skips test ``name``: in
        some enclosing break group, an earlier child is sure to be rejected. Linear in the
        tests at most."""
        if name not in self._chains:
            raise ValueError(f"no test named {name!r}")
        memo: dict[int, bool] = {}
        for group, children, index in self._chains[name]:
            if group.on_reject != "break":
                continue
            for child in children[:index]:
                if _counts(group, child) and self._rejected(child, known, memo):
                    return False
        return True

    def _rejected(self, node: _Node, known: Mapping[str, Verdict], memo: dict[int, bool]) -> bool:
        """Whether ``node``, once reached, is sure to end non-AC given ``known``."""
        key = id(node)
        if key in memo:
            return memo[key]
        group = node.group
        if group is None:
            verdict = known.get(node.name)
            result = verdict is not None and verdict not in (Verdict.AC, Verdict.SKIPPED)
        else:
            counted = [c for c in node.children if _counts(group, c)]
            if not group.accept_if_any_accepted:
                result = any(self._rejected(c, known, memo) for c in counted)
            elif not counted:
                result = False
            elif group.on_reject == "break":  # it stops at its first rejected child
                result = self._rejected(counted[0], known, memo)
            else:
                result = all(self._rejected(c, known, memo) for c in counted)
        memo[key] = result
        return result

    def grade(self, results: Mapping[str, TestResult]) -> Grade:
        """The grade of a submission whose tests have these results (by full name)."""
        tests: list[TestResult] = []
        groups: list[GroupResult] = []
        verdict, score = _Judging(results, tests, groups).node(self.root, reached=True)
        if self.problem.type is ProblemType.PASS_FAIL:
            score = 1.0 if verdict is Verdict.AC else 0.0
        first = next((t.name for t in tests
                      if t.verdict not in (Verdict.AC, Verdict.SKIPPED)), None)
        return Grade(verdict, score, first, tests, groups)


@dataclass
class _Judging:
    """One sequential pass over the tree, filling the test and group listings."""

    results: Mapping[str, TestResult]
    tests: list[TestResult]
    groups: list[GroupResult]

    def node(self, node: _Node, reached: bool) -> tuple[Verdict, float]:
        if node.group is not None:
            return self.group(node, node.group, reached)
        if node.parent is None:
            raise ValueError("a test outside any group")
        return self.test(node.name, node.parent, reached)

    def test(self, name: str, parent: TestGroup, reached: bool) -> tuple[Verdict, float]:
        result = self.results.get(name) if reached else None
        if result is None or result.verdict is Verdict.SKIPPED:
            self.tests.append(TestResult(name=name, verdict=Verdict.SKIPPED))
            if not reached:
                return Verdict.SKIPPED, 0.0
            # reached but never judged: a judge fault, so it can never pass unnoticed
            return Verdict.IE, parent.reject_score
        self.tests.append(result if result.name == name else
                          result.model_copy(update={"name": name}))
        if result.score is not None:
            return result.verdict, result.score
        accepted = result.verdict is Verdict.AC
        return result.verdict, parent.accept_score if accepted else parent.reject_score

    def group(self, node: _Node, group: TestGroup, reached: bool) -> tuple[Verdict, float]:
        slot = len(self.groups)
        self.groups.append(GroupResult(name=node.name, verdict=Verdict.SKIPPED, score=0.0))
        outcomes: list[tuple[Verdict, float]] = []
        going = reached
        for child in node.children:
            verdict, score = self.node(child, going)
            if verdict is Verdict.SKIPPED or not _counts(group, child):
                continue
            outcomes.append((verdict, score))
            if group.on_reject == "break" and verdict is not Verdict.AC:
                going = False
        if not reached:
            return Verdict.SKIPPED, 0.0
        verdict = _group_verdict(group, [v for v, _ in outcomes])
        if group.points is not None:
            score = group.points if verdict is Verdict.AC else 0.0
        else:
            score = _aggregate(group, [s for _, s in outcomes])
        self.groups[slot] = GroupResult(name=node.name, verdict=verdict, score=score)
        return verdict, score


def _group_verdict(group: TestGroup, verdicts: Sequence[Verdict]) -> Verdict:
    if group.accept_if_any_accepted and Verdict.AC in verdicts:
        return Verdict.AC
    if group.verdict_mode == "first" or group.on_reject == "break":
        return next((v for v in verdicts if v is not Verdict.AC), Verdict.AC)
    return worst(verdicts)


def _aggregate(group: TestGroup, scores: Sequence[float]) -> float:
    if not scores:
        return 0.0
    if group.aggregation == "sum":
        return sum(scores)
    if group.aggregation == "min":
        return min(scores)
    if group.aggregation == "max":
        return max(scores)
    return sum(scores) / len(scores)


def grade(problem: Problem, results: Mapping[str, TestResult]) -> Grade:
    """The grade of a submission: see :class:`Plan` and this module's docstring."""
    return Plan(problem).grade(results)


def should_run(problem: Problem, known: Mapping[str, Verdict], name: str) -> bool:
    """Whether test ``name`` can still matter (:meth:`Plan.should_run`; build a Plan once
    when asking for many tests)."""
    return Plan(problem).should_run(known, name)


def failed_whole(problem: Problem, verdict: Verdict, message: str | None) -> Grade:
    """A submission that failed before any test (compile error): every test skipped, the
    root group carries the verdict, and the score is 0."""
    plan = Plan(problem)
    tests = [TestResult(name=name, verdict=Verdict.SKIPPED) for name in plan.order]
    groups: list[GroupResult] = []

    def walk(node: _Node) -> None:
        if node.group is None:
            return
        shown = verdict if node is plan.root else Verdict.SKIPPED
        groups.append(GroupResult(name=node.name, verdict=shown, score=0.0))
        for child in node.children:
            walk(child)

    walk(plan.root)
    return Grade(verdict, 0.0, None, tests, groups, message)
