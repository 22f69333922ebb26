"""The jobs API end to end: real Redis, API and worker processes, real wasmtime."""

from __future__ import annotations

import hashlib
import time
import uuid

import wasmtime

from tests import wat_modules as W
from tests.conftest import fixture_bytes
from tests.service.cluster import Cluster, b64, stdout_of, unix, worker_name

C_HELLO = fixture_bytes("hello.wasm")
ENV_ARGS = fixture_bytes("env_args.wasm")
FS_ESCAPE = fixture_bytes("fs_escape.wasm")


def test_submit_wat_then_poll_until_finished(cluster: Cluster) -> None:
    r = cluster.http.post("/v1/jobs", json={"wat": W.hello("from the api\n")})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["state"] == "queued" and len(body["id"]) == 32
    assert r.headers["location"] == f"/v1/jobs/{body['id']}"

    record = cluster.wait_state(body["id"])
    assert record["id"] == body["id"]
    assert record["state"] == "finished", record
    assert record["error"] is None
    result = record["result"]
    assert result["status"] == "ok" and result["exit_code"] == 0, result
    assert stdout_of(record) == b"from the api\n"
    assert record["attempts"] == 1
    assert "worker" not in record  # the worker's host and pid are for operators only
    assert cluster.worker_of(body["id"]) in {worker_name(p) for p in cluster.workers}
    assert unix(record["created_at"]) <= unix(record["started_at"]) <= unix(record["finished_at"])


def test_submit_base64_wasm_with_wait_true_answers_inline(cluster: Cluster) -> None:
    r = cluster.http.post("/v1/jobs", params={"wait": "true"}, json={"wasm_base64": b64(C_HELLO)})
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["state"] == "finished", record
    assert record["result"]["status"] == "ok"
    assert record["result"]["exit_code"] == 0
    assert stdout_of(record) == b"hello\n"


def test_submit_with_wait_seconds_and_wait_false(cluster: Cluster) -> None:
    r = cluster.http.post("/v1/jobs", params={"wait": 20}, json={"wat": W.hello("w\n")})
    assert r.status_code == 200 and r.json()["state"] == "finished", r.text
    assert stdout_of(r.json()) == b"w\n"
    r = cluster.http.post("/v1/jobs", params={"wait": "false"}, json={"wat": W.HELLO})
    assert r.status_code == 202 and r.json()["state"] == "queued", r.text


def test_submit_with_a_wait_that_runs_out(cluster: Cluster) -> None:
    start = time.monotonic()
    r = cluster.http.post("/v1/jobs", params={"wait": 0.5}, json={"wat": W.sleep(3)})
    elapsed = time.monotonic() - start
    assert r.status_code == 202, r.text  # the record of a job that has not ended yet
    assert r.headers["location"] == f"/v1/jobs/{r.json()['id']}"
    record = r.json()
    assert record["state"] in ("queued", "running") and record["result"] is None, record
    assert 0.4 <= elapsed < 2.5, elapsed
    assert cluster.wait_state(record["id"])["result"]["status"] == "ok"


def test_get_with_wait_returns_when_the_job_ends(cluster: Cluster) -> None:
    job_id = cluster.submit({"wat": W.sleep(0.5)})
    start = time.monotonic()
    r = cluster.http.get(f"/v1/jobs/{job_id}", params={"wait": 20})
    elapsed = time.monotonic() - start
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "finished" and r.json()["result"]["status"] == "ok", r.text
    assert elapsed < 10, elapsed  # woken by the job's end, not by the wait running out


def test_get_with_wait_gives_the_current_state_when_the_wait_runs_out(cluster: Cluster) -> None:
    job_id = cluster.submit({"wat": W.sleep(3)})
    start = time.monotonic()
    r = cluster.http.get(f"/v1/jobs/{job_id}", params={"wait": 0.5})
    elapsed = time.monotonic() - start
    assert r.status_code == 202, r.text  # still running: the wait ran out
    assert r.json()["state"] in ("queued", "running"), r.text
    assert 0.4 <= elapsed < 2.5, elapsed
    assert cluster.wait_state(job_id)["result"]["status"] == "ok"


def test_stdin_args_env_pass_through(cluster: Cluster) -> None:
    grants = {"args": ["xarg", "two words"], "env": {"GREETING": "hi there"},
              "stdin": b64(b"line from stdin\n")}
    r = cluster.http.post("/v1/jobs", params={"wait": 30},
                          json={"wasm_base64": b64(ENV_ARGS), "grants": grants})
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["state"] == "finished", record
    result = record["result"]
    # env_args exits 7 when argv[1] starts with 'x': the guest's exit code comes back as is.
    assert result["status"] == "nonzero_exit" and result["exit_code"] == 7, result
    lines = stdout_of(record).decode().splitlines()
    assert lines[1:3] == ["ARG xarg", "ARG two words"], lines
    assert [x for x in lines if x.startswith("ENV ")] == ["ENV GREETING=hi there"], lines
    assert lines[-1] == "line from stdin"


def test_file_and_scratch_grants_pass_through(cluster: Cluster) -> None:
    grants = {"files": {"input.txt": b64(b"granted data\n")}, "scratch": {}}
    r = cluster.http.post("/v1/jobs", params={"wait": 30},
                          json={"wasm_base64": b64(FS_ESCAPE), "grants": grants})
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["result"]["status"] == "ok", record
    out = stdout_of(record).decode()
    opened = {ln.split()[2] for ln in out.splitlines() if ln.startswith("OPEN read")}
    assert opened == {"/input.txt", "input.txt"}, out
    assert "data=granted data" in out
    written = {ln.split()[2] for ln in out.splitlines() if ln.startswith("OPEN write")}
    # the scratch grant, nothing else (no links exist, so the fixture's write "through"
    # its link makes a plain file in /tmp)
    assert written == {"/tmp/ok.txt", "/tmp/rel_link"}, out


def test_no_grants_means_no_files(cluster: Cluster) -> None:
    r = cluster.http.post("/v1/jobs", params={"wait": 30}, json={"wasm_base64": b64(FS_ESCAPE)})
    assert r.status_code == 200, r.text
    out = stdout_of(r.json()).decode()
    assert "OPEN " not in out, out


def test_limits_pass_through(cluster: Cluster) -> None:
    cases = [
        ({"wat": W.LOOP, "limits": {"fuel": 100_000}}, "fuel_exhausted"),
        ({"wat": W.LOOP, "limits": {"wall_time_s": "300ms", "fuel": 10**12}}, "wall_timeout"),
        ({"wat": W.flood(1), "limits": {"stdout_bytes": "8KiB"}}, "output_limit"),
        ({"wat": W.UNREACHABLE}, "trap"),
        ({"wat": W.PROC_EXIT.format(code=3)}, "nonzero_exit"),
    ]
    r = cluster.http.post("/v1/jobs/batch", json={"jobs": [c[0] for c in cases]})
    assert r.status_code == 202, r.text
    ids = r.json()["ids"]
    records = [cluster.wait_state(i) for i in ids]
    assert [rec["result"]["status"] for rec in records] == [c[1] for c in cases], records
    assert all(rec["state"] == "finished" for rec in records)
    fuel, wall, output, trap, exited = (rec["result"] for rec in records)
    assert 100_000 - 1000 <= fuel["fuel_used"] <= 100_000, fuel
    assert 0.25 <= wall["wall_time_s"] < 3, wall
    assert output["stdout_truncated"] and len(stdout_of(records[2])) <= 8 * 1024, output
    assert trap["trap_kind"] == "unreachable", trap
    assert exited["exit_code"] == 3, exited


def test_batch_then_get_many_in_the_order_asked(cluster: Cluster) -> None:
    jobs = [{"wat": W.hello(f"job {n}\n")} for n in range(3)]
    r = cluster.http.post("/v1/jobs/batch", json={"jobs": jobs})
    assert r.status_code == 202, r.text
    ids = r.json()["ids"]
    assert len(ids) == 3 and len(set(ids)) == 3
    for job_id in ids:
        cluster.wait_state(job_id)

    unknown = uuid.uuid4().hex
    asked = [ids[2], unknown, ids[0], ids[1], ids[2]]
    r = cluster.http.get("/v1/jobs", params={"ids": ",".join(asked)})
    assert r.status_code == 200, r.text
    got = r.json()["jobs"]
    assert len(got) == len(asked)
    assert got[1] is None  # unknown ids come back as null, in place
    assert [g["id"] if g else None for g in got] == [ids[2], None, ids[0], ids[1], ids[2]]
    assert [stdout_of(g) for g in got if g] == [b"job 2\n", b"job 0\n", b"job 1\n", b"job 2\n"]

    r = cluster.http.get("/v1/jobs", params={"ids": ""})
    assert r.status_code == 200 and r.json() == {"jobs": [], "next_cursor": None}, r.text


def test_the_same_module_is_stored_once(cluster: Cluster) -> None:
    wat = W.hello(f"{uuid.uuid4().hex}\n")  # a module no other test submits
    wasm = bytes(wasmtime.wat2wasm(wat))
    sha = hashlib.sha256(wasm).hexdigest()
    redis = cluster.client
    before = set(redis.scan_iter("warden:module:*"))

    ids = [cluster.submit({"wat": wat}), cluster.submit({"wat": wat}),
           cluster.submit({"wasm_base64": b64(wasm)})]
    after = set(redis.scan_iter("warden:module:*"))
    assert after - before == {f"warden:module:{sha}".encode()}
    assert redis.get(f"warden:module:{sha}") == wasm
    for job_id in ids:
        spec = redis.hget(f"warden:job:{job_id}", "spec")
        assert spec is not None and sha.encode() in spec and wasm not in spec
        assert cluster.wait_state(job_id)["result"]["status"] == "ok"


def test_health_ready_languages_and_docs(cluster: Cluster) -> None:
    r = cluster.http.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    r = cluster.http.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ready" and r.json()["workers"] == 2
    r = cluster.http.get("/v1/languages")
    assert r.status_code == 200 and isinstance(r.json(), list), r.text
    r = cluster.http.get("/openapi.json")
    assert r.status_code == 200, r.text
    paths = r.json()["paths"]
    assert {"/v1/jobs", "/v1/jobs/batch", "/v1/jobs/{job_id}", "/healthz", "/readyz"} <= set(paths)
    r = cluster.http.get("/docs")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert "swagger" in r.text.lower()


def test_many_jobs_and_concurrent_waits(cluster: Cluster) -> None:
    from concurrent.futures import ThreadPoolExecutor

    r = cluster.http.post("/v1/jobs/batch",
                          json={"jobs": [{"wat": W.hello(f"n{n}\n")} for n in range(40)]})
    assert r.status_code == 202, r.text
    batch = r.json()["ids"]

    def submit_and_wait(n: int) -> dict[str, object]:
        r = cluster.http.post("/v1/jobs", params={"wait": 30},
                              json={"wat": W.hello(f"w{n}\n")})
        assert r.status_code == 200, r.text
        body: dict[str, object] = r.json()
        return body

    with ThreadPoolExecutor(12) as pool:
        waited = list(pool.map(submit_and_wait, range(12)))
    assert [stdout_of(rec) for rec in waited] == [f"w{n}\n".encode() for n in range(12)]
    assert all(rec["state"] == "finished" for rec in waited)

    for job_id in batch:
        cluster.wait_state(job_id)
    got = cluster.http.get("/v1/jobs", params={"ids": ",".join(batch)}).json()["jobs"]
    assert [stdout_of(g) for g in got] == [f"n{n}\n".encode() for n in range(40)]
    assert {g["attempts"] for g in got} == {1}
