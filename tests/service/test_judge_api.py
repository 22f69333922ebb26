"""The judge over HTTP: problems, versions, submissions spread over real workers, verdicts,
tenant isolation and the storage quota (real Redis, real wasmtime)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from judge.kattis import KattisPackage, load_package
from tests.service.cluster import Cluster, assert_problem

KATTIS = Path(__file__).resolve().parents[1] / "fixtures" / "kattis"


def upload(http: httpx.Client, problem_id: str, pkg: KattisPackage) -> dict[str, Any]:
    body = {"problem": pkg.problem.model_dump(mode="json"),
            "blobs": {sha: base64.b64encode(data).decode() for sha, data in pkg.blobs.items()}}
    r = http.put(f"/v1/problems/{problem_id}", json=body)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def judge(http: httpx.Client, problem_id: str, language: str, source: str) -> dict[str, Any]:
    r = http.post(f"/v1/problems/{problem_id}/submissions", params={"wait": 60},
                  json={"language": language, "source": source})
    assert r.status_code == 200, r.text
    return dict(r.json())


def source(pkg: KattisPackage, path: str) -> tuple[str, str]:
    sub = next(s for s in pkg.submissions if s.path == path)
    return sub.language, sub.source


@pytest.fixture(scope="module")
def packages() -> dict[str, KattisPackage]:
    return {name: load_package(KATTIS / name) for name in ("aplusb", "floatdiv", "guess",
                                                           "subtasks")}


def test_pass_fail_problem_verdicts(cluster: Cluster, packages: dict[str, KattisPackage]) -> None:
    pkg = packages["aplusb"]
    record = upload(cluster.http, "aplusb", pkg)
    assert record["version"] >= 1
    ac = judge(cluster.http, "aplusb", *source(pkg, "submissions/accepted/aplusb.c"))
    assert (ac["state"], ac["verdict"], ac["score"]) == ("finished", "AC", 1.0)
    assert ac["problem_version"] == record["version"]
    assert {t["verdict"] for t in ac["tests"]} == {"AC"}
    assert all(t["fuel_used"] > 0 and t["time_s"] is not None for t in ac["tests"])
    wa = judge(cluster.http, "aplusb", *source(pkg, "submissions/wrong_answer/off_by_one.c"))
    assert (wa["verdict"], wa["first_failure"]) == ("WA", "secret/03")
    verdicts = [t["verdict"] for t in wa["tests"]]
    first = verdicts.index("WA")
    assert verdicts[first + 1:] == ["skipped"] * (len(verdicts) - first - 1)  # break
    tle = judge(cluster.http, "aplusb", *source(pkg, "submissions/time_limit_exceeded/spin.c"))
    assert tle["verdict"] == "TLE"
    assert tle["tests"][0]["time_s"] == pytest.approx(1.0)  # fuel time: exactly the limit
    re_ = judge(cluster.http, "aplusb", *source(pkg, "submissions/run_time_error/raises.py"))
    assert re_["verdict"] == "RE"
    ce = judge(cluster.http, "aplusb", "c", "int main() { return missing; }")
    assert ce["verdict"] == "CE" and "missing" in (ce["compile_output"] or "")
    assert {t["verdict"] for t in ce["tests"]} == {"skipped"}


def test_custom_checker_interactive_and_scoring(
        cluster: Cluster, packages: dict[str, KattisPackage]) -> None:
    upload(cluster.http, "floatdiv", packages["floatdiv"])
    ok = judge(cluster.http, "floatdiv", *source(packages["floatdiv"],
                                                 "submissions/accepted/div.py"))
    assert ok["verdict"] == "AC"
    bad = judge(cluster.http, "floatdiv", *source(packages["floatdiv"],
                                                  "submissions/wrong_answer/one_digit.c"))
    assert bad["verdict"] == "WA"
    failed = next(t for t in bad["tests"] if t["verdict"] == "WA")
    assert failed["message"]  # judgemessage.txt from the checker's feedback dir
    upload(cluster.http, "guess", packages["guess"])
    assert judge(cluster.http, "guess", *source(
        packages["guess"], "submissions/accepted/binary.c"))["verdict"] == "AC"
    assert judge(cluster.http, "guess", *source(
        packages["guess"], "submissions/wrong_answer/linear.c"))["verdict"] == "WA"
    upload(cluster.http, "subtasks", packages["subtasks"])
    full = judge(cluster.http, "subtasks", *source(
        packages["subtasks"], "submissions/accepted/formula.c"))
    assert (full["verdict"], full["score"]) == ("AC", 100.0)
    part = judge(cluster.http, "subtasks", *source(
        packages["subtasks"], "submissions/partially_accepted/loop.c"))
    assert part["score"] == 30.0
    groups = {g["name"]: g for g in part["groups"]}
    assert groups["secret/group2"]["verdict"] == "TLE"


def test_versions_listing_and_delete(cluster: Cluster,
                                     packages: dict[str, KattisPackage]) -> None:
    tenant, http = cluster.new_tenant("judge")
    pkg = packages["aplusb"]
    assert upload(http, "p1", pkg)["version"] == 1
    first = judge(http, "p1", *source(pkg, "submissions/accepted/aplusb.py"))
    relaxed = pkg.problem.model_copy(update={"title": "A+B, again"})
    body = {"problem": relaxed.model_dump(mode="json")}  # blobs already stored: by hash
    r = http.put("/v1/problems/p1", json=body)
    assert r.status_code == 200 and r.json()["version"] == 2
    assert http.get("/v1/problems/p1", params={"version": 1}).json()["problem"]["title"] \
        != "A+B, again"
    second = judge(http, "p1", *source(pkg, "submissions/accepted/aplusb.py"))
    for bad_version in (0, -1, 3):
        assert_problem(http.get("/v1/problems/p1", params={"version": bad_version}), 404,
                       "problem-not-found")
    assert (first["problem_version"], second["problem_version"]) == (1, 2)
    listed = http.get("/v1/problems/p1/submissions").json()["submissions"]
    assert [s["id"] for s in listed] == [second["id"], first["id"]]
    assert http.get("/v1/problems").json()["problems"] == ["p1"]
    stored = int(cluster.client.get(f"warden:problem-bytes:{tenant}") or 0)
    assert stored == sum(len(b) for b in pkg.blobs.values())
    assert http.delete("/v1/problems/p1").status_code == 204
    assert int(cluster.client.get(f"warden:problem-bytes:{tenant}") or 0) == 0
    assert_problem(http.get("/v1/problems/p1"), 404, "problem-not-found")


def test_another_tenants_problem_is_not_there(cluster: Cluster,
                                              packages: dict[str, KattisPackage]) -> None:
    _, alice = cluster.new_tenant("alice")
    _, bob = cluster.new_tenant("bob")
    pkg = packages["aplusb"]
    upload(alice, "secret-problem", pkg)
    sub = judge(alice, "secret-problem", *source(pkg, "submissions/accepted/aplusb.py"))
    assert_problem(bob.get("/v1/problems/secret-problem"), 404, "problem-not-found")
    assert_problem(bob.delete("/v1/problems/secret-problem"), 404, "problem-not-found")
    assert_problem(bob.post("/v1/problems/secret-problem/submissions",
                            json={"language": "python", "source": "print(1)"}),
                   404, "problem-not-found")
    assert_problem(bob.get(f"/v1/problems/secret-problem/submissions/{sub['id']}"),
                   404, "submission-not-found")
    assert_problem(bob.get("/v1/problems/secret-problem/submissions"), 404,
                   "problem-not-found")
    # a hash is not a capability: Bob cannot make a problem of Alice's test data
    r = bob.put("/v1/problems/mine", json={"problem": pkg.problem.model_dump(mode="json")})
    assert_problem(r, 422, "missing-blobs")


def test_storage_quota_and_bad_uploads(cluster: Cluster,
                                       packages: dict[str, KattisPackage]) -> None:
    _, small = cluster.new_tenant("small", stored_bytes=64)
    pkg = packages["aplusb"]
    body = {"problem": pkg.problem.model_dump(mode="json"),
            "blobs": {sha: base64.b64encode(data).decode() for sha, data in pkg.blobs.items()}}
    assert_problem(small.put("/v1/problems/big", json=body), 403, "quota/stored_bytes")
    assert_problem(small.get("/v1/problems/big"), 404, "problem-not-found")
    sha = next(iter(pkg.blobs))
    wrong = {**body, "blobs": {sha: base64.b64encode(b"not it").decode()}}
    assert_problem(cluster.http.put("/v1/problems/x", json=wrong), 422, "blob-hash-mismatch")
    r = cluster.http.put("/v1/problems/BAD_ID", json=body)
    assert r.status_code == 422
    stored = cluster.http.post("/v1/blobs", content=b"1 2\n")
    assert stored.status_code == 201 and stored.json()["size"] == 4


def test_cli_import_and_submit(cluster: Cluster, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from service.cli import app

    url = f"http://127.0.0.1:{cluster.port}"
    auth = ["--url", url, "--key", cluster.admin_key]
    runner = CliRunner()
    imported = runner.invoke(app, ["problem", "import", str(KATTIS / "floatdiv"),
                                   "--id", "cli-floatdiv", *auth])
    assert imported.exit_code == 0, imported.output
    assert "problem cli-floatdiv version 1" in imported.output
    assert "cli-floatdiv" in runner.invoke(app, ["problem", "list", *auth]).output
    good = tmp_path / "div.py"
    good.write_text((KATTIS / "floatdiv/submissions/accepted/div.py").read_text())
    judged = runner.invoke(app, ["problem", "submit", "cli-floatdiv", str(good), *auth])
    assert judged.exit_code == 0, judged.output
    assert judged.output.strip().splitlines()[-1].startswith("AC")
    bad = tmp_path / "bad.c"
    bad.write_text((KATTIS / "floatdiv/submissions/wrong_answer/one_digit.c").read_text())
    judged = runner.invoke(app, ["problem", "submit", "cli-floatdiv", str(bad), *auth])
    assert judged.exit_code == 1
    assert judged.output.strip().splitlines()[-1].startswith("WA")
    missing = runner.invoke(app, ["problem", "get", "nope", *auth])
    assert missing.exit_code != 0 and "No such problem" in missing.output
    assert runner.invoke(app, ["problem", "delete", "cli-floatdiv", *auth]).exit_code == 0


def test_submissions_whose_jobs_are_lost_still_end(fresh_cluster: Cluster,
                                                   packages: dict[str, KattisPackage]) -> None:
    """A job the reaper failed for good (its workers kept dying) records no result: the
    submission ends IE all the same, never running for ever. No worker here: the jobs are
    failed by hand, as the reaper's script does."""
    c = fresh_cluster
    c.start_api()
    upload(c.http, "lost", packages["aplusb"])
    r = c.http.post("/v1/problems/lost/submissions", json={"language": "python",
                                                            "source": "print(1)"})
    assert r.status_code == 202
    sid = r.json()["id"]
    redis = c.client
    compile_job = redis.hget(f"warden:sub:{sid}", "compile_job").decode()
    assert c.http.get(f"/v1/problems/lost/submissions/{sid}").json()["state"] == "queued"
    redis.hset(f"warden:job:{compile_job}", mapping={
        "state": "failed", "error": "the worker running this job died 2 time(s)"})
    ended = c.http.get(f"/v1/problems/lost/submissions/{sid}").json()
    assert (ended["state"], ended["verdict"]) == ("failed", "IE")
    assert "died 2 time(s)" in ended["error"]
    # a submission judging its tests, one of whose test jobs is lost
    r = c.http.post("/v1/problems/lost/submissions", json={"language": "python",
                                                            "source": "print(1)"})
    sid = r.json()["id"]
    names = [n for n, _ in packages["aplusb"].problem.cases()]
    redis.hset(f"warden:sub:{sid}", "state", "running")
    for i, name in enumerate(names):
        redis.hset(f"warden:sub:{sid}:jobs", name, f"job{i}")
        redis.hset(f"warden:job:job{i}", mapping={"state": "failed", "error": "lost"})
    judged = c.http.get(f"/v1/problems/lost/submissions/{sid}").json()
    assert (judged["state"], judged["verdict"]) == ("finished", "IE")
    assert judged["tests"][0]["message"] == "lost"


def test_module_submissions(cluster: Cluster, packages: dict[str, KattisPackage]) -> None:
    """A submission may be a module (WAT or base64 wasm): judged like compiled source."""
    from tests import wat_modules as W

    upload(cluster.http, "modules", packages["aplusb"])
    r = cluster.http.post("/v1/problems/modules/submissions", params={"wait": 60},
                          json={"wat": W.hello("3\n")})  # right for sample 1 (1 + 2) only
    assert r.status_code == 200, r.text
    judged = r.json()
    assert judged["tests"][0]["verdict"] == "AC"
    assert (judged["verdict"], judged["first_failure"]) == ("WA", "sample/2")
    r = cluster.http.post("/v1/problems/modules/submissions", params={"wait": 60},
                          json={"wasm_base64": base64.b64encode(b"\0asm junk").decode()})
    assert_problem(r, 422, "invalid-module")
    r = cluster.http.post("/v1/problems/modules/submissions", params={"wait": 60},
                          json={"wat": W.UNREACHABLE})
    assert r.json()["verdict"] == "RE"
