"""The per-tenant web dashboard: server-rendered pages under /dashboard (not in OpenAPI)."""

from service.dashboard.routes import router, static

__all__ = ["router", "static"]
