"""The Piston v2-compatible API, with the request shapes Piston's documentation and its
common clients send (docs/api-v2.md: runtimes, execute with files, stdin, args, timeouts
and memory limits), answered in Piston's shapes (run/compile stages, {"message"} errors)."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.service.cluster import Cluster


def _piston(cluster: Cluster, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": key or cluster.admin_key}  # a bare key, or "Bearer <key>"
    return httpx.Client(base_url=f"http://127.0.0.1:{cluster.port}/piston/api/v2",
                        headers=headers, timeout=120)


def _version(cluster: Cluster, language: str) -> str:
    runtimes = _piston(cluster).get("/runtimes").json()
    return str(next(r["version"] for r in runtimes if r["language"] == language))


def test_runtimes(cluster: Cluster) -> None:
    runtimes = _piston(cluster).get("/runtimes").json()
    by_name = {r["language"]: r for r in runtimes}
    assert {"c", "c++", "python", "javascript", "ruby", "go", "rust", "zig"} <= set(by_name)
    assert "py" in by_name["python"]["aliases"] and by_name["python"]["version"][0] == "3"
    assert by_name["javascript"]["runtime"] == "quickjs"  # not Node: says what runs
    assert all(set(r) <= {"language", "version", "aliases", "runtime"} for r in runtimes)


def test_the_documented_execute_request(cluster: Cluster) -> None:
    """docs/api-v2.md's example, with Warden's JavaScript version."""
    body = {"language": "js", "version": _version(cluster, "javascript"),
            "files": [{"name": "my_cool_code.js",
                       "content": "console.log(JSON.stringify(scriptArgs.slice(1)))"}],
            "stdin": "", "args": ["1", "2", "3"], "compile_timeout": 10000,
            "run_timeout": 3000, "compile_memory_limit": -1, "run_memory_limit": -1}
    r = _piston(cluster).post("/execute", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["language"] == "javascript" and "compile" not in answer
    run = answer["run"]
    assert run["stdout"] == '["1","2","3"]\n' and run["output"] == run["stdout"]
    assert run["code"] == 0 and run["signal"] is None and run["stderr"] == ""


def test_python_with_stdin_extra_files_and_version_wildcards(cluster: Cluster) -> None:
    source = ("import sys\nprint(sys.stdin.read().strip(), open('data.bin','rb').read(),"
              " open('more/hex.txt').read())\n")
    r = _piston(cluster).post("/execute", json={
        "language": "python3", "version": "3.x", "stdin": "from stdin\n",
        "files": [{"name": "main.py", "content": source},
                  {"name": "data.bin", "content": base64.b64encode(b"\x00\x01").decode(),
                   "encoding": "base64"},
                  {"name": "more/hex.txt", "content": b"hex!".hex(), "encoding": "hex"}]})
    assert r.status_code == 200, r.text
    assert r.json()["run"]["stdout"] == "from stdin b'\\x00\\x01' hex!\n"


def test_c_compile_stage_and_compile_error(cluster: Cluster) -> None:
    piston = _piston(cluster)
    ok = piston.post("/execute", json={"language": "c", "version": "*", "files": [
        {"content": '#include <stdio.h>\nint main(void){puts("hi");return 0;}'}]}).json()
    assert ok["compile"]["code"] == 0 and ok["run"]["stdout"] == "hi\n"
    broken = piston.post("/execute", json={"language": "gcc", "version": "*", "files": [
        {"content": "int main(void) { return missing; }"}]}).json()
    assert broken["compile"]["code"] == 1 and "missing" in broken["compile"]["stderr"]
    assert broken["run"] == broken["compile"]  # Piston's stand-in when run did not start


def _run(cluster: Cluster, source: str, **extra: Any) -> dict[str, Any]:
    r = _piston(cluster).post("/execute", json={
        "language": "python", "version": "*", "files": [{"content": source}], **extra})
    assert r.status_code == 200, r.text
    return dict(r.json()["run"])


def test_exit_codes_timeouts_and_stderr(cluster: Cluster) -> None:
    failed = _run(cluster, "import sys\nprint('out')\nprint('err', file=sys.stderr)\n"
                           "sys.exit(3)")
    assert failed["code"] == 3 and failed["signal"] is None and failed["status"] == "RE"
    assert failed["stdout"] == "out\n" and failed["stderr"] == "err\n"
    assert failed["output"] == "out\nerr\n"
    spun = _run(cluster, "while True: pass", run_cpu_time=200, run_timeout=5000)
    assert spun["code"] is None and spun["signal"] == "SIGKILL" and spun["status"] == "TO"
    assert spun["cpu_time"] >= 150


@pytest.mark.parametrize(("body", "message"), [
    ({"version": "*", "files": [{"content": "x"}]}, "language is required as a string"),
    ({"language": "python", "files": [{"content": "x"}]}, "version is required as a string"),
    ({"language": "python", "version": "*"}, "files is required as an array"),
    ({"language": "python", "version": "*", "files": [{"name": "a"}]},
     "files[0].content is required as a string"),
    ({"language": "python", "version": "1.0.0", "files": [{"content": "x"}]},
     "python-1.0.0 runtime is unknown"),
    ({"language": "cobol", "version": "*", "files": [{"content": "x"}]},
     "cobol-* runtime is unknown"),
    ({"language": "python", "version": "*",
      "files": [{"content": "eA==", "encoding": "base64"}]},
     "files must include at least one utf8 encoded file"),
    ({"language": "python", "version": "*", "files": [{"content": "x"}],
      "run_timeout": 10_000_000}, "run_timeout cannot exceed the configured limit of"),
    ({"language": "python", "version": "*", "files": [{"content": "x"}],
      "run_timeout": "3000"}, "If specified, run_timeout must be a number"),
    ({"language": "python", "version": "*", "files": [{"content": "x"}],
      "run_memory_limit": -5}, "run_memory_limit must be non-negative"),
])
def test_piston_errors(cluster: Cluster, body: dict[str, Any], message: str) -> None:
    r = _piston(cluster).post("/execute", json=body)
    assert r.status_code == 400 and r.json()["message"].startswith(message), r.text


@pytest.mark.parametrize(("content", "message"), [
    ('{"language": "python", "version": "*", "files": [{"content": "x"}], '
     '"run_cpu_time": NaN}', "the request body is not valid JSON: NaN"),
    ('{"run_timeout": 1' + "0" * 5000 + "}", "the request body is not valid JSON"),
    ("[" * 100_000, "the request body is not valid JSON"),
    ('{"language": "python", "version": "*", "files": [{"name": "a", "content": "x"}, '
     '{"name": "b", "content": "1"}, {"name": "./b", "content": "2"}]}', "files[2].name"),
])
def test_bodies_piston_would_refuse(cluster: Cluster, content: str, message: str) -> None:
    r = _piston(cluster).post("/execute", content=content,
                              headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["message"].startswith(message), r.text


def test_auth_and_media_type(cluster: Cluster) -> None:
    base = f"http://127.0.0.1:{cluster.port}/piston/api/v2"
    r = httpx.get(f"{base}/runtimes")
    assert r.status_code == 401 and "Authorization" in r.json()["message"]
    r = httpx.post(f"{base}/execute", content="{}", headers={
        "Authorization": f"Bearer {cluster.admin_key}", "Content-Type": "text/plain"})
    assert r.status_code == 415
    assert r.json() == {"message": "requests must be of type application/json"}
