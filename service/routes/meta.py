"""Health, readiness, Prometheus metrics and the languages list."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from sandboxes.languages.registry import LANGUAGES, Language
from service.deps import StateDep
from service.http_errors import Problem

router = APIRouter(tags=["meta"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is alive."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: StateDep) -> dict[str, object]:
    """Redis answers and at least one worker's heartbeat is fresh (within a lease)."""
    try:
        workers = await run_in_threadpool(state.store.live_workers)
    except Exception:
        raise Problem(503, "not-ready", "Redis is not reachable",
                      headers={"Retry-After": "1"}) from None
    if workers == 0:
        raise Problem(503, "not-ready", "No worker is running", headers={"Retry-After": "1"})
    return {"status": "ready", "workers": workers}


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                             "description": "Prometheus text format"}})
async def metrics(state: StateDep) -> Response:
    """The whole cluster's figures (service/metrics.py): scrape the API once, not each pod."""
    body = await run_in_threadpool(generate_latest, state.metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/languages")
async def languages() -> list[Language]:
    return list(LANGUAGES.values())
