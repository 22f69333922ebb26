"""Idempotent submissions (service/idempotency.py): a retry with the same Idempotency-Key
and the same request gets the first request's job back and queues nothing, on every
submitting route (Warden's jobs and batches, judge submissions, Judge0, Piston); another
request under a used key is a 422; keys are per tenant; concurrent retries queue once."""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from judge.kattis import load_package
from tests import wat_modules as W
from tests.service.cluster import Cluster, assert_problem
from tests.service.test_judge_api import upload

KATTIS = Path(__file__).resolve().parents[1] / "fixtures" / "kattis"


def _jobs(http: httpx.Client) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = http.get("/v1/jobs", params={"limit": 100}).json()["jobs"]
    return jobs


def test_a_retry_gets_the_first_job_and_queues_nothing(cluster: Cluster) -> None:
    _, http = cluster.new_tenant("idem")
    body = {"wat": W.hello("once\n")}
    key = {"Idempotency-Key": "order-7f3a"}
    first = http.post("/v1/jobs", json=body, headers=key)
    assert first.status_code == 202, first.text
    job_id = first.json()["id"]
    assert http.get(f"/v1/jobs/{job_id}", params={"wait": 20}).json()["state"] == "finished"
    started = time.monotonic()  # a retry that waits for a job that has ended answers at once
    again = http.post("/v1/jobs", json=body, headers=key, params={"wait": 20})
    assert time.monotonic() - started < 10, "the retry waited for an end already past"
    assert again.status_code == 200, again.text
    assert again.json()["id"] == job_id
    assert base64.b64decode(again.json()["result"]["stdout"]) == b"once\n"
    third = http.post("/v1/jobs", json=body, headers=key)
    assert third.status_code == 202 and third.json() == {"id": job_id, "state": "finished"}
    assert third.headers["Location"] == f"/v1/jobs/{job_id}"
    assert [j["id"] for j in _jobs(http)] == [job_id]  # one job, one charge

    other = http.post("/v1/jobs", json={"wat": W.hello("twice\n")}, headers=key)
    problem = assert_problem(other, 422, "idempotency-key-reused")
    assert "different request" in problem["detail"]
    fresh = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "order-7f3b"})
    assert fresh.status_code == 202 and fresh.json()["id"] != job_id
    plain = http.post("/v1/jobs", json=body)  # no key: a new job every time
    assert plain.status_code == 202 and plain.json()["id"] not in (job_id, fresh.json()["id"])
    assert len(_jobs(http)) == 3


def test_keys_are_per_tenant_and_must_be_visible_ascii(cluster: Cluster) -> None:
    _, alice = cluster.new_tenant("idem-a")
    _, bob = cluster.new_tenant("idem-b")
    key = {"Idempotency-Key": "shared-key"}
    a = alice.post("/v1/jobs", json={"wat": W.HELLO}, headers=key)
    b = bob.post("/v1/jobs", json={"wat": W.HELLO}, headers=key)
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] != b.json()["id"]
    assert bob.get(f"/v1/jobs/{a.json()['id']}").status_code == 404
    for bad in ("", "x" * 256, "with space", "tab\there"):
        r = alice.post("/v1/jobs", json={"wat": W.HELLO}, headers={"Idempotency-Key": bad})
        assert_problem(r, 400, "invalid-idempotency-key")
    assert len(_jobs(alice)) == 1  # nothing refused was queued


def test_concurrent_retries_queue_once(cluster: Cluster) -> None:
    _, http = cluster.new_tenant("idem-race")
    body = {"wat": W.hello("raced\n")}

    def submit(_: int) -> str:
        r = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": "race-1"})
        assert r.status_code == 202, r.text
        job_id: str = r.json()["id"]
        return job_id

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(submit, range(16)))
    assert len(ids) == 1
    assert [j["id"] for j in _jobs(http)] == list(ids)


def test_a_batch_retry_gets_the_same_ids(cluster: Cluster) -> None:
    _, http = cluster.new_tenant("idem-batch")
    body = {"jobs": [{"wat": W.hello(f"b{n}\n")} for n in range(3)]}
    key = {"Idempotency-Key": "batch-1"}
    first = http.post("/v1/jobs/batch", json=body, headers=key)
    again = http.post("/v1/jobs/batch", json=body, headers=key)
    assert first.status_code == again.status_code == 202
    assert first.json()["ids"] == again.json()["ids"] and len(first.json()["ids"]) == 3
    assert len(_jobs(http)) == 3


def test_judge_judge0_and_piston_submissions_are_idempotent(cluster: Cluster) -> None:
    _, http = cluster.new_tenant("idem-compat")
    key = {"Idempotency-Key": "compat-1"}
    upload(http, "sum", load_package(KATTIS / "aplusb"))
    # C, not Python: clang's machine code is in the shared toolchain cache, while the
    # CPython build would be compiled afresh for this module's cluster (tens of seconds)
    source = (KATTIS / "aplusb" / "submissions" / "accepted" / "aplusb.c").read_text()
    judged = [http.post("/v1/problems/sum/submissions", headers=key,
                        json={"language": "c", "source": source}) for _ in range(2)]
    assert [r.status_code for r in judged] == [202, 202], judged[0].text
    assert judged[0].json()["id"] == judged[1].json()["id"]
    listed = http.get("/v1/problems/sum/submissions").json()["submissions"]
    assert len(listed) == 1
    # judged to its end first: its tests' jobs are queued when its compile ends, which
    # would change the job counts below at a moment of its own
    judging = f"/v1/problems/sum/submissions/{judged[0].json()['id']}"
    deadline = time.monotonic() + 180
    while http.get(judging, params={"wait": 20}).status_code != 200:
        assert time.monotonic() < deadline, "the judge submission did not end"

    echo = ('#include <stdio.h>\n'
            'int main(void) { char s[64]; if (scanf("%63s", s) == 1) puts(s); }\n')
    judge0 = {"source_code": echo, "language_id": 50, "stdin": "zero\n"}
    j0 = {"Idempotency-Key": "j0-1"}
    first = http.post("/judge0/submissions", json=judge0, headers=j0)
    assert first.status_code == 201, first.text
    before = len(_jobs(http))
    again = http.post("/judge0/submissions", json=judge0, headers=j0)
    assert again.json()["token"] == first.json()["token"]
    assert len(_jobs(http)) == before  # nothing queued by the retry
    reused = http.post("/judge0/submissions", json={**judge0, "stdin": "other\n"}, headers=j0)
    assert reused.status_code == 422 and "different request" in reused.json()["error"]

    piston = {"language": "c", "version": "*", "stdin": "p\n",
              "files": [{"content": echo.replace("puts(s)", "printf(\"%s%s\\n\", s, s)")}]}
    pi = {"Idempotency-Key": "pi-1"}
    run = http.post("/piston/api/v2/execute", json=piston, headers=pi)
    assert run.status_code == 200, run.text
    assert run.json()["run"]["stdout"] == "pp\n"
    before = len(_jobs(http))
    started = time.monotonic()
    rerun = http.post("/piston/api/v2/execute", json=piston, headers=pi)
    assert time.monotonic() - started < 10, "the retry waited for an end already past"
    assert rerun.status_code == 200 and rerun.json() == run.json()
    assert len(_jobs(http)) == before


def test_a_piston_retry_after_its_wait_ran_out_runs_afresh(tmp_path: Path) -> None:
    """Piston cancels a run its wait gave up on and answers 503 "try again": the key must
    not replay that cancel (a 500 for a day); the retry queues a new run."""
    cluster = Cluster(tmp_path, lease_s=2, max_wait_s=1)
    try:
        cluster.start_api()
        cluster.start_worker()
        cluster.wait_ready(1)
        spin = "int main(void) { volatile unsigned long n = 0; for (;;) n++; }\n"
        body = {"language": "c", "version": "*", "files": [{"content": spin}]}
        key = {"Idempotency-Key": "slow-1"}
        answers = [cluster.http.post("/piston/api/v2/execute", json=body, headers=key)
                   for _ in range(2)]
        assert [r.status_code for r in answers] == [503, 503], [r.text for r in answers]
        assert all("try again" in r.json()["message"] for r in answers)
        assert len(_jobs(cluster.http)) == 2  # the retry ran afresh (and was cut again)
    finally:
        cluster.close()
