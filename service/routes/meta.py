"""Health, readiness, Prometheus metrics and the languages list."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import Field
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
    """This API process can take jobs: Redis answers. Workers are not required (jobs wait
    for them; scaling workers to zero must not take the API out of its Service); how many
    are live now (a heartbeat within a lease) is in the body."""
    try:
        workers = await run_in_threadpool(state.store.live_workers)
    except Exception:
        raise Problem(503, "not-ready", "Redis is not reachable",
                      headers={"Retry-After": "1"}) from None
    return {"status": "ready", "workers": workers}


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                             "description": "Prometheus text format"}})
async def metrics(state: StateDep) -> Response:
    """The whole cluster's figures (service/metrics.py): scrape the API once, not each pod."""
    body = await run_in_threadpool(generate_latest, state.metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class ServedLanguage(Language):
    served: bool | None = Field(
        default=None, description="Whether a live worker serves it now (a locked-down "
        "worker serves the languages compiled inside the sandbox only); null when no "
        "worker is up")


@router.get("/v1/languages")
async def languages(state: StateDep) -> list[ServedLanguage]:
    """The languages, and which of them the workers up now can serve."""
    served = await state.served_languages()  # None with Redis down: still answered
    return [ServedLanguage(**lang.model_dump(),
                           served=None if served is None else lang.id in served)
            for lang in LANGUAGES.values()]
