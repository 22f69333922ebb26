"""Human-friendly sizes and durations ("64MiB", "2s") shared by the schema and the CLI."""

from __future__ import annotations

import re
from decimal import Decimal

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}
_DURATION_UNITS = {
    "": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "m": 60.0, "min": 60.0, "h": 3600.0,
}
_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")
# Far above every limit (the bounds then refuse it with their own message), far below
# anything that overflows a float or an int64: a 400-digit size is a clear error, not a 500.
_LARGEST = Decimal(10) ** 18


def parse_size(value: str | int) -> int:
    """Bytes from an int or a string such as ``64MiB``, ``1.5GB`` or ``4096``."""
    if isinstance(value, int):
        return value
    match = _NUMBER.match(value)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"not a size: {_shown(value)} (examples: 4096, 64KiB, 256MiB, 1GiB)")
    size = Decimal(match.group(1)) * _SIZE_UNITS[unit]
    if size > _LARGEST:
        raise ValueError(f"size {_shown(value)} is too large")
    return int(size)


def parse_duration(value: str | float) -> float:
    """Seconds from a number or a string such as ``2s``, ``500ms`` or ``1.5``."""
    if isinstance(value, int | float):
        return float(value)
    match = _NUMBER.match(value)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _DURATION_UNITS:
        raise ValueError(f"not a duration: {_shown(value)} (examples: 2, 2s, 500ms, 1h)")
    seconds = Decimal(match.group(1)) * Decimal(_DURATION_UNITS[unit])
    if seconds > _LARGEST:
        raise ValueError(f"duration {_shown(value)} is too long")
    return float(seconds)


def _shown(value: str) -> str:
    """The user's text in an error message, cut short (it may be kilobytes long)."""
    return repr(value) if len(value) <= 40 else repr(value[:40]) + "…"


def format_size(n: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n}B"
