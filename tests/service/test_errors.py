"""Every bad input gets an RFC 9457 problem+json answer with a stable type, never a trace."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import wat_modules as W
from tests.service.cluster import Cluster, assert_problem, b64

MAX_BODY = 2_000_000  # the `cluster` fixture's max_body_bytes

BAD_SUBMISSIONS: list[tuple[str, dict[str, Any], int, str]] = [
    ("invalid base64", {"wasm_base64": "!!not base64!!"}, 422, "invalid-base64"),
    ("URL-safe base64", {"wasm_base64": "AGFz-_8="}, 422, "invalid-base64"),
    ("truncated module", {"wasm_base64": b64(b"\0asm\x01\0\0\0\x01")}, 422, "invalid-module"),
    ("not a module", {"wasm_base64": b64(b"\x7fELF\x02\x01\x01")}, 422, "invalid-module"),
    ("bad version", {"wasm_base64": b64(b"\0asm\x02\0\0\0")}, 422, "invalid-module"),
    ("WAT syntax error", {"wat": W.WAT_SYNTAX_ERROR}, 422, "invalid-module"),
    ("WAT type error", {"wat": '(module (func (result i32)))'}, 422, "invalid-module"),
    ("unknown language", {"language": "cobol", "source": "DISPLAY 'HI'."}, 422,
     "unknown-language"),
    ("fuel over max", {"wat": W.HELLO, "limits": {"fuel": 10**13}}, 422, "validation-error"),
    ("memory over max", {"wat": W.HELLO, "limits": {"memory_bytes": "5GiB"}}, 422,
     "validation-error"),
    ("wall time over max", {"wat": W.HELLO, "limits": {"wall_time_s": "1h"}}, 422,
     "validation-error"),
    ("negative limit", {"wat": W.HELLO, "limits": {"stdout_bytes": -1}}, 422,
     "validation-error"),
    ("unknown limit", {"wat": W.HELLO, "limits": {"cpus": 4}}, 422, "validation-error"),
    ("401-digit memory", {"wat": W.HELLO, "limits": {"memory_bytes": "1" + "0" * 400 + "MiB"}},
     422, "validation-error"),
    ("401-digit stdout cap", {"wat": W.HELLO, "limits": {"stdout_bytes": "1" + "0" * 400}},
     422, "validation-error"),
    ("401-digit module size", {"wat": W.HELLO, "limits": {"module_bytes": "9" * 401 + "GiB"}},
     422, "validation-error"),
    ("401-digit scratch quota",
     {"wat": W.HELLO, "grants": {"scratch": {"quota_bytes": "1" + "0" * 400 + "KiB"}}},
     422, "validation-error"),
    ("401-digit wall time", {"wat": W.HELLO, "limits": {"wall_time_s": "1" + "0" * 400 + "s"}},
     422, "validation-error"),
    ("unknown field", {"wat": W.HELLO, "priority": "high"}, 422, "validation-error"),
    ("unknown grant", {"wat": W.HELLO, "grants": {"network": True}}, 422, "validation-error"),
    ("escaping file name", {"wat": W.HELLO, "grants": {"files": {"../etc/passwd": ""}}}, 422,
     "validation-error"),
    ("module and wat", {"wat": W.HELLO, "wasm_base64": b64(b"\0asm\x01\0\0\0")}, 422,
     "validation-error"),
    ("neither module nor wat", {"limits": {"fuel": 1000}}, 422, "validation-error"),
    ("source without language", {"source": "int main(){}"}, 422, "validation-error"),
    ("not an object", [1, 2, 3], 422, "validation-error"),  # type: ignore[list-item]
    ("stdin not base64", {"wat": W.HELLO, "grants": {"stdin": "!!"}}, 422, "validation-error"),
    ("NUL in an argument", {"wat": W.HELLO, "grants": {"args": ["a\0b"]}}, 422,
     "validation-error"),
]


@pytest.mark.parametrize(("body", "status", "kind"),
                         [c[1:] for c in BAD_SUBMISSIONS], ids=[c[0] for c in BAD_SUBMISSIONS])
def test_bad_submission(cluster: Cluster, body: dict[str, Any], status: int, kind: str) -> None:
    r = cluster.http.post("/v1/jobs", json=body)
    problem = assert_problem(r, status, kind)
    if kind == "validation-error":
        assert problem["errors"] and problem["detail"], problem


@pytest.mark.parametrize("raw", [
    r'{"wat": "(module)\ud800"}',
    r'{"language": "c", "source": "int main() {} \udfff"}',
    r'{"wat": "(module)", "grants": {"args": ["\ud800"]}}',
    r'{"wasm_base64": "AGFz\ud800"}',
], ids=["wat", "source", "arg", "base64"])
def test_lone_surrogates_in_json_strings(cluster: Cluster, raw: str) -> None:
    """Valid JSON, but not Unicode text: a client error, not a 500 (and not a dropped
    keep-alive connection)."""
    r = cluster.http.post("/v1/jobs", content=raw.encode(),
                          headers={"content-type": "application/json"})
    assert r.status_code in (400, 422), r.text
    problem = assert_problem(r, r.status_code,
                             "invalid-base64" if "base64" in raw else "validation-error")
    assert problem["detail"]
    assert cluster.http.get("/healthz").status_code == 200  # same connection still usable


def test_bad_job_in_a_batch_rejects_the_whole_batch(cluster: Cluster) -> None:
    before = len(list(cluster.client.scan_iter("warden:job:*")))
    r = cluster.http.post("/v1/jobs/batch",
                          json={"jobs": [{"wat": W.HELLO}, {"wat": W.WAT_SYNTAX_ERROR}]})
    assert_problem(r, 422, "invalid-module")
    assert len(list(cluster.client.scan_iter("warden:job:*"))) == before  # none was queued
    assert_problem(cluster.http.post("/v1/jobs/batch", json={"jobs": []}), 422,
                   "validation-error")
    too_many = {"jobs": [{"wat": W.HELLO}] * 101}
    assert_problem(cluster.http.post("/v1/jobs/batch", json=too_many), 422, "validation-error")


def test_body_over_the_cap_with_content_length(cluster: Cluster) -> None:
    body = json.dumps({"wat": W.HELLO, "grants": {"stdin": b64(b"x" * MAX_BODY)}}).encode()
    r = cluster.http.post("/v1/jobs", content=body,
                          headers={"content-type": "application/json"})
    assert "content-length" in r.request.headers
    problem = assert_problem(r, 413, "body-too-large")
    assert str(MAX_BODY) in problem["detail"]


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/jobs/batch"])
def test_body_over_the_cap_chunked(cluster: Cluster, path: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"wat": "(module)", "grants": {"stdin": "'
        for _ in range(30):
            yield b"A" * 100_000
        yield b'"}}'

    r = cluster.http.post(path, content=chunks(), headers={"content-type": "application/json"})
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in r.request.headers
    assert_problem(r, 413, "body-too-large")


def test_chunked_body_over_the_cap_on_a_raw_socket(cluster: Cluster) -> None:
    """Also when the client keeps sending past the cap (no client library in between)."""
    with socket.create_connection(("127.0.0.1", cluster.port), timeout=10) as s:
        s.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(40):
                s.sendall(b"%x\r\n" % 100_000 + b"A" * 100_000 + b"\r\n")
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may close the connection once it has answered
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = s.recv(4096)
            if not data:
                break
            answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer
    assert b"content-type: application/problem+json" in head.lower()
    assert json.loads(body)["type"] == "https://warden.dev/problems/body-too-large"


def test_a_body_just_under_the_cap_is_accepted(cluster: Cluster) -> None:
    r = cluster.http.post("/v1/jobs", params={"wait": 30}, json={
        "wat": W.HELLO, "grants": {"stdin": b64(b"x" * (MAX_BODY // 2))}})
    assert r.status_code == 200 and r.json()["result"]["status"] == "ok", r.text[:300]


def test_unknown_job_id(cluster: Cluster) -> None:
    job_id = uuid.uuid4().hex
    for r in (cluster.http.get(f"/v1/jobs/{job_id}"),
              cluster.http.get(f"/v1/jobs/{job_id}", params={"wait": 5}),
              cluster.http.delete(f"/v1/jobs/{job_id}")):
        problem = assert_problem(r, 404, "job-not-found")
        assert job_id in problem["detail"]


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/jobs/batch"])
@pytest.mark.parametrize("body", [b'{"wat": "(module)",', b"{'wat': 1}", b"\x07x\xff\xfe",
                                  b'{"wat": "\xff"}'],
                         ids=["truncated", "single quotes", "binary", "not UTF-8"])
def test_malformed_json_is_400(cluster: Cluster, path: str, body: bytes) -> None:
    """A body that is not JSON at all is a 400 (the request is unreadable), not a 422."""
    r = cluster.http.post(path, content=body, headers={"content-type": "application/json"})
    problem = assert_problem(r, 400, "malformed-json")
    assert "JSON" in problem["detail"], problem


def test_an_empty_body_is_400_and_null_is_422(cluster: Cluster) -> None:
    r = cluster.http.post("/v1/jobs", headers={"content-type": "application/json"})
    problem = assert_problem(r, 400, "malformed-json")  # nothing at all: not JSON
    assert "empty" in problem["detail"], problem
    r = cluster.http.post("/v1/jobs", content=b"null",
                          headers={"content-type": "application/json"})
    problem = assert_problem(r, 422, "validation-error")  # JSON, but not a job
    assert problem["errors"][0]["loc"] == ["body"], problem


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_wrong_content_type(cluster: Cluster, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    r = cluster.http.post("/v1/jobs", content=json.dumps({"wat": W.HELLO}).encode(),
                          headers=headers)
    problem = assert_problem(r, 415, "unsupported-media-type")
    assert "application/json" in problem["detail"]
    r = cluster.http.post("/v1/jobs/batch", content=b'{"jobs": []}', headers=headers)
    assert_problem(r, 415, "unsupported-media-type")


def test_json_with_charset_and_problem_suffix_is_accepted(cluster: Cluster) -> None:
    for content_type in ("application/json; charset=utf-8", "application/vnd.warden+json"):
        r = cluster.http.post("/v1/jobs", content=json.dumps({"wat": W.HELLO}).encode(),
                              headers={"content-type": content_type})
        assert r.status_code == 202, (content_type, r.text)


def test_bad_query_parameters(cluster: Cluster) -> None:
    job_id = cluster.submit({"wat": W.HELLO})
    assert_problem(cluster.http.get(f"/v1/jobs/{job_id}", params={"wait": -1}), 422,
                   "validation-error")
    assert_problem(cluster.http.get(f"/v1/jobs/{job_id}", params={"wait": "soon"}), 422,
                   "validation-error")
    assert_problem(cluster.http.get("/v1/jobs", params={"limit": 0}), 422, "validation-error")
    assert_problem(cluster.http.get("/v1/jobs", params={"state": "done"}), 422,
                   "validation-error")
    for cursor in ("nan", "", "-1"):  # the schema's pattern: what next_cursor can be
        assert_problem(cluster.http.get("/v1/jobs", params={"cursor": cursor}), 422,
                       "validation-error")
    many = ",".join(uuid.uuid4().hex for _ in range(101))
    problem = assert_problem(cluster.http.get("/v1/jobs", params={"ids": many}), 422,
                             "too-many-ids")
    assert "101" in problem["detail"]


def test_unknown_route_says_what_was_asked(cluster: Cluster) -> None:
    problem = assert_problem(cluster.http.get("/v2/jobs"), 404, "not-found")
    assert "/v2/jobs" in problem["detail"], problem
    problem = assert_problem(cluster.http.get("/docs/assets/nothing.js"), 404, "not-found")
    assert "/docs/assets/nothing.js" in problem["detail"], problem


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("PUT", "/v1/jobs/{id}", "DELETE, GET"),  # two routes share the path: both are named
    ("PATCH", "/v1/jobs", "GET, POST"),
    ("OPTIONS", "/v1/jobs/batch", "POST"),  # not the methods of /v1/jobs/{id}, which "batch" fits
    ("POST", "/healthz", "GET"),
    ("DELETE", "/docs/assets/swagger-ui.css", "GET, HEAD"),
])
def test_wrong_method_is_405_with_allow(
    cluster: Cluster, method: str, path: str, allowed: str
) -> None:
    url = path.replace("{id}", uuid.uuid4().hex)
    r = cluster.http.request(method, url)
    problem = assert_problem(r, 405, "method-not-allowed")
    assert r.headers["allow"] == allowed, r.headers
    assert method in problem["detail"] and url in problem["detail"] and allowed in problem["detail"]
    for other in allowed.split(", "):  # what Allow names is really served there
        assert cluster.http.request(other, url).status_code != 405, other


def test_no_worker_still_ready_and_queue_full_answers_503(fresh_cluster: Cluster) -> None:
    fresh_cluster.start_api()  # no worker: nothing leaves the queue (max_queue_length=5)
    http = fresh_cluster.http
    r = http.get("/readyz")  # ready: jobs wait for workers (workers may scale to zero)
    assert (r.status_code, r.json()) == (200, {"status": "ready", "workers": 0}), r.text
    assert http.get("/healthz").status_code == 200

    accepted = [fresh_cluster.submit({"wat": W.HELLO}) for _ in range(3)]

    # A batch that does not fit is refused whole: no job of it is queued.
    r = http.post("/v1/jobs/batch", json={"jobs": [{"wat": W.HELLO}] * 3})
    assert_problem(r, 503, "queue-full")
    assert r.headers["retry-after"] == "1"
    assert len(list(fresh_cluster.client.scan_iter("warden:job:*"))) == 3

    r = http.post("/v1/jobs/batch", json={"jobs": [{"wat": W.HELLO}] * 2})
    assert r.status_code == 202, r.text
    accepted += r.json()["ids"]

    for r in (http.post("/v1/jobs", json={"wat": W.HELLO}),
              http.post("/v1/jobs", params={"wait": 5}, json={"wat": W.HELLO}),
              http.post("/v1/jobs/batch", json={"jobs": [{"wat": W.HELLO}]})):
        assert_problem(r, 503, "queue-full")
        assert int(r.headers["retry-after"]) >= 1
    assert len(list(fresh_cluster.client.scan_iter("warden:job:*"))) == 5
    got = http.get("/v1/jobs", params={"ids": ",".join(accepted)}).json()["jobs"]
    assert [g["state"] for g in got] == ["queued"] * 5


def test_assert_problem_catches_a_plain_error_page() -> None:
    """Sanity check of the helper: a non-problem answer is not mistaken for one."""
    fake = httpx.Response(500, text="Traceback (most recent call last):",
                          headers={"content-type": "text/plain"})
    with pytest.raises(AssertionError):
        assert_problem(fake, 500, "internal-error")
