"""``/judge0``: Judge0's information endpoints (about, config, languages, statuses, system
and worker info). Judge0's clients send a Warden key as ``X-Auth-Token``."""

from __future__ import annotations

import os
import platform
from importlib.metadata import version
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service.auth import check_key, rate_exceeded, remember_rate
from service.deps import StateDep
from service.http_errors import Problem
from service.judge0 import catalog
from tenancy.models import Caller

AUTH_HEADER = "X-Auth-Token"


async def judge0_caller(request: Request, state: StateDep) -> Caller:
    """The caller of a Judge0 route: its ``X-Auth-Token`` is a Warden API key (or the
    ``Authorization: Bearer`` header Warden's own routes take)."""
    key = request.headers.get(AUTH_HEADER)
    if not key:
        header = request.headers.get("authorization", "")
        scheme, _, bearer = header.partition(" ")
        key = bearer.strip() if scheme.lower() == "bearer" else ""
    if not key:
        raise Judge0Error(401, f"send your Warden API key in the {AUTH_HEADER} header")
    try:
        caller, rate = await check_key(state, key.strip(), "reads", charge=True)
    except Problem as problem:
        raise Judge0Error(problem.status, problem.detail or problem.title) from None
    remember_rate(request, rate)
    if not rate.allowed:
        limited = rate_exceeded(rate)
        raise Judge0Error(429, limited.detail or "too many requests", limited.headers)
    return caller


Judge0Caller = Annotated[Caller, Depends(judge0_caller)]


class Judge0Error(Exception):
    """An error in Judge0's own shape: ``{"error": "..."}``."""

    def __init__(self, status: int, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


async def on_judge0_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Judge0Error)
    return JSONResponse({"error": exc.message}, exc.status, headers=exc.headers)


router = APIRouter(prefix="/judge0", include_in_schema=False)


@router.get("/about")
async def about(_: Judge0Caller) -> dict[str, str]:
    return catalog.about()


@router.get("/config_info")
async def config_info(state: StateDep, _: Judge0Caller) -> dict[str, Any]:
    return catalog.config_info(state.settings)


@router.get("/languages")
async def languages(_: Judge0Caller) -> list[dict[str, Any]]:
    return catalog.languages()


@router.get("/languages/all")
async def all_languages(_: Judge0Caller) -> list[dict[str, Any]]:
    return [{**lang, "is_archived": False} for lang in catalog.languages()]


@router.get("/languages/{language_id}")
async def language(language_id: str, _: Judge0Caller) -> dict[str, Any]:
    found = catalog.language(int(language_id)) if language_id.isdigit() else None
    if found is None:
        raise Judge0Error(404, f"language with id {language_id} doesn't exist")
    return found


@router.get("/statuses")
async def statuses(_: Judge0Caller) -> list[dict[str, Any]]:
    return catalog.statuses()


@router.get("/system_info")
async def system_info(_: Judge0Caller) -> dict[str, Any]:
    return {"Architecture": platform.machine(), "CPU(s)": os.cpu_count(),
            "Operating system": platform.system(), "Python": platform.python_version(),
            "Sandbox": f"WebAssembly (wasmtime {version('wasmtime')}), unprivileged"}


@router.get("/workers")
async def workers(state: StateDep, _: Judge0Caller) -> list[dict[str, Any]]:
    live = await run_in_threadpool(state.store.live_workers)
    queued = await run_in_threadpool(state.client.llen, state.queue.rq.key)
    return [{"queue": catalog.VERSION, "size": int(queued), "available": live, "idle": 0,
             "working": 0, "paused": 0, "failed": 0}]
