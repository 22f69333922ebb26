"""The typed httpx client (service/client.py) against a real API, Redis and workers."""

from __future__ import annotations

import base64
import time

import httpx
import pytest

from sandboxes.languages.registry import LANGUAGES, Language
from sandboxes.schema import Grants, JobRecord, JobState, JobSubmission, Limits, RunStatus
from sandboxes.settings import Settings
from service.client import Health, Readiness, WardenClient, WardenError, api_url
from tests import wat_modules as W
from tests.service.cluster import PROBLEM_TYPE_BASE, Cluster
from workers.redis_server import free_port


@pytest.fixture
def client(cluster: Cluster) -> WardenClient:
    return WardenClient(f"http://127.0.0.1:{cluster.port}", api_key=cluster.admin_key)


def hello(text: str) -> JobSubmission:
    return JobSubmission(wat=W.hello(text))


def test_submit_returns_the_id_and_get_waits_for_the_end(client: WardenClient) -> None:
    job_id = client.submit(hello("later\n"))
    assert isinstance(job_id, str) and job_id
    record = client.get(job_id, wait_s=20)
    assert isinstance(record, JobRecord)
    assert record.id == job_id and record.state is JobState.FINISHED, record
    assert record.result is not None and record.result.stdout == b"later\n"
    assert client.get(job_id) == record  # no wait: the same, now final, record


def test_submit_and_wait_with_limits_and_grants(client: WardenClient) -> None:
    sub = JobSubmission(wat=W.PROC_EXIT.format(code=7), limits=Limits(fuel=10_000),
                        grants=Grants(stdin=b"ignored"))
    record = client.submit_and_wait(sub, wait_s=20)
    assert record.state is JobState.FINISHED
    assert record.result is not None
    assert record.result.status is RunStatus.NONZERO_EXIT and record.result.exit_code == 7


def test_wait_true_and_run_module(client: WardenClient) -> None:
    record = client.submit_and_wait(hello("inf\n"), wait_s=float("inf"))  # ?wait=true
    assert record.result is not None and record.result.stdout == b"inf\n"
    wasm = client.run_module(W.hello("module\n").encode())
    assert wasm.result is not None and wasm.result.stdout == b"module\n"


def test_batch_and_get_many(client: WardenClient) -> None:
    ids = client.submit_batch([hello(f"batch {i}\n") for i in range(3)])
    assert len(ids) == 3 and len(set(ids)) == 3
    for job_id in ids:
        client.wait(job_id, timeout_s=20)
    records = client.get_many([*ids, "no-such-job"])
    assert [r.id if r else None for r in records] == [*ids, None]
    assert [r.result.stdout if r and r.result else None for r in records[:3]] == [
        f"batch {i}\n".encode() for i in range(3)
    ]


def test_a_bad_job_in_a_batch_queues_none(client: WardenClient) -> None:
    with pytest.raises(WardenError) as err:
        client.submit_batch([hello("fine\n"), JobSubmission(wat=W.WAT_SYNTAX_ERROR)])
    assert err.value.status == 422 and err.value.kind == "invalid-module"


def test_cancel_a_running_job(client: WardenClient) -> None:
    job_id = client.submit(JobSubmission(wat=W.LOOP, limits=Limits(wall_time_s=30)))
    deadline = time.monotonic() + 20
    while client.get(job_id).state is not JobState.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    record = client.cancel(job_id, wait_s=10)
    assert record.state is JobState.CANCELLED, record
    assert record.result is not None and record.result.status is RunStatus.CANCELLED


def test_languages_health_and_ready(client: WardenClient) -> None:
    languages = client.languages()
    assert all(isinstance(lang, Language) for lang in languages)
    assert languages == list(LANGUAGES.values())
    assert client.health() == Health(status="ok")
    assert client.ready() == Readiness(ready=True, workers=2)


def test_an_unknown_job_is_a_404_problem(client: WardenClient) -> None:
    for call in (client.get, client.cancel):
        with pytest.raises(WardenError) as err:
            call("no-such-job")
        e = err.value
        assert e.status == 404
        assert e.type == PROBLEM_TYPE_BASE + "job-not-found" and e.kind == "job-not-found"
        assert e.title == "No such job"
        assert e.detail is not None and "no-such-job" in e.detail
        assert e.problem["status"] == 404
        assert "404 No such job" in str(e)


def test_an_invalid_module_is_a_422_problem(client: WardenClient) -> None:
    with pytest.raises(WardenError) as err:
        client.submit(JobSubmission(wasm_base64=base64.b64encode(b"\0asm\x01\0\0\0x").decode()))
    e = err.value
    assert e.status == 422 and e.type == PROBLEM_TYPE_BASE + "invalid-module"
    assert e.title == "The module is invalid" and e.detail


def test_too_many_ids_is_a_422_problem(client: WardenClient) -> None:
    with pytest.raises(WardenError) as err:
        client.get_many([f"id{i}" for i in range(101)])
    assert err.value.status == 422 and err.value.kind == "too-many-ids"
    assert err.value.detail == "101 ids given; at most 100 per request"


def test_ready_without_workers_and_not_ready_without_redis(fresh_cluster: Cluster) -> None:
    fresh_cluster.start_api()
    with WardenClient(f"http://127.0.0.1:{fresh_cluster.port}",
                      api_key=fresh_cluster.admin_key) as client:
        assert client.ready() == Readiness(ready=True, workers=0)  # jobs wait for workers
        fresh_cluster.redis.kill()
        assert client.ready() == Readiness(ready=False, reason="Redis is not reachable")
        assert client.health().status == "ok"


def test_an_unreachable_api_raises_httpx_transport_errors() -> None:
    with WardenClient(f"http://127.0.0.1:{free_port()}") as client, \
            pytest.raises(httpx.ConnectError):
        client.health()


def test_api_url_from_settings() -> None:
    assert api_url(Settings(host="0.0.0.0", port=8123)) == "http://127.0.0.1:8123"
    assert api_url(Settings(host="::", port=1)) == "http://[::1]:1"
    assert api_url(Settings(host="10.1.2.3", port=80)) == "http://10.1.2.3:80"
