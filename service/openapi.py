"""The OpenAPI schema tells every error an operation can answer, as problem+json.

FastAPI documents only success bodies and its own 422 model. ``install`` post-processes the
generated schema once: every operation gets the problem+json answers that the service's
shared machinery can give it, inferred from the route itself, so routes added later need
no boilerplate:

- every operation: 500;
- a request body: 400 (malformed JSON), 413 (over the body cap), 415 (not JSON), 422;
- any parameter: 422 (FastAPI's HTTPValidationError model is replaced);
- a path parameter: 404 (no such resource);
- the shared state (``StateDep``, i.e. Redis): 503 with ``Retry-After``;
- the caller (``CallerDep``, an API key): 401 and 403.

Anything else a route raises itself (409, ...) it declares with
``responses=problem_responses(409)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

from service.auth import current_caller, current_submitter
from service.deps import get_state
from service.http_errors import MEDIA_TYPE, ProblemDetails

PROBLEM_REF = "#/components/schemas/Problem"

DESCRIPTIONS: Mapping[int, str] = {
    400: "The body is not valid JSON (or not UTF-8)",
    401: "No API key, or not a valid one (`WWW-Authenticate: Bearer`)",
    403: "The key may not do this (not an admin key, tenant disabled, over a ceiling)",
    404: "No such resource",
    405: "The method is not allowed here (`Allow` lists those that are)",
    409: "The request conflicts with the resource's current state",
    413: "The request body is over the size cap",
    415: "The body is not declared as JSON (send `Content-Type: application/json`)",
    422: "The request is invalid (`errors` lists each invalid input)",
    500: "Internal error (logged on the server)",
    503: "Temporarily unavailable (job store down, queue full, no worker): retry after "
         "`Retry-After` seconds",
}

_HEADERS: Mapping[int, dict[str, Any]] = {
    405: {"Allow": {"description": "The methods this path serves", "required": True,
                    "schema": {"type": "string"}}},
    503: {"Retry-After": {"description": "Seconds to wait before retrying", "required": True,
                          "schema": {"type": "string", "pattern": "^[0-9]+$"}}},
}


def problem_responses(
    *codes: int, descriptions: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for a route: each code answered as problem+json."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        text = (descriptions or {}).get(code) or DESCRIPTIONS.get(code) or "Error"
        response: dict[str, Any] = {
            "description": text, "content": {MEDIA_TYPE: {"schema": {"$ref": PROBLEM_REF}}},
        }
        if code in _HEADERS:
            response["headers"] = _HEADERS[code]
        responses[code] = response
    return responses


def _calls(dependant: Dependant) -> Iterable[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def inferred_codes(route: APIRoute) -> set[int]:
    """The error statuses the app's shared machinery can answer for this route."""
    codes = {500}
    params = get_flat_params(route.dependant)
    if route.body_field is not None:
        codes |= {400, 413, 415, 422}
    if params:
        codes.add(422)
    if route.dependant.path_params:
        codes.add(404)
    calls = set(_calls(route.dependant))
    if get_state in calls:
        codes.add(503)
    if calls & {current_caller, current_submitter}:  # a key: missing, invalid, not allowed;
        codes |= {401, 403, 429}  # and the tenant's rate and quotas
    return codes


def _is_fastapi_default(response: Mapping[str, Any]) -> bool:
    return "HTTPValidationError" in json.dumps(response)


def document_problems(schema: dict[str, Any], routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """Add the inferred problem answers to every operation of ``schema``, in place."""
    for context in iter_route_contexts(routes):  # also the routes of included routers
        route = context.original_route
        if not isinstance(route, APIRoute) or not context.include_in_schema:
            continue
        path_item = schema.get("paths", {}).get(context.path_format, {})
        for method in context.methods or ():
            operation = path_item.get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for code, response in problem_responses(*inferred_codes(route)).items():
                key = str(code)
                if key not in responses or _is_fastapi_default(responses[key]):
                    responses[key] = response
            operation["responses"] = dict(sorted(responses.items()))
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    problem = ProblemDetails.model_json_schema(
        ref_template="#/components/schemas/{model}", mode="serialization"
    )
    components.update(problem.pop("$defs", {}))
    components["Problem"] = problem
    if not _is_fastapi_default(schema.get("paths", {})):
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
    schema["components"]["schemas"] = dict(sorted(components.items()))
    return schema


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and so /openapi.json and /docs) document the problems."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(generate(), app.routes)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
