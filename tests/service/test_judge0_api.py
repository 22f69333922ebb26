"""The Judge0-compatible API through the official `judge0` SDK, unchanged: it
connects (it reads /languages and /config_info, 41 required fields, when constructed), maps
language names for version 1.13.1, and knows every status id Warden answers."""

from __future__ import annotations

import judge0
import pytest
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


HELLO = {
    50: '#include <stdio.h>\nint main(void){int a,b;scanf("%d %d",&a,&b);printf("%d\\n",a+b);}',
    54: '#include <iostream>\nint main(){int a,b;std::cin>>a>>b;std::cout<<a+b<<"\\n";}',
    71: "a, b = map(int, input().split())\nprint(a + b)\n",
    63: "const [a, b] = readline().split(' ').map(Number);\nconsole.log(a + b);\n",
}


@pytest.mark.parametrize("language", sorted(HELLO))
def test_sdk_run(cluster: Cluster, language: int) -> None:
    result = judge0.run(client=_client(cluster), source_code=HELLO[language],
                        language=language, stdin="2 3\n", expected_output="5\n")
    assert result.status == Status.ACCEPTED, (result.status, result.stderr,
                                              result.compile_output)
    assert result.stdout == "5\n"
    assert float(result.time) >= 0 and result.memory > 0
    assert result.created_at is not None and result.finished_at is not None


def test_sdk_wrong_answer_compile_error_and_runtime_error(cluster: Cluster) -> None:
    client = _client(cluster)
    wrong = judge0.run(client=client, source_code="print(6)", language=71,
                       expected_output="5")
    assert wrong.status == Status.WRONG_ANSWER
    broken = judge0.run(client=client, source_code="int main(void) { return x; }",
                        language=50)
    assert broken.status == Status.COMPILATION_ERROR and "x" in broken.compile_output
    crashed = judge0.run(client=client, source_code="raise SystemExit(3)", language=71)
    assert crashed.status == Status.RUNTIME_ERROR_NZEC and crashed.exit_code == 3


def test_sdk_async_run_wait_and_batch(cluster: Cluster) -> None:
    client = _client(cluster)
    pending = judge0.async_run(client=client, source_code="print(42)", language=71)
    done = judge0.wait(client=client, submissions=pending)
    assert done.status == Status.ACCEPTED and done.stdout == "42\n"
    batch = [judge0.Submission(source_code=f"print({i})", language=71) for i in range(3)]
    results = judge0.run(client=client, submissions=batch)
    assert [r.stdout for r in results] == ["0\n", "1\n", "2\n"]


def test_judge0_field_errors(cluster: Cluster) -> None:
    import httpx

    base = f"http://127.0.0.1:{cluster.port}/judge0"
    auth = {"X-Auth-Token": cluster.admin_key}
    r = httpx.post(f"{base}/submissions", headers=auth,
                   json={"source_code": "print(1)", "language_id": 9999})
    assert r.status_code == 422 and "language_id" in r.json()
    r = httpx.post(f"{base}/submissions", headers=auth,
                   json={"source_code": "print(1)", "language_id": 71, "cpu_time_limit": 1e9})
    assert r.status_code == 422 and "cpu_time_limit" in r.json()
    r = httpx.post(f"{base}/submissions", headers=auth,
                   json={"source_code": "print(1)", "language_id": 71,
                         "enable_network": True})
    assert r.status_code == 422 and r.json()["enable_network"]
    r = httpx.post(f"{base}/submissions/batch", headers=auth, json={"submissions": [
        {"source_code": "print(1)", "language_id": 71}] * 21})
    assert r.status_code == 400 and "less than or equal to 20" in r.json()["error"]
    r = httpx.post(f"{base}/submissions", headers=auth, params={"wait": "true"},
                   json={"source_code": "import sys; sys.stdout.buffer.write(b'\\xff')",
                         "language_id": 71})
    # Judge0 answers the token beside the error: the submission exists and ran
    assert r.status_code == 201 and "base64_encoded=true" in r.json()["error"]
    r = httpx.get(f"{base}/submissions/{r.json()['token']}", headers=auth,
                  params={"base64_encoded": "true", "fields": "stdout"})
    assert r.json() == {"stdout": "/w=="}
    r = httpx.get(f"{base}/submissions/not-a-token", headers=auth)
    assert r.status_code == 404


def test_sdk_as_a_tenant_with_default_quotas(cluster: Cluster) -> None:
    """Quotas apply to Judge0 clients, and the SDK's 0.1 s polling stays within the
    default read allowance; another tenant's token is not found."""
    _, http = cluster.new_tenant("j0")
    key = http.headers["Authorization"].split()[1]
    client = judge0.Client(f"http://127.0.0.1:{cluster.port}/judge0", {"X-Auth-Token": key})
    done = judge0.run(client=client, source_code="import time; time.sleep(1); print(1)",
                      language=71)
    assert done.status == Status.ACCEPTED
    import httpx

    r = httpx.get(f"http://127.0.0.1:{cluster.port}/judge0/submissions/{done.token}",
                  headers={"X-Auth-Token": cluster.admin_key})
    assert r.status_code == 404  # the admin's own tenant does not have it


def _zip(files: dict[str, bytes]) -> str:
    import base64
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return base64.b64encode(buffer.getvalue()).decode()


def test_listing_delete_batch_errors_fields_and_additional_files(cluster: Cluster) -> None:
    """GET /submissions pages a tenant's own submissions with Judge0's meta; DELETE
    removes an ended one only; a batch accepts or refuses each submission on its own;
    unknown fields are refused; additional_files (a zip) sit beside the program."""
    import httpx

    client = httpx.Client(timeout=60)  # the module's first Python run loads the interpreter
    _, http = cluster.new_tenant("j0list")
    base = f"http://127.0.0.1:{cluster.port}/judge0"
    auth = {"X-Auth-Token": http.headers["Authorization"].split()[1]}
    r = client.post(f"{base}/submissions/batch", headers=auth, json={"submissions": [
        {"source_code": "print(1)", "language_id": 71},
        {"source_code": "print(2)", "language_id": 9999},
        {"source_code": "print(open('data/in.txt').read())", "language_id": 71,
         "additional_files": _zip({"data/in.txt": b"from the zip"})},
    ]})
    assert r.status_code == 201, r.text
    first, refused, third = r.json()
    assert set(first) == {"token"} and set(third) == {"token"}
    assert "doesn't exist" in refused["language_id"][0]
    tokens = [first["token"], third["token"]]
    for _ in range(2):
        r = client.post(f"{base}/submissions", headers=auth, params={"wait": "true"},
                       json={"source_code": "print(3)", "language_id": 71})
    r = client.post(f"{base}/submissions/batch", headers=auth, json={"submissions": [
        {"language_id": 71}]})
    assert r.status_code == 422 and r.json() == [{"source_code": ["can't be blank"]}]
    r = client.post(f"{base}/submissions/batch", headers=auth, json={"submissions": []})
    assert r.status_code == 400 and "at least one" in r.json()["error"]

    got = client.get(f"{base}/submissions/batch", headers=auth,
                    params={"tokens": ",".join(tokens), "fields": "stdout,status_id"}).json()
    for _ in range(100):
        if all(s["status_id"] > 2 for s in got["submissions"]):
            break
        import time

        time.sleep(0.1)
        got = client.get(f"{base}/submissions/batch", headers=auth,
                        params={"tokens": ",".join(tokens), "fields": "stdout,status_id"}).json()
    assert [s["stdout"] for s in got["submissions"]] == ["1\n", "from the zip\n"]

    page = client.get(f"{base}/submissions", headers=auth, params={"per_page": "3"}).json()
    assert page["meta"] == {"current_page": 1, "next_page": 2, "prev_page": None,
                            "total_pages": 2, "total_count": 4}
    assert len(page["submissions"]) == 3 and set(page["submissions"][0]) == {
        "token", "time", "memory", "stdout", "stderr", "compile_output", "message", "status"}
    last = client.get(f"{base}/submissions", headers=auth,
                     params={"per_page": "3", "page": "2", "fields": "token"}).json()
    assert last["meta"]["prev_page"] == 1 and last["meta"]["next_page"] is None
    assert last["submissions"] == [{"token": first["token"]}]  # the oldest, last
    for params, error in (({"page": "0"}, "invalid page: 0"),
                          ({"per_page": "-1"}, "invalid per_page: -1"),
                          ({"fields": "stdout,bogus"}, "invalid fields: [bogus]")):
        r = client.get(f"{base}/submissions", headers=auth, params=params)
        assert r.status_code == 400 and r.json()["error"].startswith(error)
    everything = client.get(f"{base}/submissions/{third['token']}", headers=auth,
                           params={"fields": "*"}).json()
    assert everything["language"]["id"] == 71 and everything["memory_limit"] > 0

    r = client.delete(f"{base}/submissions/{first['token']}", headers=auth,
                     params={"fields": "stdout,status_id"})
    assert r.status_code == 200 and r.json() == {"stdout": "MQo=", "status_id": 3}
    assert client.get(f"{base}/submissions/{first['token']}", headers=auth).status_code == 404
    assert client.delete(f"{base}/submissions/{first['token']}",
                        headers=auth).status_code == 404
    page = client.get(f"{base}/submissions", headers=auth).json()
    assert page["meta"]["total_count"] == 3
    slow = client.post(f"{base}/submissions", headers=auth, json={
        "source_code": "import time; time.sleep(3)", "language_id": 71}).json()["token"]
    r = client.delete(f"{base}/submissions/{slow}", headers=auth)
    assert r.status_code == 400 and "cannot be deleted because its status is" in r.json()[
        "error"]
    r = client.get(f"{base}/submissions/{slow}", headers=auth)
    assert r.status_code == 200


def _encrypted_zip() -> str:
    import base64

    raw = bytearray(base64.b64decode(_zip({"secret.txt": b"x" * 100})))
    raw[6] |= 1  # the local header's "encrypted" flag
    central = raw.rfind(b"PK\x01\x02")
    raw[central + 8] |= 1  # and the central directory's
    return base64.b64encode(bytes(raw)).decode()


def _corrupt_zip() -> str:
    import base64

    raw = bytearray(base64.b64decode(_zip({"data.txt": b"hello world " * 100})))
    raw[40:60] = b"\xff" * 20  # inside the deflate stream
    return base64.b64encode(bytes(raw)).decode()


def test_non_finite_limits_are_field_errors(cluster: Cluster) -> None:
    import httpx

    r = httpx.post(f"http://127.0.0.1:{cluster.port}/judge0/submissions",
                   headers={"X-Auth-Token": cluster.admin_key, "Content-Type":
                            "application/json"},
                   content='{"source_code": "print(1)", "language_id": 71, '
                           '"cpu_time_limit": NaN, "memory_limit": Infinity}')
    assert r.status_code == 422, r.text
    assert r.json()["cpu_time_limit"] == ["must be a finite number"]
    assert r.json()["memory_limit"] == ["must be a finite number"]


def test_additional_files_refusals(cluster: Cluster) -> None:
    import httpx

    base = f"http://127.0.0.1:{cluster.port}/judge0"
    auth = {"X-Auth-Token": cluster.admin_key}
    for files, expected in (
        ("bm90IGEgemlw", "not a valid base64-encoded zip"),
        (_zip({"../escape.txt": b"x"}), "additional_files"),
        (_zip({"/etc/passwd": b"x"}), "additional_files"),
        (_zip({"big.bin": bytes(11 * 1024 * 1024)}), "larger than 10 MiB"),
        (_zip({f"f{i}": b"" for i in range(300)}), "more than 256 files"),
        (_zip({"a.txt": b"x", "./a.txt": b"y"}), "in the archive twice"),
        (_encrypted_zip(), "encrypted"),
        (_corrupt_zip(), "not a valid base64-encoded zip"),
    ):
        r = httpx.post(f"{base}/submissions", headers=auth, json={
            "source_code": "print(1)", "language_id": 71, "additional_files": files})
        assert r.status_code == 422, (files[:20], r.text)
        assert expected in str(r.json()), r.json()
