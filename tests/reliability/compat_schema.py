"""An OpenAPI document of the surfaces Warden's own leaves out (the Judge0 and Piston APIs,
the dashboard), for fuzzing them with Schemathesis (tests/reliability/test_api_fuzz.py).

Their shapes are Judge0's, Piston's and HTML forms, so they stay out of ``/openapi.json``;
this document exists only for the fuzzer. FastAPI describes the routes (paths, query
parameters, the Judge0 bodies); the bodies a route reads itself (Piston's execute, the
dashboard's forms) are described here after Piston's documentation and the forms' fields.
Only "no server error" is checked against it: what these routes answer is theirs, not a
schema Warden publishes.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from service.dashboard import routes as dashboard_routes
from service.judge0 import routes as judge0_routes
from service.piston import routes as piston_routes

_PISTON_FILE: dict[str, Any] = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "content": {"type": "string"},
                   "encoding": {"type": "string", "enum": ["utf8", "base64", "hex"]}},
    "required": ["content"],
}
_PISTON_EXECUTE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "language": {"type": "string"}, "version": {"type": "string"},
        "files": {"type": "array", "items": _PISTON_FILE},
        "stdin": {"type": "string"}, "args": {"type": "array", "items": {"type": "string"}},
        "compile_timeout": {"type": "integer"}, "run_timeout": {"type": "integer"},
        "compile_memory_limit": {"type": "integer"}, "run_memory_limit": {"type": "integer"},
    },
    "required": ["language", "version", "files"],
}


def _form(properties: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
        "type": "object", "properties": properties, "required": list(properties)}}}}


def compat_document(login_csrf: str) -> dict[str, Any]:
    """The document; ``login_csrf``: the sign-in form's token for the nonce cookie the
    fuzzer sends, so its keys reach the key check. The sign-out token is left to the
    fuzzer (it never guesses it: the session it sends stays open for the pages)."""
    routes = []
    for router in (judge0_routes.router, piston_routes.router, dashboard_routes.router):
        for route in router.routes:
            if isinstance(route, APIRoute):
                shown = copy.copy(route)
                shown.include_in_schema = True
                routes.append(shown)
    doc = get_openapi(title="Warden compatibility surfaces (for fuzzing)", version="1",
                      routes=routes)
    paths = doc["paths"]
    paths["/piston/api/v2/execute"]["post"]["requestBody"] = {
        "required": True, "content": {"application/json": {"schema": _PISTON_EXECUTE}}}
    paths["/dashboard/login"]["post"]["requestBody"] = _form(
        {"key": {"type": "string"}, "csrf": {"type": "string", "enum": [login_csrf]}})
    paths["/dashboard/logout"]["post"]["requestBody"] = _form({"csrf": {"type": "string"}})
    return doc
