"""/v1/usage: what a tenant used per UTC day; /v1/quotas: its quotas against current use.

A tenant sees its own; an admin key may ask for any tenant (``?tenant=``).
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from service.auth import CallerDep
from service.deps import StateDep
from service.http_errors import Problem
from service.openapi import problem_responses
from service.usage_view import MAX_DAYS, quota_status, usage_report
from tenancy.models import TENANT_ID_PATTERN, Caller
from tenancy.usage import QuotaStatus, UsageReport, utc_day

router = APIRouter(prefix="/v1", tags=["usage"])

TenantQuery = Annotated[str | None, Query(
    pattern=TENANT_ID_PATTERN, description="Admin keys: the tenant to report (default: yours)")]


DAY_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


def _day_query(alias: str, description: str) -> Any:
    return Query(alias=alias, pattern=DAY_PATTERN, json_schema_extra={"format": "date"},
                 description=description)


def _day(name: str, text: str | None) -> date | None:
    """A calendar day, strictly YYYY-MM-DD (no timestamps, no other forms)."""
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Problem(422, "validation-error", "The request is invalid",
                      f"{name}: {text!r} is not a calendar day (YYYY-MM-DD)") from None


async def _tenant_of(state: StateDep, caller: Caller, tenant: str | None) -> str:
    if tenant is None or tenant == caller.tenant:
        return caller.tenant
    if not caller.admin:
        raise Problem(403, "admin-only", "This needs an admin key",
                      "only an admin key may read another tenant's usage")
    if await state.aclient.exists(f"warden:tenant:{tenant}") == 0:  # type: ignore[union-attr]
        raise Problem(404, "tenant-not-found", "No such tenant",
                      f"tenant {tenant!r} does not exist")
    return tenant


@router.get("/usage", response_model=UsageReport, responses=problem_responses(404))
async def get_usage(
    state: StateDep, caller: CallerDep,
    from_day: Annotated[str | None, _day_query(
        "from", "First UTC day (YYYY-MM-DD; default: 29 days before `to`)")] = None,
    to_day: Annotated[str | None, _day_query(
        "to", "Last UTC day, included (YYYY-MM-DD; default: today)")] = None,
    tenant: TenantQuery = None,
) -> UsageReport:
    """Jobs by status and language, fuel, wall and compile time, output bytes and quota
    rejections, per UTC day (kept ``WARDEN_USAGE_RETENTION_DAYS``)."""
    who = await _tenant_of(state, caller, tenant)
    last = _day("to", to_day) or utc_day(time.time())
    first = _day("from", from_day) or last - timedelta(days=29)
    if first > last:
        raise Problem(422, "invalid-date-range", "The date range is invalid",
                      f"from ({first}) is after to ({last})")
    if (last - first).days >= MAX_DAYS:
        raise Problem(422, "invalid-date-range", "The date range is invalid",
                      f"at most {MAX_DAYS} days at once (asked {(last - first).days + 1})")
    return await usage_report(state, who, first, last)


@router.get("/quotas", response_model=QuotaStatus, responses=problem_responses(404))
async def get_quotas(state: StateDep, caller: CallerDep,
                     tenant: TenantQuery = None) -> QuotaStatus:
    """Each quota's limit and what is used of it now (rates: the bucket's level)."""
    who = await _tenant_of(state, caller, tenant)
    quotas = caller.quotas
    if who != caller.tenant:
        info = await run_in_threadpool(state.tenants.get_tenant, who)
        assert info is not None  # checked by _tenant_of
        quotas = info.quotas
    return await quota_status(state, who, quotas)
