"""API fuzzing with Schemathesis v4 (all checks, its examples, coverage, fuzzing and
stateful phases) against the running service, as a tenant and as an admin: no server
error, no response outside its documented schema. Then a cross-tenant sweep: every job,
problem and submission the fuzzing made as tenant A is read as tenant B, which must get
404 each time. The Judge0 and Piston surfaces and the dashboard are not in the OpenAPI
document (their shapes are theirs): they are fuzzed through a document made for the
fuzzer (tests/reliability/compat_schema.py), signed in, for no server error."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from judge.kattis import load_package
from tests import wat_modules as W
from tests.reliability.compat_schema import compat_document
from tests.service.cluster import Cluster
from tests.service.test_judge_api import upload

CONFIG = Path(__file__).with_name("schemathesis.toml")
KATTIS = Path(__file__).resolve().parents[1] / "fixtures" / "kattis"
# per operation and phase (~2,000 requests a run). One worker: under several, CPython
# 3.11 ast.parse (Hypothesis describing a filter) hit "AST constructor recursion depth
# mismatch" once, a runtime error of the fuzzer, not of Warden.
EXAMPLES = 8


def _fuzz(cluster: Cluster, key: str, report_dir: Path, schema: str | None = None,
          checks: str = "all", phases: str = "examples,coverage,fuzzing,stateful",
          headers: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """``schema``: a document's file (default: the service's /openapi.json)."""
    st = shutil.which("st")
    if st is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[dev]'")
    base = f"http://127.0.0.1:{cluster.port}"
    where = [schema, "--url", base] if schema else [f"{base}/openapi.json"]
    extra = [arg for header in headers for arg in ("-H", header)]
    return subprocess.run(
        [st, "--config-file", str(CONFIG), "--no-color", "run", *where, "--checks", checks,
         "--phases", phases, "--max-examples", str(EXAMPLES),
         "--seed", "20261204", "--workers", "1", "-H", f"Authorization: Bearer {key}", *extra,
         "--report", "junit", "--report-dir", str(report_dir)],
        capture_output=True, text=True, timeout=900, check=False)


def _passed(done: subprocess.CompletedProcess[str], who: str) -> None:
    summary = done.stdout[done.stdout.rfind("SUMMARY"):]
    assert done.returncode == 0, f"as {who}:\n{done.stdout[-6000:]}{done.stderr[-2000:]}"
    assert "generated" in summary, summary  # it did run its test cases


def _two_tenants(tmp_path: Path) -> tuple[Cluster, str, httpx.Client, httpx.Client]:
    """A running Warden (API and one worker) with tenants A (id, client) and B (client)."""
    cluster = Cluster(tmp_path / "service", lease_s=2)
    try:
        cluster.start_api()
        cluster.start_worker()
        cluster.wait_ready(1)
        a_id, a = cluster.new_tenant("fuzz-a")
        _, b = cluster.new_tenant("fuzz-b")
    except BaseException:
        cluster.close()
        raise
    return cluster, a_id, a, b


def _jobs_of(cluster: Cluster, tenant: str) -> list[str]:
    """The ids of every job of ``tenant``, read from Redis directly (not through the API
    whose isolation is under test)."""
    client = cluster.client
    return [k.decode().rsplit(":", 1)[1] for k in client.scan_iter("warden:job:*")
            if client.hget(k, "tenant") == tenant.encode()]


def test_no_server_error_no_schema_violation_no_cross_tenant_read(tmp_path: Path) -> None:
    cluster, a_id, a, b = _two_tenants(tmp_path)
    try:
        a_key = a.headers["Authorization"].removeprefix("Bearer ")
        # Tenant A's own resources before the fuzzing (random bodies rarely make valid
        # wasm): jobs and a problem with a submission, for the sweep below.
        for n in range(3):
            assert a.post("/v1/jobs", json={"wat": W.hello(f"a{n}\n")}).status_code == 202
        upload(a, "a-sum", load_package(KATTIS / "aplusb"))
        r = a.post("/v1/problems/a-sum/submissions",
                   json={"language": "python", "source": "print(sum(map(int, input().split())))"})
        assert r.status_code == 202, r.text
        submission = r.json()["id"]
        for name, key in (("tenant", a_key), ("admin", cluster.admin_key)):
            _passed(_fuzz(cluster, key, tmp_path / f"report-{name}"), name)

        jobs = _jobs_of(cluster, a_id)
        problems = a.get("/v1/problems").json()["problems"]
        assert jobs, "the fuzzing as tenant A made no job: the sweep would prove nothing"
        reads = 0
        for job_id in jobs:
            assert b.get(f"/v1/jobs/{job_id}").status_code == 404, job_id
            assert b.delete(f"/v1/jobs/{job_id}").status_code == 404, job_id
            reads += 2
        for problem_id in problems:
            assert b.get(f"/v1/problems/{problem_id}").status_code == 404, problem_id
            assert b.get(f"/v1/problems/{problem_id}/submissions").status_code == 404
            reads += 2
        assert b.get(f"/v1/problems/a-sum/submissions/{submission}").status_code == 404
        assert b.get(f"/judge0/submissions/{jobs[0]}").status_code == 404
        reads += 2
        assert b.get("/v1/jobs", params={"limit": 100}).json()["jobs"] == []
        assert b.get("/v1/problems").json()["problems"] == []
        print(f"cross-tenant sweep: {len(jobs)} jobs, {len(problems)} problems, {reads} "
              "reads as another tenant, all 404")
    finally:
        cluster.close()


def test_the_judge0_piston_and_dashboard_surfaces_answer_no_server_error(
        tmp_path: Path) -> None:
    cluster, a_id, a, b = _two_tenants(tmp_path)
    try:
        a_key = a.headers["Authorization"].removeprefix("Bearer ")
        # Signed in to the dashboard as tenant A, and the sign-in form's token for its nonce
        page = httpx.get(f"http://127.0.0.1:{cluster.port}/dashboard/login")
        login_csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert login_csrf is not None, page.text
        nonce = page.cookies["warden_login"]
        signed_in = httpx.post(f"http://127.0.0.1:{cluster.port}/dashboard/login",
                               data={"key": a_key, "csrf": login_csrf.group(1)},
                               cookies={"warden_login": nonce})
        assert signed_in.status_code == 303, signed_in.text
        session = signed_in.cookies["warden_session"]
        schema = tmp_path / "compat.json"
        schema.write_text(json.dumps(compat_document(login_csrf.group(1))))
        done = _fuzz(cluster, a_key, tmp_path / "report-compat", schema=str(schema),
                     checks="not_a_server_error", phases="examples,coverage,fuzzing",
                     headers=(f"X-Auth-Token: {a_key}",
                              f"Cookie: warden_login={nonce}; warden_session={session}"))
        _passed(done, "tenant on Judge0, Piston and the dashboard")
        operations = re.search(r"(\d+) selected", done.stdout)
        assert operations is not None and int(operations.group(1)) >= 20, done.stdout[-3000:]

        jobs = _jobs_of(cluster, a_id)
        assert jobs, "the fuzzing as tenant A made no job: the sweep would prove nothing"
        for job_id in jobs:
            assert b.get(f"/judge0/submissions/{job_id}").status_code == 404, job_id
            assert b.get(f"/v1/jobs/{job_id}").status_code == 404, job_id
        tokens = ",".join(jobs[:20])
        batch = b.get("/judge0/submissions/batch", params={"tokens": tokens})
        assert batch.status_code in (200, 404), batch.text
        assert all(s is None for s in batch.json().get("submissions", [])), batch.text
        cases = re.search(r"(\d+) generated", done.stdout)
        print(f"compat fuzzing: {operations.group(1)} operations, "
              f"{cases.group(1) if cases else '?'} test cases, 0 server errors; {len(jobs)} "
              "jobs of tenant A read as tenant B through Judge0 and Warden, all 404")
    finally:
        cluster.close()
