"""Deterministic time: a time limit is a fuel budget at a calibrated rate, so a verdict of
TLE is the same on any machine; the wall clock is only a generous safety cap.

Also Kattis's rule for deriving a problem's time limit from its accepted solutions.
"""

from __future__ import annotations

import math
from typing import Final

from judge.problem import ProblemLimits

MIN_FUEL: Final = 1_000
MAX_WALL_S: Final = 300.0
_DIGITS: Final = 9  # rounding that absorbs float noise (0.1 * 3) before a ceiling


def fuel_budget(time_limit_s: float, multiplier: float, fuel_per_second: int) -> int:
    """The fuel a run may use: the limit times the multiplier at the calibrated rate."""
    if time_limit_s <= 0 or multiplier <= 0 or fuel_per_second <= 0:
        raise ValueError("time limit, multiplier and fuel rate must be positive")
    return max(MIN_FUEL, math.ceil(round(time_limit_s * multiplier * fuel_per_second, 3)))


def fuel_time(fuel_used: int, fuel_per_second: int) -> float:
    """A run's deterministic time in seconds (to the microsecond)."""
    if fuel_per_second <= 0:
        raise ValueError("the fuel rate must be positive")
    return round(fuel_used / fuel_per_second, 6)


def time_limit_for(limits: ProblemLimits, language: str | None) -> float:
    """The problem's time limit for a language: its multiplier applies, 1 by default."""
    multiplier = limits.language_time_multipliers.get(language, 1.0) if language else 1.0
    return limits.time_limit_s * multiplier


def wall_cap(time_limit_s: float, factor: float, extra_s: float) -> float:
    """The wall-clock cap beside the fuel budget: ``factor`` * limit + ``extra_s``, at most
    five minutes."""
    return min(MAX_WALL_S, factor * time_limit_s + extra_s)


def kattis_time_limit(slowest_accepted_s: float, time_multiplier: float = 5.0,
                      safety_margin: float = 2.0,
                      resolution: float = 1.0) -> tuple[float, float]:
    """(time limit, high limit) as problemtools derives them: the slowest accepted
    solution's time * ``time_multiplier``, rounded up to a multiple of ``resolution`` (at
    least one); the high limit, which no accepted solution may approach and slower wrong
    ones should exceed, is the time limit * ``safety_margin``."""
    if slowest_accepted_s < 0 or time_multiplier <= 0 or safety_margin <= 0 or resolution <= 0:
        raise ValueError("times must be non-negative; multiplier, margin and resolution "
                         "positive")
    steps = math.ceil(round(slowest_accepted_s * time_multiplier / resolution, _DIGITS))
    time_limit = round(max(1, steps) * resolution, _DIGITS)
    return time_limit, round(time_limit * safety_margin, _DIGITS)
