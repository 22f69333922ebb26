"""The job API's encodings and result shape as clients meet them: standard base64 in and
out, text on request, RFC 3339 timestamps, runnable modules only, explicit wait outcomes,
batches that wait, and a paged listing of recent jobs."""

from __future__ import annotations

import base64
import os
import re
import uuid

from tests import wat_modules as W
from tests.service.cluster import Cluster, assert_problem, b64

# cat: copies stdin to stdout, 4 KiB at a time, until EOF
ECHO = """(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $l
      (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const 4096))
      (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (if (i32.load (i32.const 8)) (then
        (i32.store (i32.const 4) (i32.load (i32.const 8)))
        (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (br $l))))))"""

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_arbitrary_bytes_round_trip_as_standard_base64(cluster: Cluster) -> None:
    data = bytes([0xFB, 0xFF, 0xFE]) + bytes(range(256)) + os.urandom(3000)
    r = cluster.http.post("/v1/jobs", params={"wait": 30},
                          json={"wat": ECHO, "grants": {"stdin": b64(data)}})
    assert r.status_code == 200, r.text
    out = r.json()["result"]["stdout"]
    assert out.startswith("+//+"), out[:8]  # URL-safe base64 would read "-__-"
    assert base64.b64decode(out, validate=True) == data


def test_url_safe_base64_input_is_refused(cluster: Cluster) -> None:
    r = cluster.http.post("/v1/jobs", json={"wat": ECHO, "grants": {"stdin": "-__-"}})
    problem = assert_problem(r, 422, "validation-error")
    assert "base64" in problem["detail"] and "grants.stdin" in problem["detail"]


def test_outputs_as_text_on_request_and_base64_when_not_utf8(cluster: Cluster) -> None:
    r = cluster.http.post("/v1/jobs", params={"wait": 30, "encoding": "text"},
                          json={"wat": ECHO, "grants": {"stdin": b64("héllo\n".encode())}})
    assert r.status_code == 200, r.text
    assert r.json()["result"]["stdout"] == "héllo\n"
    assert r.json()["result"]["encoding"] == "text"
    job_id = r.json()["id"]
    again = cluster.http.get(f"/v1/jobs/{job_id}", params={"encoding": "text"})
    assert again.json()["result"]["stdout"] == "héllo\n"
    listed = cluster.http.get("/v1/jobs", params={"ids": job_id, "encoding": "text"})
    assert listed.json()["jobs"][0]["result"]["stdout"] == "héllo\n"

    r = cluster.http.post("/v1/jobs", params={"wait": 30},
                          json={"wat": ECHO, "grants": {"stdin": b64(b"\xff\xfe")}})
    binary = r.json()["id"]
    kept = cluster.http.get(f"/v1/jobs/{binary}", params={"encoding": "text"})
    assert kept.status_code == 200, kept.text
    assert kept.json()["result"]["encoding"] == "base64"  # the record says: not text
    assert base64.b64decode(kept.json()["result"]["stdout"], validate=True) == b"\xff\xfe"
    exact = cluster.http.get(f"/v1/jobs/{binary}")  # the default: the exact bytes
    assert base64.b64decode(exact.json()["result"]["stdout"], validate=True) == b"\xff\xfe"


def test_timestamps_are_rfc3339_utc(cluster: Cluster) -> None:
    r = cluster.http.post("/v1/jobs", params={"wait": 30}, json={"wat": W.HELLO})
    record = r.json()
    for name in ("created_at", "started_at", "finished_at"):
        assert RFC3339.match(record[name]), (name, record[name])


def test_a_module_without_an_entry_is_refused_at_submit(cluster: Cluster) -> None:
    for wat in ("(module)", W.NO_START, '(module (memory (export "_start") 1))'):
        problem = assert_problem(cluster.http.post("/v1/jobs", json={"wat": wat}), 422,
                                 "no-entry-point")
        assert "_start" in problem["detail"]


def test_a_batch_can_wait_and_a_refused_job_names_its_index(cluster: Cluster) -> None:
    jobs = [{"wat": W.hello(f"b{n}\n")} for n in range(3)]
    r = cluster.http.post("/v1/jobs/batch", params={"wait": 30, "encoding": "text"},
                          json={"jobs": jobs})
    assert r.status_code == 200, r.text
    assert [j["result"]["stdout"] for j in r.json()["jobs"]] == ["b0\n", "b1\n", "b2\n"]

    slow = cluster.http.post("/v1/jobs/batch", params={"wait": 0.3},
                             json={"jobs": [{"wat": W.sleep(2)}]})
    assert slow.status_code == 202 and slow.json()["jobs"][0]["state"] != "finished"

    bad = [{"wat": W.HELLO}, {"wat": "(module)"}]
    problem = assert_problem(cluster.http.post("/v1/jobs/batch", json={"jobs": bad}), 422,
                             "no-entry-point")
    assert problem["index"] == 1 and problem["detail"].startswith("jobs[1]: ")


def test_listing_is_newest_first_paged_and_filtered(cluster: Cluster) -> None:
    marker = uuid.uuid4().hex
    ids = []
    for n in range(5):
        r = cluster.http.post("/v1/jobs", params={"wait": 30},
                              json={"wat": W.hello(f"{marker} {n}\n")})
        ids.append(r.json()["id"])
    r = cluster.http.get("/v1/jobs", params={"limit": 3})
    assert r.status_code == 200, r.text
    first = r.json()
    assert [j["id"] for j in first["jobs"]] == ids[::-1][:3]
    assert first["next_cursor"]
    second = cluster.http.get("/v1/jobs", params={"limit": 2, "cursor": first["next_cursor"]})
    assert [j["id"] for j in second.json()["jobs"]] == ids[::-1][3:5]
    finished = cluster.http.get("/v1/jobs", params={"state": "finished", "limit": 100})
    assert all(j["state"] == "finished" for j in finished.json()["jobs"])
    assert set(ids) <= {j["id"] for j in finished.json()["jobs"]}
    assert cluster.http.get("/v1/jobs", params={"state": "cancelled"}).json()["jobs"] == [] or all(
        j["state"] == "cancelled"
        for j in cluster.http.get("/v1/jobs", params={"state": "cancelled"}).json()["jobs"])


def test_the_schema_says_base64_and_date_time(cluster: Cluster) -> None:
    schemas = cluster.http.get("/openapi.json").json()["components"]["schemas"]
    stdin = schemas["Grants"]["properties"]["stdin"]
    assert stdin["format"] == "byte" and stdin["pattern"].startswith("^(?:[A-Za-z0-9+/]")
    assert schemas["JobSubmission"]["properties"]["wasm_base64"]["format"] == "byte"
    assert schemas["RunResult"]["properties"]["stdout"]["contentEncoding"] == "base64"
    assert schemas["JobRecord"]["properties"]["created_at"]["format"] == "date-time"


def test_limit_errors_speak_the_users_language(cluster: Cluster) -> None:
    r = cluster.http.post("/v1/jobs", json={"wat": W.HELLO, "limits": {
        "memory_bytes": "10GiB", "wall_time_s": 0, "fuel": 10**13}})
    problem = assert_problem(r, 422, "validation-error")
    messages = {e["msg"] for e in problem["errors"]}
    assert messages == {"memory must be at most 4GiB", "wall time must be at least 0.001 s",
                        "fuel must be at most 1,000,000,000,000"}, messages
