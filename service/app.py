"""The FastAPI application: routers, problem+json errors, body cap, shared state, docs."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from sandboxes.settings import Settings, get_settings
from service import dashboard, http_errors, openapi
from service.body_limit import BodyLimitMiddleware
from service.callbacks.dispatcher import CallbackDispatcher
from service.judge0 import routes as judge0_routes
from service.metrics import HttpMetricsMiddleware
from service.piston import routes as piston_routes
from service.piston.execute import PistonError
from service.ratelimit_headers import RateLimitHeadersMiddleware
from service.routes import admin, jobs, meta, problems, usage
from service.state import AppState
from tenancy.bootstrap import ensure_bootstrap_key
from workers.reaper import Reaper

DOCS_ASSETS = "/docs/assets"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.warden = state = AppState.connect(settings)
        if settings.bootstrap_admin_key:
            ensure_bootstrap_key(state.tenants, settings.bootstrap_admin_key)
        assert state.aclient is not None
        callbacks = CallbackDispatcher(state.aclient, settings)
        delivering = asyncio.create_task(callbacks.run(), name="warden-callbacks")
        # Dead workers' jobs are put back from here too: recovery needs no live worker.
        reaping = threading.Event()
        Reaper(state.store, state.queue, settings.lease_s, settings.max_attempts).start(reaping)
        yield
        reaping.set()
        delivering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await delivering
        await callbacks.close()
        state.close()

    # /docs (Swagger UI) and /redoc from assets installed with fastapi-offline, not a CDN:
    # they work on a machine with no internet. No online validator badge either.
    app = FastAPIOffline(
        title="Warden",
        version="0.1.0",
        description="Run untrusted code safely on WebAssembly.",
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.include_router(meta.router)
    app.include_router(jobs.router)
    app.include_router(problems.router)
    app.include_router(judge0_routes.router)
    app.include_router(piston_routes.router)
    app.include_router(admin.admin)
    app.include_router(admin.keys)
    app.include_router(usage.router)
    # The web dashboard: HTML pages, not API operations, so not in the OpenAPI schema.
    app.include_router(dashboard.router, include_in_schema=False)
    app.mount("/dashboard/static", dashboard.static, name="dashboard-static")
    openapi.install(app)
    app.add_exception_handler(http_errors.Problem, http_errors.on_problem)
    app.add_exception_handler(judge0_routes.Judge0Error, judge0_routes.on_judge0_error)
    app.add_exception_handler(PistonError, piston_routes.on_piston_error)
    app.add_exception_handler(RequestValidationError, http_errors.on_validation)
    app.add_exception_handler(StarletteHTTPException, http_errors.on_http)
    for down in (redis.ConnectionError, redis.TimeoutError):
        app.add_exception_handler(down, http_errors.on_redis_down)
    app.add_exception_handler(Exception, http_errors.on_unexpected)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RateLimitHeadersMiddleware)
    app.add_middleware(HttpMetricsMiddleware)
    return app
