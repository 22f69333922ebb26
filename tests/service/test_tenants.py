"""Tenants and API keys against a real Warden: nothing runs without a key, every job route
is scoped to the caller's tenant (another tenant's job is a 404 everywhere: OWASP API1),
the admin API needs an admin key, keys rotate and a revoked key or a disabled tenant is
refused by the very next request, per-job ceilings hold, and the CLI drives it all."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
import warnings
from pathlib import Path

import httpx
import pytest

from tenancy.keys import digest, new_key
from tenancy.registry import api_key_key
from tests import wat_modules as W
from tests.service.cluster import ROOT, Cluster, assert_problem
from workers.redis_server import EmbeddedRedis, free_port


def _tenant(cluster: Cluster, **quotas: object) -> tuple[str, httpx.Client]:
    return cluster.new_tenant(**quotas)


def test_nothing_runs_without_a_valid_key(cluster: Cluster) -> None:
    anonymous = cluster.http_as(None)
    problem = assert_problem(anonymous.post("/v1/jobs", json={"wat": W.HELLO}), 401,
                             "unauthenticated")
    assert "Bearer" in problem["detail"]
    r = anonymous.get("/v1/jobs")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), r.text
    assert_problem(anonymous.get("/v1/jobs", headers={"Authorization": "Basic eDp5"}), 401,
                   "unauthenticated")
    assert_problem(cluster.http_as("not-a-key").get("/v1/jobs"), 401, "invalid-key")
    key_id = cluster.admin_key.split("_")[1]
    forged = f"wdn_{key_id}_{'A' * 43}"  # a real key id, a wrong secret
    assert_problem(cluster.http_as(forged).get("/v1/jobs"), 401, "invalid-key")
    for public in ("/healthz", "/readyz", "/v1/languages", "/openapi.json"):
        assert anonymous.get(public).status_code == 200, public


def test_only_a_hash_of_a_key_is_stored(cluster: Cluster) -> None:
    key_id = "_".join(cluster.admin_key.split("_")[:2])
    stored = cluster.client.hgetall(api_key_key(key_id))
    assert stored[b"digest"].decode() == digest(cluster.admin_key)
    assert all(cluster.admin_key.encode() not in v for v in stored.values())


def test_another_tenants_job_is_a_404_on_every_route(cluster: Cluster) -> None:
    _, alice = _tenant(cluster)
    _, bob = _tenant(cluster)
    job = alice.post("/v1/jobs", params={"wait": 30}, json={"wat": W.HELLO}).json()["id"]
    slow = alice.post("/v1/jobs", json={"wat": W.sleep(5)}).json()["id"]
    assert alice.get(f"/v1/jobs/{job}").status_code == 200
    for r in (bob.get(f"/v1/jobs/{job}"), bob.get(f"/v1/jobs/{job}", params={"wait": 1}),
              bob.delete(f"/v1/jobs/{slow}"), bob.delete(f"/v1/jobs/{job}")):
        assert_problem(r, 404, "job-not-found")
    assert bob.get("/v1/jobs", params={"ids": f"{job},{slow}"}).json()["jobs"] == [None, None]
    listed = {j["id"] for j in bob.get("/v1/jobs", params={"limit": 100}).json()["jobs"]}
    assert not listed & {job, slow}
    mine = {j["id"] for j in alice.get("/v1/jobs", params={"limit": 100}).json()["jobs"]}
    assert mine == {job, slow}  # a new tenant lists exactly its own jobs
    assert alice.get(f"/v1/jobs/{slow}").json()["state"] in ("queued", "running")  # untouched
    assert alice.delete(f"/v1/jobs/{slow}").json()["state"] == "cancelled"


def test_the_admin_api_needs_an_admin_key(cluster: Cluster) -> None:
    tenant, alice = _tenant(cluster)
    for method, path in (("GET", "/v1/admin/tenants"), ("POST", "/v1/admin/tenants"),
                         ("GET", f"/v1/admin/tenants/{tenant}"),
                         ("PATCH", f"/v1/admin/tenants/{tenant}"),
                         ("POST", f"/v1/admin/tenants/{tenant}/keys"),
                         ("GET", "/v1/admin/keys"), ("DELETE", "/v1/admin/keys/wdn_000000000000")):
        r = alice.request(method, path, json={} if method in ("POST", "PATCH") else None)
        assert_problem(r, 403, "admin-only")
    assert_problem(alice.post("/v1/keys", json={"admin": True}), 403, "admin-only")
    assert_problem(cluster.http.get("/v1/admin/tenants/nobody"), 404, "tenant-not-found")
    assert_problem(cluster.http.post("/v1/admin/tenants", json={"id": tenant}), 409,
                   "tenant-exists")
    assert_problem(cluster.http.post("/v1/admin/tenants", json={"id": "Bad Id"}), 422,
                   "validation-error")
    surrogate = b'{"id": "surrogate-name", "name": "\\ud800"}'  # valid JSON, not storable
    assert_problem(cluster.http.post("/v1/admin/tenants", content=surrogate,
                                     headers={"content-type": "application/json"}), 422,
                   "validation-error")


def test_keys_rotate_and_a_revoked_key_stops_at_once(cluster: Cluster) -> None:
    tenant, old = _tenant(cluster)
    created = old.post("/v1/keys", json={"name": "rotated"})
    assert created.status_code == 201, created.text
    new = cluster.http_as(created.json()["secret"])
    assert new.get("/v1/jobs").status_code == 200 and old.get("/v1/jobs").status_code == 200
    listed = old.get("/v1/keys").json()["keys"]
    assert len(listed) == 2 and all("secret" not in k for k in listed)
    old_id = next(k["key_id"] for k in listed if k["key_id"] != created.json()["key_id"])
    assert new.delete(f"/v1/keys/{old_id}").json()["revoked_at"]
    problem = assert_problem(old.get("/v1/jobs"), 401, "invalid-key")
    assert "revoked" in problem["detail"]
    assert new.get("/v1/jobs").status_code == 200
    _, other = _tenant(cluster)  # another tenant's key cannot be revoked (nor seen)
    assert_problem(other.delete(f"/v1/keys/{created.json()['key_id']}"), 404, "key-not-found")
    admin_view = cluster.http.get(f"/v1/admin/tenants/{tenant}/keys").json()["keys"]
    assert {k["key_id"] for k in admin_view} == {old_id, created.json()["key_id"]}


def test_a_disabled_tenant_is_refused_at_once_and_can_come_back(cluster: Cluster) -> None:
    tenant, alice = _tenant(cluster)
    r = cluster.http.patch(f"/v1/admin/tenants/{tenant}", json={"disabled": True})
    assert r.status_code == 200 and r.json()["disabled"] is True, r.text
    assert_problem(alice.post("/v1/jobs", json={"wat": W.HELLO}), 403, "tenant-disabled")
    cluster.http.patch(f"/v1/admin/tenants/{tenant}", json={"disabled": False})
    assert alice.post("/v1/jobs", json={"wat": W.HELLO}).status_code == 202


def test_per_job_ceilings(cluster: Cluster) -> None:
    _, alice = _tenant(cluster, ceilings={"fuel": 1_000_000, "languages": ["c"]})
    problem = assert_problem(alice.post("/v1/jobs", json={
        "wat": W.LOOP, "limits": {"fuel": 10_000_000}}), 403, "over-ceiling")
    assert problem["limit"] == "fuel" and problem["ceiling"] == 1_000_000
    # A limit left to its default is lowered to the ceiling: the loop runs out of fuel.
    r = alice.post("/v1/jobs", params={"wait": 30}, json={"wat": W.LOOP})
    assert r.json()["result"]["status"] == "fuel_exhausted", r.text
    assert r.json()["result"]["fuel_used"] <= 1_000_000
    assert_problem(alice.post("/v1/jobs", json={"language": "python", "source": "print(1)"}),
                   403, "language-not-allowed")
    assert_problem(cluster.http.patch(f"/v1/admin/tenants/{_}", json={
        "quotas": {"ceilings": {"fuel": 10**15}}}), 422, "validation-error")


def test_quota_changes_are_partial_and_checked(cluster: Cluster) -> None:
    tenant, _ = _tenant(cluster, max_running=3)
    r = cluster.http.patch(f"/v1/admin/tenants/{tenant}",
                           json={"quotas": {"daily_fuel": 5, "stored_bytes": "1GiB"}})
    quotas = r.json()["quotas"]
    assert (quotas["max_running"], quotas["daily_fuel"], quotas["stored_bytes"]) == (
        3, 5, 1024**3), r.text
    problem = assert_problem(cluster.http.patch(f"/v1/admin/tenants/{tenant}", json={
        "quotas": {"max_running": 0}}), 422, "validation-error")
    assert "max_running" in problem["detail"]


def _warden(*args: str, key: str | None, port: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
    env |= {"PYTHONPATH": str(ROOT), "WARDEN_PORT": str(port),
            "WARDEN_DATA_DIR": "/nonexistent-warden-data"}
    if key:
        env["WARDEN_API_KEY"] = key
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60, check=False)


def test_the_cli_manages_tenants_and_keys(cluster: Cluster) -> None:
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    run = lambda *a, key=cluster.admin_key: _warden(*a, key=key, port=cluster.port)  # noqa: E731
    out = run("tenant", "create", tenant, "max_running=2", "ceilings.languages=c,rust",
              "--name", "CLI tenant")
    assert out.returncode == 0, out.stderr
    assert "max_running = 2" in out.stdout and "ceilings.languages = ['c', 'rust']" in out.stdout
    assert tenant in run("tenant", "list").stdout
    out = run("tenant", "set-quota", tenant, "stored_bytes=2GiB")
    assert f"stored_bytes = {2 * 1024**3}" in out.stdout, out.stderr
    bad = run("tenant", "set-quota", tenant, "max_running=lots")
    assert bad.returncode == 125 and "max_running" in bad.stderr and "Traceback" not in bad.stderr
    created = run("key", "create", tenant, "--name", "ci")
    secret = created.stdout.strip()
    assert created.returncode == 0 and secret.startswith("wdn_"), created.stderr
    assert "not shown again" in created.stderr
    mine = _warden("key", "list", key=secret, port=cluster.port)
    assert mine.returncode == 0 and secret.split("_")[1] in mine.stdout, mine.stderr
    assert secret not in mine.stdout  # ids only
    assert run("tenant", "disable", tenant).returncode == 0
    refused = _warden("job", "list", key=secret, port=cluster.port)
    assert refused.returncode == 125 and "tenant-disabled" in refused.stderr, refused.stderr
    run("tenant", "enable", tenant)
    key_id = "_".join(secret.split("_")[:2])
    assert run("key", "revoke", key_id, "--admin").returncode == 0
    gone = _warden("job", "list", key=secret, port=cluster.port)
    assert gone.returncode == 125 and "revoked" in gone.stderr, gone.stderr
    nokey = _warden("job", "list", key=None, port=cluster.port)
    assert nokey.returncode == 125 and "--key" in nokey.stderr, nokey.stderr


@pytest.mark.parametrize("route", ["/v1/jobs", "/v1/keys"])
def test_a_revoked_admin_key_cannot_even_list(cluster: Cluster, route: str) -> None:
    created = cluster.http.post("/v1/admin/tenants/default/keys",
                                json={"admin": True, "name": "temp"}).json()
    temp = cluster.http_as(created["secret"])
    assert temp.get(route).status_code == 200
    cluster.http.delete(f"/v1/admin/keys/{created['key_id']}")
    assert_problem(temp.get(route), 401, "invalid-key")


def test_a_bootstrap_key_from_a_secret_opens_an_empty_store(tmp_path: Path) -> None:
    """Helm: WARDEN_BOOTSTRAP_ADMIN_KEY (from a Secret) is registered when the API starts on
    a store with no tenant; nothing is printed or written to disk, and a bad value is one
    clear line."""
    secret = new_key().secret
    store = EmbeddedRedis(tmp_path / "redis").start()
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")},
           "WARDEN_REDIS_URL": store.url, "WARDEN_DATA_DIR": str(tmp_path / "data"),
           "WARDEN_PORT": str(port), "WARDEN_BOOTSTRAP_ADMIN_KEY": secret,
           "PYTHONPATH": str(ROOT)}
    api = subprocess.Popen([sys.executable, "-m", "service.cli", "api"], env=env, cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                              headers={"Authorization": f"Bearer {secret}"})
        deadline = time.monotonic() + 30
        while True:
            try:
                r = client.get("/v1/admin/tenants")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.1)
        assert r.status_code == 200, r.text
        assert [t["id"] for t in r.json()["tenants"]] == ["default"]
        assert not (tmp_path / "data" / "api-key").exists()
    finally:
        api.terminate()
        try:
            out, _ = api.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            # Once in a clean-clone CI the API took more than 30 s to stop on SIGTERM (not
            # reproduced in 30 tries, loaded or not). Its shutdown is not this test's subject
            # (tests/service/test_up.py covers stopping): warn, and still check the output.
            api.kill()
            out, _ = api.communicate(timeout=30)
            warnings.warn("warden api took over 30 s to stop on SIGTERM", stacklevel=1)
        store.stop()
    assert secret not in out.decode()
    bad = subprocess.run([sys.executable, "-m", "service.cli", "api"], cwd=ROOT,
                         env={**env, "WARDEN_BOOTSTRAP_ADMIN_KEY": "letmein"},
                         capture_output=True, timeout=60)
    assert bad.returncode != 0
    lines = [ln for ln in bad.stderr.decode().splitlines() if ln.strip()]
    assert len(lines) == 1 and "WARDEN_BOOTSTRAP_ADMIN_KEY" in lines[0], lines
    assert "letmein" not in bad.stderr.decode()
