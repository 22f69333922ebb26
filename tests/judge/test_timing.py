"""Deterministic time: fuel budgets, fuel to seconds, caps, Kattis's time limit rule."""

from __future__ import annotations

import pytest

from judge.problem import ProblemLimits
from judge.timing import (
    MIN_FUEL,
    fuel_budget,
    fuel_time,
    kattis_time_limit,
    time_limit_for,
    wall_cap,
)

RATE = 1_000_000_000


def test_fuel_budget() -> None:
    assert fuel_budget(1.0, 1.0, RATE) == RATE
    assert fuel_budget(2.0, 1.5, RATE) == 3 * RATE
    assert fuel_budget(0.1, 3.0, RATE) == 300_000_000  # no float noise past the ceiling
    assert fuel_budget(1.0, 1.0, 3) == MIN_FUEL
    assert fuel_budget(0.0015, 1.0, 1_000_000) == 1_500
    assert fuel_budget(0.0000015, 1.0, RATE) == 1_500
    assert fuel_budget(1.0000000005, 1.0, RATE) == RATE + 1  # a real excess rounds up
    with pytest.raises(ValueError, match="positive"):
        fuel_budget(1.0, 0.0, RATE)


def test_fuel_time() -> None:
    assert fuel_time(RATE, RATE) == 1.0
    assert fuel_time(1_234_567_890, RATE) == 1.234568
    assert fuel_time(0, RATE) == 0.0
    # a run that used its whole budget reads as exactly the limit
    assert fuel_time(fuel_budget(0.7, 1.0, RATE), RATE) == 0.7
    with pytest.raises(ValueError, match="positive"):
        fuel_time(1, 0)


def test_time_limit_for_a_language() -> None:
    limits = ProblemLimits(time_limit_s=2.0, language_time_multipliers={"python": 3.0})
    assert time_limit_for(limits, "python") == 6.0
    assert time_limit_for(limits, "c") == 2.0
    assert time_limit_for(limits, None) == 2.0


def test_wall_cap() -> None:
    assert wall_cap(2.0, 3.0, 5.0) == 11.0
    assert wall_cap(60.0, 10.0, 5.0) == 300.0


@pytest.mark.parametrize(("slowest", "kwargs", "expected"), [
    (0.05, {}, (1.0, 2.0)),  # at least one second
    (0.2, {}, (1.0, 2.0)),  # exactly 1.0 after the multiplier, not rounded past it
    (0.21, {}, (2.0, 4.0)),
    (1.3, {}, (7.0, 14.0)),
    (0.0, {}, (1.0, 2.0)),
    (1.3, {"time_multiplier": 2.0, "safety_margin": 1.5}, (3.0, 4.5)),
    (0.31, {"resolution": 0.1}, (1.6, 3.2)),
    (0.01, {"resolution": 0.1}, (0.1, 0.2)),
    (0.36, {"resolution": 0.1, "time_multiplier": 5.0}, (1.8, 3.6)),
])
def test_kattis_time_limit(slowest: float, kwargs: dict[str, float],
                           expected: tuple[float, float]) -> None:
    assert kattis_time_limit(slowest, **kwargs) == expected


def test_kattis_time_limit_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="resolution"):
        kattis_time_limit(1.0, resolution=0)
    with pytest.raises(ValueError, match="non-negative"):
        kattis_time_limit(-1.0)
