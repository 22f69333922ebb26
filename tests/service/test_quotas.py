"""Tenant quotas are exact under concurrency, across API processes (issue 12).

Each test sends 100 concurrent requests, half to each of two API processes, and counts
exactly N admitted. Rates are set to refill about once a minute, so nothing refills within
a test and the count is deterministic.
"""

from __future__ import annotations

import base64
import concurrent.futures
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests import wat_modules as W
from tests.service.cluster import Cluster, assert_problem
from workers.store import job_key

N = 100


@pytest.fixture(scope="module")
def two_apis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, int]]:
    """API + a second API process + one worker."""
    c = Cluster(tmp_path_factory.mktemp("quotas"), lease_s=2)
    try:
        c.start_api()
        other = c.start_another_api()
        c.start_worker()
        c.wait_ready(1)
        yield c, other
    finally:
        c.close()


def _tenant(c: Cluster, other_port: int, **quotas: object
            ) -> tuple[str, httpx.Client, httpx.Client]:
    tenant, client = c.new_tenant("q", **quotas)
    second = httpx.Client(base_url=f"http://127.0.0.1:{other_port}", timeout=60,
                          headers=dict(client.headers))
    return tenant, client, second


def _concurrently(clients: tuple[httpx.Client, httpx.Client],
                  call: Callable[[httpx.Client], httpx.Response]) -> list[httpx.Response]:
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        return list(pool.map(lambda i: call(clients[i % 2]), range(N)))


def _statuses(answers: list[httpx.Response]) -> Counter[int]:
    return Counter(r.status_code for r in answers)


def test_submission_rate_admits_exactly_the_burst(two_apis: tuple[Cluster, int]) -> None:
    c, other = two_apis
    _, a, b = _tenant(c, other, submissions_per_minute=1, submission_burst=30)
    answers = _concurrently((a, b), lambda h: h.post("/v1/jobs", json={"wat": W.HELLO}))
    assert _statuses(answers) == {202: 30, 429: 70}
    refused = next(r for r in answers if r.status_code == 429)
    problem = assert_problem(refused, 429, "quota/submissions_per_minute")
    assert problem["limit"] == 30 and problem["used"] == 30
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Policy"] == '"submissions";q=30;w=1800'
    assert refused.headers["RateLimit"].startswith('"submissions";r=0;t=')
    # A batch is N submissions, refused whole; one larger than the burst can never fit.
    assert_problem(a.post("/v1/jobs/batch", json={"jobs": [{"wat": W.HELLO}] * 31}), 403,
                   "quota/submission_burst")


def test_read_rate_is_separate_and_exact(two_apis: tuple[Cluster, int]) -> None:
    c, other = two_apis
    _, a, b = _tenant(c, other, reads_per_minute=1, read_burst=40)
    answers = _concurrently((a, b), lambda h: h.get("/v1/jobs"))
    assert _statuses(answers) == {200: 40, 429: 60}
    assert_problem(next(r for r in answers if r.status_code == 429), 429,
                   "quota/reads_per_minute")
    # Reads spent; submissions are another bucket.
    ok = a.post("/v1/jobs", json={"wat": W.HELLO})
    assert ok.status_code == 202, ok.text
    assert ok.headers["RateLimit-Policy"].startswith('"submissions";q=100;')


def test_every_authenticated_answer_has_rate_headers(two_apis: tuple[Cluster, int]) -> None:
    c, other = two_apis
    _, a, _ = _tenant(c, other, read_burst=50, reads_per_minute=600)
    for r in (a.get("/v1/jobs"), a.get("/v1/jobs/" + "0" * 32), a.get("/v1/usage"),
              a.post("/v1/jobs", json={"nope": 1})):
        assert r.headers["RateLimit-Policy"], (r.status_code, r.headers)
        assert r.headers["RateLimit"], (r.status_code, r.headers)
    first = a.get("/v1/jobs").headers["RateLimit"]
    second = a.get("/v1/jobs").headers["RateLimit"]
    remaining = [int(h.split("r=")[1].split(";")[0]) for h in (first, second)]
    assert remaining[1] == remaining[0] - 1  # 600/min refills one per 0.1 s at most
    assert "RateLimit" not in c.http_as(None).get("/v1/jobs").headers  # no key: no tenant


def test_max_queued_is_exact(two_apis: tuple[Cluster, int]) -> None:
    c, other = two_apis
    c.stop_workers()  # nothing leaves the queue meanwhile
    try:
        tenant, a, b = _tenant(c, other, max_queued=25)
        answers = _concurrently((a, b), lambda h: h.post("/v1/jobs", json={"wat": W.HELLO}))
        assert _statuses(answers) == {202: 25, 429: 75}
        assert c.client.llen(f"rq:queue:warden.{tenant}") == 25
    finally:
        c.start_worker()
        c.wait_ready(1)


def test_daily_fuel_is_reserved_exactly_then_settled(two_apis: tuple[Cluster, int]) -> None:
    c, other = two_apis
    c.stop_workers()
    today = datetime.now(UTC).date().isoformat()
    fuel_limit = 1_000_000
    body = {"wat": W.HELLO, "limits": {"fuel": fuel_limit}}
    try:
        tenant, a, b = _tenant(c, other, daily_fuel=12 * fuel_limit)
        answers = _concurrently((a, b), lambda h: h.post("/v1/jobs", json=body))
        assert _statuses(answers) == {202: 12, 429: 88}
        problem = assert_problem(next(r for r in answers if r.status_code == 429), 429,
                                 "quota/daily_fuel")
        assert problem["limit"] == 12 * fuel_limit and problem["used"] == 12 * fuel_limit
        assert int(c.client.get(f"warden:fuel:{tenant}:{today}") or 0) == 12 * fuel_limit
        # A queued job that is cancelled gives its reservation back.
        queued = next(r.json()["id"] for r in answers if r.status_code == 202)
        assert a.delete(f"/v1/jobs/{queued}").status_code == 200
        assert int(c.client.get(f"warden:fuel:{tenant}:{today}") or 0) == 11 * fuel_limit
        # More than the whole budget can never fit: 403.
        assert_problem(a.post("/v1/jobs", json={"wat": W.HELLO,
                                                "limits": {"fuel": 13 * fuel_limit}}),
                       403, "quota/daily_fuel")
    finally:
        c.start_worker()
        c.wait_ready(1)
    ids = [r.json()["id"] for r in answers if r.status_code == 202 and r.json()["id"] != queued]
    deadline = time.monotonic() + 60
    while any(a.get(f"/v1/jobs/{i}").json()["state"] == "queued" for i in ids):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    records = [a.get(f"/v1/jobs/{i}", params={"wait": 30}).json() for i in ids]
    used = sum(rec["result"]["fuel_used"] for rec in records)
    assert {rec["state"] for rec in records} == {"finished"}
    # Settled: the day's counter holds what the jobs used, not what they reserved.
    assert int(c.client.get(f"warden:fuel:{tenant}:{today}") or 0) == used
    assert not any(c.client.hexists(job_key(i), "fuel_reserved") for i in ids)


def test_stored_bytes(two_apis: tuple[Cluster, int]) -> None:
    c, other = two_apis
    _, a, _ = _tenant(c, other, stored_bytes=10_000)
    stdin = base64.b64encode(b"x" * 4_000).decode()
    body = {"wat": W.HELLO, "grants": {"stdin": stdin}}
    assert a.post("/v1/jobs", json=body).status_code == 202
    assert a.post("/v1/jobs", json=body).status_code == 202
    problem = assert_problem(a.post("/v1/jobs", json=body), 429, "quota/stored_bytes")
    assert problem["limit"] == 10_000 and problem["used"] >= 8_000
    big = {"wat": W.HELLO, "grants": {"stdin": base64.b64encode(b"x" * 20_000).decode()}}
    assert_problem(a.post("/v1/jobs", json=big), 403, "quota/stored_bytes")


def test_usage_counts_jobs_and_rejections(two_apis: tuple[Cluster, int], tmp_path: Path
                                          ) -> None:
    c, other = two_apis
    tenant, a, _ = _tenant(c, other, submissions_per_minute=1, submission_burst=3)
    done = [a.post("/v1/jobs", json={"wat": W.hello(f"{i}\n")}, params={"wait": 30})
            for i in range(3)]
    assert [r.status_code for r in done] == [200] * 3
    assert a.post("/v1/jobs", json={"wat": W.HELLO}).status_code == 429
    report = a.get("/v1/usage").json()
    assert report["tenant"] == tenant and len(report["days"]) == 30
    total = report["total"]
    assert total["jobs"] == 3 and total["by_status"] == {"ok": 3}
    assert total["by_language"] == {"wasm": 3}
    assert total["fuel"] == sum(r.json()["result"]["fuel_used"] for r in done)
    assert total["output_bytes"] == 6 and total["rejections"] == {"submissions_per_minute": 1}
    assert report["days"][-1]["jobs"] == 3  # today
    # Another tenant cannot read it; the admin can.
    _, stranger, _ = _tenant(c, other)
    assert_problem(stranger.get("/v1/usage", params={"tenant": tenant}), 403, "admin-only")
    assert c.http.get("/v1/usage", params={"tenant": tenant}).json()["total"]["jobs"] == 3
    assert_problem(a.get("/v1/usage", params={"from": "2026-02-02", "to": "2026-01-01"}),
                   422, "invalid-date-range")
    assert_problem(a.get("/v1/usage", params={"to": "0"}), 422, "validation-error")
    assert_problem(a.get("/v1/usage", params={"to": "2026-02-30"}), 422, "validation-error")
    quotas = {u["quota"]: u for u in a.get("/v1/quotas").json()["use"]}
    # the bucket refills 1/60 of a submission per second: a slow (loaded) run sees 2.9x
    assert 2.9 <= quotas["submissions_per_minute"]["used"] <= 3
    assert quotas["max_running"]["used"] == 0
