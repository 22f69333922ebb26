"""Callbacks, against real receivers on loopback addresses: 127.0.0.2 is allowed by the
test cluster's WARDEN_CALLBACK_ALLOWED_NETWORKS (it stands for a public receiver), and a
trap on 127.0.0.1 must never be reached, whatever the URL, a name or a redirect says."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandboxes.settings import Settings, parse_networks
from service.callbacks import deliver
from service.callbacks.dispatcher import next_state
from service.callbacks.targets import (
    CallbackRefusedError,
    Target,
    address_refusal,
    parse_url,
    resolve_checked,
)
from tests import wat_modules as W
from tests.service.cluster import Cluster, assert_problem, unix
from tests.service.receiver import Receiver


@pytest.fixture(scope="module")
def trap() -> Iterator[Receiver]:
    receiver = Receiver("127.0.0.1").start()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def receiver(trap: Receiver) -> Iterator[Receiver]:
    receiver = Receiver("127.0.0.2", redirect_to=trap.url("/stolen")).start()
    yield receiver
    receiver.close()


def _ended_callback(cluster: Cluster, job_id: str, timeout_s: float = 20) -> dict[str, Any]:
    """The job's callback once it is no longer pending."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        callback = cluster.get(job_id)["callback"]
        if callback is not None and callback["state"] != "pending":
            return dict(callback)
        time.sleep(0.05)
    raise AssertionError(f"the callback of {job_id} is still pending: {callback}")


def test_an_allowed_callback_arrives_once_with_the_record(
        cluster: Cluster, receiver: Receiver) -> None:
    r = cluster.http.post("/v1/jobs", json={"wat": W.hello("called back\n"),
                                            "callback_url": receiver.url("/ok?job=1")})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    (got,) = receiver.wait_for(1, "/ok?job=1")
    assert got.method == "POST" and got.headers["Content-Type"] == "application/json"
    assert got.headers["Host"] == f"127.0.0.2:{receiver.port}"
    body = json.loads(got.body)
    assert body["id"] == job_id and body["state"] == "finished"
    assert base64.b64decode(body["result"]["stdout"]) == b"called back\n"
    assert "callback" not in body
    callback = _ended_callback(cluster, job_id)
    assert callback["state"] == "delivered" and callback["url"] == receiver.url("/ok?job=1")
    (attempt,) = callback["attempts"]
    assert attempt["outcome"] == "delivered" and attempt["status_code"] == 200
    assert attempt["address"] == "127.0.0.2"
    time.sleep(1)  # a second delivery would have come by now (the poll is 0.2 s)
    assert len([x for x in receiver.received if x.path == "/ok?job=1"]) == 1


def test_refused_destinations_are_recorded_and_never_reached(
        cluster: Cluster, receiver: Receiver, trap: Receiver) -> None:
    urls = {
        trap.url("/direct"): "127.0.0.1 is not a public address",
        "http://10.0.0.7/internal": "10.0.0.7 is not a public address",
        "http://169.254.169.254/latest/meta-data/": "169.254.169.254 is not a public",
        f"http://localhost:{trap.port}/by-name": "localhost resolves to an address that",
        f"http://[::ffff:127.0.0.1]:{trap.port}/mapped": "not a public address",
        receiver.url("/redirect"): "redirects are not followed",
    }
    jobs = cluster.http.post("/v1/jobs/batch", json={"jobs": [
        {"wat": W.HELLO, "callback_url": url} for url in urls]})
    assert jobs.status_code == 202, jobs.text
    for job_id, (url, why) in zip(jobs.json()["ids"], urls.items(), strict=True):
        callback = _ended_callback(cluster, job_id)
        assert callback["state"] == "refused", (url, callback)
        (attempt,) = callback["attempts"]
        assert attempt["outcome"] == "refused" and why in attempt["detail"], (url, attempt)
    assert receiver.wait_for(1, "/redirect")
    assert trap.received == []


def test_a_failing_receiver_is_retried_with_backoff_a_bounded_number_of_times(
        cluster: Cluster, receiver: Receiver) -> None:
    flaky = cluster.submit({"wat": W.HELLO, "callback_url": receiver.url("/flaky")})
    down = cluster.submit({"wat": W.HELLO, "callback_url": receiver.url("/down")})
    callback = _ended_callback(cluster, flaky)
    assert callback["state"] == "delivered"
    first, second = callback["attempts"]
    assert first["outcome"] == "failed" and first["status_code"] == 503
    assert second["outcome"] == "delivered"
    assert unix(second["at"]) - unix(first["at"]) >= 0.45  # WARDEN_CALLBACK_BACKOFF_S=0.5 here
    callback = _ended_callback(cluster, down)
    assert callback["state"] == "failed"
    assert [a["status_code"] for a in callback["attempts"]] == [503, 503, 503]  # 3 attempts
    one, two, three = (unix(a["at"]) for a in callback["attempts"])
    assert three - two >= 4 * (two - one) * 0.9 - 0.3  # the wait grows 4 times


def test_a_cancelled_job_calls_back_too(cluster: Cluster, receiver: Receiver) -> None:
    job_id = cluster.submit({"wat": W.sleep(30), "callback_url": receiver.url("/ok?c=1")})
    cluster.wait_state(job_id, "running")
    assert cluster.http.delete(f"/v1/jobs/{job_id}").status_code in (200, 202)
    (got,) = receiver.wait_for(1, "/ok?c=1")
    assert json.loads(got.body)["state"] == "cancelled"


def test_the_cli_submits_with_a_callback(cluster: Cluster, receiver: Receiver,
                                         tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from service.cli import app

    module = tmp_path / "hello.wat"
    module.write_text(W.hello("from the cli\n"))
    done = CliRunner().invoke(app, [
        "submit", str(module), "--callback-url", receiver.url("/ok?cli=1"), "--json",
        "--url", f"http://127.0.0.1:{cluster.port}", "--key", cluster.admin_key])
    assert done.exit_code == 0, done.output
    (got,) = receiver.wait_for(1, "/ok?cli=1")
    assert base64.b64decode(json.loads(got.body)["result"]["stdout"]) == b"from the cli\n"


def test_callback_urls_refused_at_submit(cluster: Cluster) -> None:
    for url in ("ftp://example.com/x", "http://user:secret@example.com/", "http:///path",
                "http://" + "a" * 2100 + ".com/"):
        r = cluster.http.post("/v1/jobs", json={"wat": W.HELLO, "callback_url": url})
        assert r.status_code == 422, (url, r.text)
    r = cluster.http.post("/v1/jobs", json={"wat": W.HELLO, "callback_url": "gopher://x/"})
    assert "http:// or https://" in assert_problem(r, 422, "invalid-callback-url")["detail"]
    r = cluster.http.post("/judge0/submissions", json={
        "source_code": "print(1)", "language_id": 71, "callback_url": "file:///etc/passwd"})
    assert r.status_code == 422 and "http:// or https://" in r.json()["callback_url"][0]


def test_judge0_callback_is_a_put_of_judge0s_submission(
        cluster: Cluster, receiver: Receiver) -> None:
    token = httpx.post(f"http://127.0.0.1:{cluster.port}/judge0/submissions",
                       headers={"X-Auth-Token": cluster.admin_key},
                       json={"source_code": "print(42)", "language_id": 71,
                             "callback_url": receiver.url("/ok?judge0=1")}).json()["token"]
    (got,) = receiver.wait_for(1, "/ok?judge0=1", timeout_s=60)
    assert got.method == "PUT"
    body = json.loads(got.body)
    assert body["token"] == token and body["status"] == {"id": 3, "description": "Accepted"}
    assert base64.b64decode(body["stdout"]) == b"42\n"  # base64, as Judge0 sends it
    assert set(body) == {"token", "time", "memory", "stdout", "stderr", "compile_output",
                         "message", "status"}


# -- the address policy itself (no cluster) --------------------------------------------
@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.5.4", "192.168.1.1", "100.64.0.1",
    "169.254.169.254", "0.0.0.0", "224.0.0.1", "255.255.255.255", "192.0.2.1", "::1",
    "::", "fe80::1", "fd00:ec2::254", "fc00::1", "::ffff:10.0.0.1", "64:ff9b::a00:1",
    "2002:a00:1::1", "ff02::1", "::127.0.0.1", "::ffff:0:7f00:1", "fec0::1",
    "64:ff9b:1::a9fe:a9fe", "2001:db8::1"])
def test_non_public_addresses_are_refused(address: str) -> None:
    assert address_refusal(address, ()) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert address_refusal(address, ()) is None


@pytest.mark.parametrize(("url", "why"), [
    ("http://2130706433/", "dotted-quad"), ("http://0x7f.1/", "dotted-quad"),
    ("http://127.1/", "dotted-quad"), ("http://host:0/", "port 0"),
    ("http://1.1.1.1/\u0001", "control characters"), ("http://a b/", "spaces"),
    ("http://a..b/", "not valid"), ("http://u@host/", "credentials"),
    ("javascript:alert(1)", "http:// or https://"), ("http://[::1/", "not valid"),
])
def test_urls_never_accepted(url: str, why: str) -> None:
    with pytest.raises(CallbackRefusedError, match=why):
        parse_url(url)


def test_hosts_are_kept_as_idna_a_labels() -> None:
    assert parse_url("https://B\u00fccher.DE./hook?x=1").host == "xn--bcher-kva.de"
    assert parse_url("http://[2606:4700::1111]:8080/").port == 8080


def test_allowed_networks_open_exactly_their_addresses() -> None:
    allowed = parse_networks("127.0.0.2/32, fd12::/16")
    assert address_refusal("127.0.0.2", allowed) is None
    assert address_refusal("fd12::5", allowed) is None
    assert address_refusal("127.0.0.3", allowed) is not None
    # an allowed IPv6 range does not open the internal IPv4 written inside it (6to4)
    assert address_refusal("2002:a00:1::1", parse_networks("2000::/3")) is not None
    with pytest.raises(ValueError, match="not a network"):
        parse_networks("10.0.0.0/33")


def test_a_name_is_refused_if_any_of_its_addresses_is() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.1.2.3"]

    target = parse_url("https://mixed.example/hook")
    with pytest.raises(CallbackRefusedError, match=r"mixed\.example resolves to an address "
                                                   r"that is not a public") as refused:
        asyncio.run(resolve_checked(target, (), resolver, 1.0))
    assert "10.1.2.3" not in str(refused.value)  # tenants read it: no internal addresses
    assert isinstance(target, Target) and target.port == 443


def test_the_connection_goes_to_the_address_that_was_checked(
        receiver: Receiver, trap: Receiver) -> None:
    """DNS rebinding: a name that resolves to an allowed address when checked and to a
    forbidden one afterwards. The name is resolved once, and that address is used."""
    calls: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.2"] if len(calls) == 1 else ["127.0.0.1"]  # rebinds after a look

    url = f"http://rebind.example:{receiver.port}/ok?rebind=1"
    attempt = asyncio.run(deliver.attempt(url, "POST", b"{}", parse_networks("127.0.0.2/32"),
                                          5.0, rebinding))
    assert attempt.outcome == "delivered" and attempt.address == "127.0.0.2"
    assert calls == ["rebind.example"]  # once
    (got,) = receiver.wait_for(1, "/ok?rebind=1")
    assert got.headers["Host"] == f"rebind.example:{receiver.port}"
    assert trap.received == []


def test_an_unresolvable_name_fails_and_is_retried() -> None:
    async def nothing(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    attempt = asyncio.run(deliver.attempt("http://nowhere.invalid/", "POST", b"{}", (), 1.0,
                                          nothing))
    assert attempt.outcome == "failed" and "did not resolve" in (attempt.detail or "")
    settings = Settings(callback_backoff_s=2, callback_max_attempts=3)
    assert next_state(attempt, 1, settings, 100.0) == ("pending", 102.0)
    assert next_state(attempt, 2, settings, 100.0) == ("pending", 108.0)
    assert next_state(attempt, 3, settings, 100.0) == ("failed", None)
