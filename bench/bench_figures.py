"""What the compiler benchmarks share: fresh sources, timing, figures and their printing."""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandboxes.schema import RunResult


def fresh(source: str) -> bytes:
    """The source with a unique comment: new to every cache."""
    return (source + f"// bench {uuid.uuid4()}\n").encode()


def rss_mib() -> dict[str, float]:
    """This process's VmRSS and VmHWM, MiB."""
    out: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) / 1024
    return out


def stats(times: list[float]) -> dict[str, float]:
    return {"median_ms": statistics.median(times) * 1000, "min_ms": min(times) * 1000,
            "max_ms": max(times) * 1000}


def fmt(s: dict[str, float] | None) -> str:
    if s is None:
        return f"{'-':>22}"
    return f"{s['median_ms']:7.0f} {s['min_ms']:6.0f} {s['max_ms']:7.0f}"


def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    t = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - t


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def step_figures(tools: list[str], results: list[RunResult]) -> list[dict[str, Any]]:
    """Each step of a compile (``tools`` names them in order): fuel, wall, peak memory."""
    assert len(tools) == len(results), (tools, [r.status for r in results])
    return [{"tool": tool, "fuel": r.fuel_used, "wall_ms": r.wall_time_s * 1000,
             "memory_peak_mib": r.memory_peak_bytes / 2**20}
            for tool, r in zip(tools, results, strict=True)]
