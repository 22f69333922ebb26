"""Judge0's information endpoints, through the official `judge0` SDK unchanged: it
connects (it reads /languages and /config_info, 41 required fields, when constructed), maps
language names for version 1.13.1, and knows every status id Warden answers."""

from __future__ import annotations

import judge0
from judge0.base_types import Status

from tests.service.cluster import Cluster


def _client(cluster: Cluster) -> judge0.Client:
    return judge0.Client(f"http://127.0.0.1:{cluster.port}/judge0",
                         {"X-Auth-Token": cluster.admin_key})


def test_the_sdk_connects_and_reads_everything(cluster: Cluster) -> None:
    client = _client(cluster)
    assert client.version == "1.13.1"
    assert client.config.max_submission_batch_size == 20
    assert not client.config.enable_network and client.config.number_of_runs == 1
    ids = {lang.id for lang in client.languages}
    assert {50, 54, 60, 63, 71, 72, 73} <= ids
    js = client.get_language(63)
    assert "QuickJS" in js.name and "Node" not in js.name
    assert client.get_language(71).source_file == "main.py"
    statuses = client.get_statuses()
    assert [s["id"] for s in statuses] == [int(s) for s in Status]
    assert client.get_about()["version"] == "1.13.1"


def test_judge0_errors_have_judge0s_shape(cluster: Cluster) -> None:
    base = f"http://127.0.0.1:{cluster.port}/judge0"
    import httpx

    r = httpx.get(f"{base}/languages")
    assert r.status_code == 401 and "X-Auth-Token" in r.json()["error"]
    r = httpx.get(f"{base}/languages", headers={"X-Auth-Token": "wdn_nope_nope"})
    assert r.status_code == 401 and set(r.json()) == {"error"}
    r = httpx.get(f"{base}/languages/9999", headers={"X-Auth-Token": cluster.admin_key})
    assert r.status_code == 404 and "9999" in r.json()["error"]
    r = httpx.get(f"{base}/workers", headers={"X-Auth-Token": cluster.admin_key})
    assert r.status_code == 200 and r.json()[0]["available"] >= 1
    r = httpx.get(f"{base}/system_info", headers={"X-Auth-Token": cluster.admin_key})
    assert "wasmtime" in r.json()["Sandbox"]
