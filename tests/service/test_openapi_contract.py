"""The published OpenAPI schema describes the live service truthfully.

Against a real API with real workers:

- the document itself: every error status an operation can answer is listed, as
  application/problem+json with the one Problem schema (FastAPI's HTTPValidationError is gone);
- Schemathesis v4 with every built-in check: the examples, coverage and fuzzing phases per
  operation, then the stateful phase over linked operations, bounded to stay well under a
  minute on 2 cores.

One deliberate setting: some requests that fit the schema are still refused, for what no JSON
Schema can say (WAT that does not parse, a module with no entry point, a language that does
not exist). ``positive_data_acceptance`` therefore also accepts 422, and
``content_rejections_only`` narrows that back: a
schema-valid request may be refused only with one of those content problem types, never as a
``validation-error`` (the schema promised something the service refuses).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis import Case, CheckContext, Response
from schemathesis.schemas import BaseSchema

from tests import wat_modules as W
from tests.service.cluster import PROBLEM_TYPE_BASE, Cluster

MAX_WAIT_S = 2  # the service caps generated ?wait values (up to 1e308 s) at this
MAX_EXAMPLES = 30  # fuzzing examples per operation
STATEFUL_EXAMPLES = 15

# Refusals of schema-valid requests for their content, which JSON Schema cannot express.
CONTENT_PROBLEMS = frozenset({
    "invalid-module", "no-entry-point", "unknown-language", "compiler-flag-not-allowed",
    "reserved-path", "files-too-large", "file-inside-file", "invalid-date-range",
    "invalid-problem", "invalid-submission", "missing-blobs", "blob-hash-mismatch",
    "invalid-callback-url",  # the host's rules (credentials, numeric spellings, IDNA)
})

CONFIG_DICT: dict[str, Any] = {
    "seed": 11,  # reproducible runs; a failure prints the `curl` that replays it
    "generation": {"max-examples": MAX_EXAMPLES},
    "checks": {"positive_data_acceptance": {"expected-statuses": [
        "2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx",
    ]}},
}


def _operations(openapi: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def _param_schemas(openapi: dict[str, Any], name: str) -> list[str]:
    return [str(p["schema"]) for _, _, op in _operations(openapi)
            for p in op.get("parameters", []) if p["name"] == name]


@dataclass(frozen=True)
class Gap:
    """Schema-valid requests the service refuses because the schema does not yet state a rule
    that sandboxes/schema.py or service/routes/jobs.py (the lead's files) enforce."""

    name: str
    kind: str  # problem type
    loc: str  # regex matched at the start of an error's dotted loc ("" if no `errors`)
    words: tuple[str, ...]  # one of these is in the error's message
    fix: str
    fixed: Callable[[dict[str, Any], httpx.Client], bool]


KNOWN_GAPS: tuple[Gap, ...] = ()  # none open: add one here (with its fix) if one appears


def _known_gap(problem: dict[str, Any]) -> bool:
    """Whether every error in ``problem`` is one of KNOWN_GAPS."""
    kind = str(problem.get("type", "")).removeprefix(PROBLEM_TYPE_BASE)
    errors = problem.get("errors") or [{"loc": [], "msg": problem.get("detail", "")}]
    return all(any(
        gap.kind == kind and re.match(gap.loc, ".".join(map(str, error["loc"]))) is not None
        and any(words in str(error["msg"]) for words in gap.words)
        for gap in KNOWN_GAPS
    ) for error in errors)


def content_rejections_only(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A schema-valid request refused with 422 must be refused for its content."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code != 422:
        return None
    problem = response.json()
    kind = str(problem.get("type", "")).removeprefix(PROBLEM_TYPE_BASE)
    if kind in CONTENT_PROBLEMS or _known_gap(problem):
        return None
    raise AssertionError(
        f"a request valid by the published schema was refused as {kind!r}: "
        f"{problem.get('detail')}"
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """API + 2 workers; waits capped so generated ``wait`` values cannot stall the run."""
    c = Cluster(tmp_path_factory.mktemp("contract"), lease_s=2, max_body_bytes=2_000_000,
                max_wait_s=MAX_WAIT_S)
    try:
        c.start_api()
        c.start_worker()
        c.start_worker()
        c.wait_ready(2)
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def openapi(cluster: Cluster) -> dict[str, Any]:
    r = cluster.http.get("/openapi.json")
    assert r.status_code == 200, r.text
    document: dict[str, Any] = r.json()
    return document


@pytest.fixture(scope="module")
def api_schema(cluster: Cluster) -> BaseSchema:
    config = schemathesis.Config.from_dict({
        **CONFIG_DICT, "headers": {"Authorization": f"Bearer {cluster.admin_key}"}})
    return schemathesis.openapi.from_url(f"{cluster.http.base_url}/openapi.json", config=config)


# -- the document --------------------------------------------------------------------------

def _expected_errors(path: str, operation: dict[str, Any]) -> set[str]:
    """What the app's shared machinery can answer for this operation (service/openapi.py)."""
    codes = {"500"}
    params = operation.get("parameters", [])
    if "requestBody" in operation:
        codes |= {"400", "413", "415", "422"}
    if params:
        codes.add("422")
    if any(p["in"] == "path" for p in params):
        codes.add("404")
    if path not in ("/healthz", "/v1/languages"):  # every other route reads Redis
        codes.add("503")
    return codes


def test_every_error_status_is_documented_as_problem_json(openapi: dict[str, Any]) -> None:
    operations = list(_operations(openapi))
    assert len(operations) >= 8
    for method, path, operation in operations:
        responses = operation["responses"]
        missing = _expected_errors(path, operation) - set(responses)
        assert not missing, (method, path, sorted(missing))
        for code, response in responses.items():
            if int(code) < 400:
                continue
            assert set(response["content"]) == {"application/problem+json"}, (method, path, code)
            schema = response["content"]["application/problem+json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Problem"}, (method, path, code)
            assert response["description"], (method, path, code)


def test_problem_schema_replaces_fastapis_validation_model(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert "HTTPValidationError" not in str(openapi["paths"])
    problem = schemas["Problem"]
    assert set(problem["required"]) == {"type", "title", "status"}
    assert {"type", "title", "status", "detail", "errors"} <= set(problem["properties"])
    assert problem["properties"]["errors"]["anyOf"][0]["items"] == {
        "$ref": "#/components/schemas/FieldError"}
    assert set(schemas["FieldError"]["required"]) == {"loc", "msg"}


def test_retry_after_and_allow_are_documented_headers(openapi: dict[str, Any]) -> None:
    seen = 0
    for method, path, operation in _operations(openapi):
        for code, header in (("503", "Retry-After"), ("405", "Allow")):
            if code in operation["responses"]:
                seen += 1
                headers = operation["responses"][code]["headers"]
                assert headers[header]["required"] is True, (method, path, code)
    assert seen >= 6


def test_cancel_documents_its_409(openapi: dict[str, Any]) -> None:
    responses = openapi["paths"]["/v1/jobs/{job_id}"]["delete"]["responses"]
    assert "application/problem+json" in responses["409"]["content"]


def test_real_error_answers_are_documented_problems(
    cluster: Cluster, openapi: dict[str, Any]
) -> None:
    """One real answer per kind of error, each of a status its operation documents, with
    the Problem schema's required members."""
    http = cluster.http
    json_type = {"content-type": "application/json"}
    answers: list[tuple[str, str, httpx.Response]] = [
        ("post", "/v1/jobs", http.post("/v1/jobs", content=b"{", headers=json_type)),
        ("post", "/v1/jobs", http.post("/v1/jobs", content=b"{}",
                                       headers={"content-type": "text/plain"})),
        ("post", "/v1/jobs", http.post("/v1/jobs", json={"wat": "(module"})),
        ("post", "/v1/jobs", http.post("/v1/jobs", json={
            "wat": W.HELLO, "grants": {"stdin": "A" * 2_000_000}})),
        ("get", "/v1/jobs/{job_id}", http.get("/v1/jobs/no-such-job")),
        ("get", "/v1/jobs/{job_id}", http.get("/v1/jobs/x", params={"wait": -1})),
        ("post", "/v1/jobs/batch", http.post("/v1/jobs/batch", json={"jobs": []})),
    ]
    for method, path, r in answers:
        documented = openapi["paths"][path][method]["responses"]
        assert str(r.status_code) in documented, (method, path, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json", r.headers
        body = r.json()
        assert {"type", "title", "status"} <= set(body) and body["status"] == r.status_code
    assert sorted({r.status_code for _, _, r in answers}) == [400, 404, 413, 415, 422]


NOT_UTF8 = """(module (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "\\fb\\ff\\fe")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 3))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


def test_real_job_answers_match_the_schema(cluster: Cluster, api_schema: BaseSchema) -> None:
    """Generated requests rarely make a runnable job, so records of real ones (finished,
    queued, cancelled, as text, not text) are checked against the schema here."""
    http = cluster.http
    wait = {"wait": MAX_WAIT_S}
    ended = http.post("/v1/jobs", params=wait, json={"wat": W.HELLO})
    job_id = ended.json()["id"]
    looping = http.post("/v1/jobs", json={"wat": W.LOOP, "limits": {"wall_time_s": 5}})
    answers: list[tuple[str, str, httpx.Response]] = [
        ("/v1/jobs", "POST", ended),
        ("/v1/jobs", "POST", looping),
        ("/v1/jobs", "POST", http.post("/v1/jobs", params={**wait, "encoding": "text"},
                                       json={"wat": NOT_UTF8})),
        ("/v1/jobs/{job_id}", "GET", http.get(f"/v1/jobs/{job_id}")),
        ("/v1/jobs/{job_id}", "GET", http.get(f"/v1/jobs/{job_id}", params={"encoding": "text"})),
        ("/v1/jobs/{job_id}", "DELETE", http.delete(f"/v1/jobs/{looping.json()['id']}")),
        ("/v1/jobs", "GET", http.get("/v1/jobs", params={"ids": f"{job_id},unknown"})),
        ("/v1/jobs", "GET", http.get("/v1/jobs", params={"limit": 2})),
        ("/v1/jobs/batch", "POST", http.post("/v1/jobs/batch", params=wait, json={
            "jobs": [{"wat": W.HELLO}, {"wat": NOT_UTF8}]})),
        ("/v1/languages", "GET", http.get("/v1/languages")),
        ("/readyz", "GET", http.get("/readyz")),
        ("/healthz", "GET", http.get("/healthz")),
    ]
    for path, method, r in answers:
        documented = api_schema[path][method].definition.raw["responses"]
        assert str(r.status_code) in documented, (method, path, r.status_code, r.text[:300])
        media_type = r.headers["content-type"].split(";")[0]
        assert media_type in documented[str(r.status_code)]["content"], (method, path, r.headers)
        api_schema[path][method].validate_response(r)  # the body fits the documented schema
    statuses = {r.status_code for _, _, r in answers}
    assert {200, 202} <= statuses, statuses
    as_text = answers[2][2].json()["result"]
    assert as_text["encoding"] == "base64", as_text  # not UTF-8: kept in base64
    assert ended.json()["state"] == "finished", ended.text


# -- Schemathesis --------------------------------------------------------------------------

schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@hypothesis.settings(deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
def test_every_operation_conforms(case: Case) -> None:
    """Examples, coverage and fuzzing phases, every built-in check, per operation."""
    case.call_and_validate(additional_checks=[content_rejections_only])


def test_linked_operations_conform(api_schema: BaseSchema) -> None:
    """The stateful phase: submit, then read, list and cancel what was submitted."""
    # Jobs only: the admin routes' links (create a tenant, then read it) depend on Redis
    # state that outlives a Hypothesis replay (a replayed create is a 409), which makes
    # the state machine's draws inconsistent; the admin routes keep the per-operation phase.
    base = api_schema.include(path_regex="^/v1/jobs").as_state_machine()

    class Machine(base):  # type: ignore[misc,valid-type]
        def validate_response(
            self, response: Response, case: Case,
            additional_checks: list[Any] | None = None, **kwargs: Any,
        ) -> None:
            checks = [*(additional_checks or []), content_rejections_only]
            super().validate_response(response, case, checks, **kwargs)

    Machine.run(settings=hypothesis.settings(
        max_examples=STATEFUL_EXAMPLES, stateful_step_count=6, deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck), database=None,
    ))
