"""What a tenant used, per UTC day, and where it stands against its quotas right now.

Workers count usage when a job ends (inside the script that records the result, so a job is
counted exactly once); the API counts quota rejections. Redis keeps one hash per tenant and
day, ``warden:usage:{tenant}:{YYYY-MM-DD}``, for ``WARDEN_USAGE_RETENTION_DAYS``. Fields:
``jobs``, ``status:<run status or failed>``, ``lang:<language or wasm>``, ``fuel``,
``wall_time_s``, ``compile_time_s``, ``output_bytes``, ``rejected:<quota>``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from tenancy.quotas import Quotas

PREFIX: Final = "warden:"
WASM: Final = "wasm"  # the language of a job submitted as a module


def usage_key(tenant: str, day: date) -> str:
    return f"{PREFIX}usage:{tenant}:{day.isoformat()}"


def utc_day(timestamp: float) -> date:
    return datetime.fromtimestamp(timestamp, UTC).date()


class Usage(BaseModel):
    """Jobs that ended, and what they consumed."""

    model_config = ConfigDict(extra="forbid")

    jobs: int = Field(default=0, description="Jobs that ended (any state)")
    by_status: dict[str, int] = Field(
        default_factory=dict, description="Jobs by run status (`failed`: ended outside a run)")
    by_language: dict[str, int] = Field(
        default_factory=dict, description="Jobs by language id (`wasm`: submitted as a module)")
    fuel: int = Field(default=0, description="Fuel consumed")
    wall_time_s: float = Field(default=0.0, description="Wall time of the runs, seconds")
    compile_time_s: float = Field(default=0.0, description="Compile time charged, seconds")
    output_bytes: int = Field(default=0, description="stdout + stderr bytes returned")
    rejections: dict[str, int] = Field(
        default_factory=dict, description="Requests refused by quota, by quota name")


class DayUsage(Usage):
    day: date


class UsageReport(BaseModel):
    """``GET /v1/usage``: one entry per day in the range (days with nothing are zeros)."""

    tenant: str
    from_day: date = Field(serialization_alias="from")
    to_day: date = Field(serialization_alias="to")
    days: list[DayUsage]
    total: Usage


class QuotaUse(BaseModel):
    """One quota: its limit and the current use (``remaining`` = what may still be used)."""

    quota: str
    limit: float
    used: float
    remaining: float


class QuotaStatus(BaseModel):
    """``GET /v1/quotas``: the caller's quotas against its current use."""

    tenant: str
    quotas: Quotas
    use: list[QuotaUse]


def fields_to_usage(fields: dict[bytes, bytes]) -> Usage:
    """A usage hash (HGETALL) as :class:`Usage`."""
    usage = Usage()
    for raw_name, raw_value in fields.items():
        name, value = raw_name.decode(), raw_value.decode()
        kind, _, sub = name.partition(":")
        if kind == "status":
            usage.by_status[sub] = int(value)
        elif kind == "lang":
            usage.by_language[sub] = int(value)
        elif kind == "rejected":
            usage.rejections[sub] = int(value)
        elif name in ("jobs", "fuel", "output_bytes"):
            setattr(usage, name, int(value))
        elif name in ("wall_time_s", "compile_time_s"):
            setattr(usage, name, float(value))
    return usage


def add(total: Usage, day: Usage) -> None:
    """Add ``day`` into ``total`` in place."""
    total.jobs += day.jobs
    total.fuel += day.fuel
    total.wall_time_s += day.wall_time_s
    total.compile_time_s += day.compile_time_s
    total.output_bytes += day.output_bytes
    for mine, theirs in ((total.by_status, day.by_status), (total.by_language, day.by_language),
                         (total.rejections, day.rejections)):
        for name, count in theirs.items():
            mine[name] = mine.get(name, 0) + count
