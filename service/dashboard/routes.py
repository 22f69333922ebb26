"""/dashboard: a tenant's quotas, usage and recent jobs as server-rendered pages.

Sign in with an API key (posted in a form, never in a URL); the browser then holds only a
session cookie (``sessions``). Each page re-checks the session's key and tenant, so a
revoked key or a disabled tenant is signed out on its next click. An admin key also sees
every tenant (``/dashboard/tenants``). Errors are HTML pages with a clear message, never the
API's problem+json, and never a trace. No JavaScript: forms and inline SVG only, under a
Content-Security-Policy that allows no script at all.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from sandboxes.schema import JobRecord
from service.auth import SESSION_COOKIE, verify_key
from service.dashboard import charts, sessions
from service.dashboard.sessions import LOGIN_COOKIE, Session
from service.deps import StateDep
from service.http_errors import Problem
from service.state import AppState
from service.usage_view import quota_status, usage_report
from tenancy.models import TenantInfo
from tenancy.registry import valid_tenant_id
from tenancy.usage import DayUsage, Usage

BASE: Final = "/dashboard"
HERE: Final = Path(__file__).resolve().parent
CHART_DAYS: Final = 14
RECENT_JOBS: Final = 20
MAX_KEY_CHARS: Final = 200  # a Warden key is 60: anything much longer is not one

router = APIRouter(prefix=BASE, include_in_schema=False)
static = StaticFiles(directory=HERE / "static")

def _run_status(job: JobRecord) -> str:
    """What the job's run ended with (ok, trap, ...); blank for a job that has not run."""
    return job.result.status.value if job.result is not None else ""


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined,  # a typo in a template is an error
)
_env.filters.update(compact=charts.compact, size=charts.size, quantity=charts.quantity,
                    meter=charts.meter)
_env.globals["run_status"] = _run_status
templates = Jinja2Templates(env=_env)

# No script may run (there is none), nothing loads from elsewhere, no framing, and the URL
# of a page is not sent on. Authenticated pages are not cached.
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_FORM_TYPES: Final = ("application/x-www-form-urlencoded", "multipart/form-data")


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("session", None)
    return templates.TemplateResponse(request, name, context, status_code=status,
                                      headers=SECURITY_HEADERS)


def _error(request: Request, status: int, title: str, detail: str,
           session: Session | None = None) -> HTMLResponse:
    return _page(request, "error.html", status, title=title, detail=detail, session=session)


def _redirect(path: str) -> RedirectResponse:
    """303: after a POST the browser GETs the target (no resubmission on reload)."""
    return RedirectResponse(path, status_code=303, headers=SECURITY_HEADERS)


def _set_cookie(request: Request, response: Response, name: str, value: str,
                max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path=BASE, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https")


def _clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(name, path=BASE, httponly=True, samesite="strict",
                           secure=request.url.scheme == "https")


async def _form(request: Request) -> FormData | None:
    """The posted form, or None when the body is not one (wrong type, malformed, a file)."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media not in _FORM_TYPES:
        return None
    try:
        return await request.form(max_files=0, max_fields=8, max_part_size=16_384)
    except Exception:  # any parse failure of an untrusted body is a 400, never a 500
        return None


def _signed_in_key(request: Request) -> str | None:
    return request.cookies.get(SESSION_COOKIE)


async def _session(request: Request, state: AppState) -> Session | None:
    return await sessions.current(state, _signed_in_key(request))


# -- signing in and out ----------------------------------------------------------------------
async def _login_page(request: Request, state: AppState, status: int = 200,
                      error: str | None = None, fresh: bool = False) -> HTMLResponse:
    """The sign-in form with its CSRF token, bound to the nonce cookie (kept or new)."""
    assert state.aclient is not None
    nonce = request.cookies.get(LOGIN_COOKIE)
    if fresh or not sessions.well_formed(nonce):
        nonce = sessions.new_token()
    assert nonce is not None
    token = sessions.login_token(await sessions.login_secret(state.aclient), nonce)
    response = _page(request, "login.html", status, csrf=token, error=error)
    _set_cookie(request, response, LOGIN_COOKIE, nonce, sessions.LOGIN_TTL_S)
    return response


@router.get("/login")
async def login_form(request: Request, state: StateDep) -> Response:
    """The sign-in form (or the dashboard, for a browser already signed in)."""
    if await _session(request, state) is not None:
        return _redirect(BASE)
    return await _login_page(request, state)


@router.post("/login")
async def login(request: Request, state: StateDep) -> Response:
    """Verify the key as the API does, then open a session; the key is not kept."""
    assert state.aclient is not None
    form = await _form(request)
    if form is None:
        return await _login_page(request, state, 400, "The sign-in form was not sent "
                                 "correctly: reload the page and try again.")
    nonce = request.cookies.get(LOGIN_COOKIE)
    expected = (sessions.login_token(await sessions.login_secret(state.aclient), nonce)
                if nonce is not None and sessions.well_formed(nonce) else None)
    if expected is None or not sessions.same(expected, form.get("csrf")):
        return await _login_page(request, state, 403, "This sign-in form has expired or did "
                                 "not come from this page: try again.", fresh=True)
    key = form.get("key")
    if not isinstance(key, str) or not key.strip():
        return await _login_page(request, state, 400, "Enter an API key.")
    if len(key) > MAX_KEY_CHARS:
        return await _login_page(request, state, 401, "That is not a Warden API key (they "
                                 "read wdn_<id>_<secret>).")
    try:
        caller = await verify_key(state, key.strip())
    except Problem as refused:
        return await _login_page(request, state, refused.status,
                                 f"{refused.title}: {refused.detail or 'refused'}.")
    session = await sessions.create(state.aclient, caller)
    response = _redirect(BASE)
    _set_cookie(request, response, SESSION_COOKIE, session.token, sessions.TTL_S)
    _clear_cookie(request, response, LOGIN_COOKIE)
    return response


@router.post("/logout")
async def logout(request: Request, state: StateDep) -> Response:
    """End the session (its CSRF token required: a cross-site POST cannot sign you out)."""
    assert state.aclient is not None
    session = await sessions.load(state.aclient, _signed_in_key(request))
    if session is None:
        response: Response = _redirect(f"{BASE}/login")
        _clear_cookie(request, response, SESSION_COOKIE)
        return response
    form = await _form(request)
    if form is None:
        return _error(request, 400, "Bad request", "The form was not sent correctly.",
                      session)
    if not sessions.same(session.csrf, form.get("csrf")):
        return _error(request, 403, "Refused", "The form's security token is missing or "
                      "wrong: reload the page and try again.", session)
    await sessions.delete(state.aclient, session.token)
    response = _redirect(f"{BASE}/login")
    _clear_cookie(request, response, SESSION_COOKIE)
    return response


# -- pages -----------------------------------------------------------------------------------
def _today() -> date:
    return datetime.now(UTC).date()


def _bars(days: list[DayUsage], field: str, unit: str) -> list[charts.Bar]:
    bars = []
    for day in days:
        value = float(getattr(day, field))
        bars.append(charts.Bar(day.day.strftime("%m-%d"), value,
                               f"{day.day.isoformat()}: {charts.compact(value)} {unit}"))
    return bars


async def _tenant_page(request: Request, state: AppState, session: Session,
                       info: TenantInfo) -> HTMLResponse:
    """One tenant's quotas against current use, its recent jobs and 14 days of usage."""
    today = _today()
    report, status, (jobs, _) = await asyncio.gather(
        usage_report(state, info.id, today - timedelta(days=CHART_DAYS - 1), today),
        quota_status(state, info.id, info.quotas),
        run_in_threadpool(state.store.list_recent, RECENT_JOBS, None, None, info.id),
    )
    return _page(
        request, "tenant.html", session=session, tenant=info, report=report,
        quota_use=status.use, jobs=jobs,
        today=next((d for d in report.days if d.day == today), None) or Usage(),
        jobs_chart=charts.bar_chart("Jobs per day", _bars(report.days, "jobs", "jobs"),
                                    "chart-jobs"),
        fuel_chart=charts.bar_chart("Fuel per day", _bars(report.days, "fuel", "fuel"),
                                    "chart-fuel"),
        own=info.id == session.tenant,
    )


@router.get("")
async def overview(request: Request, state: StateDep) -> Response:
    """The signed-in tenant's own page."""
    session = await _session(request, state)
    if session is None:
        return _redirect(f"{BASE}/login")
    info = await run_in_threadpool(state.tenants.get_tenant, session.tenant)
    if info is None:  # deleted between the check and now
        return _redirect(f"{BASE}/login")
    return await _tenant_page(request, state, session, info)


def _admin_only(request: Request, session: Session) -> HTMLResponse:
    return _error(request, 403, "Admins only", f"Key {session.key_id} is not an admin key: "
                  "it can see its own tenant only.", session)


@router.get("/tenants")
async def tenants(request: Request, state: StateDep) -> Response:
    """Admin: every tenant with its usage today."""
    session = await _session(request, state)
    if session is None:
        return _redirect(f"{BASE}/login")
    if not session.admin:
        return _admin_only(request, session)
    today = _today()
    listed = await run_in_threadpool(state.tenants.list_tenants)
    reports = await asyncio.gather(*(usage_report(state, t.id, today, today) for t in listed))
    rows = [(t, report.total) for t, report in zip(listed, reports, strict=True)]
    return _page(request, "tenants.html", session=session, rows=rows, today=today)


@router.get("/tenants/{tenant}")
async def tenant(tenant: str, request: Request, state: StateDep) -> Response:
    """Admin: one tenant's page, as that tenant sees it."""
    session = await _session(request, state)
    if session is None:
        return _redirect(f"{BASE}/login")
    if not session.admin:
        return _admin_only(request, session)
    info = (await run_in_threadpool(state.tenants.get_tenant, tenant)
            if valid_tenant_id(tenant) else None)
    if info is None:
        return _error(request, 404, "No such tenant", "There is no tenant with this id.",
                      session)
    return await _tenant_page(request, state, session, info)
