"""A worker that runs locked down (no user namespaces, no capabilities, a read-only root)
says which languages it serves: those compiled or interpreted inside the sandbox. The API
reports them, the worker runs them, and a job in a language it cannot compile ends
``unsupported`` with a clear message."""

from __future__ import annotations

import base64
from pathlib import Path

from tests.service.cluster import Cluster

SANDBOXED = {"c", "cpp", "python", "javascript", "ruby"}
JAILED = {"rust", "go", "zig"}


def _locked_down(data_dir: Path) -> list[str]:
    return ["bwrap", "--ro-bind", "/", "/", "--tmpfs", "/tmp", "--bind", str(data_dir),
            str(data_dir), "--dev", "/dev", "--proc", "/proc", "--unshare-user",
            "--disable-userns", "--cap-drop", "ALL", "--die-with-parent", "--"]


def test_a_locked_down_worker_serves_the_sandboxed_languages(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, lease_s=2)
    try:
        cluster.start_api()
        cluster.start_worker(wrapper=_locked_down(tmp_path))
        cluster.wait_ready(1)
        served = {lang["id"]: lang["served"] for lang in cluster.http.get("/v1/languages").json()}
        assert {lang for lang, ok in served.items() if ok} == SANDBOXED, served
        assert all(served[lang] is False for lang in JAILED), served
        r = cluster.http.post("/v1/jobs", params={"wait": 120}, json={
            "language": "cpp", "source": '#include <iostream>\nint main() { std::cout << '
            '"locked down\\n"; }\n'})
        assert r.status_code == 200, r.text
        assert base64.b64decode(r.json()["result"]["stdout"]) == b"locked down\n", r.json()
        r = cluster.http.post("/v1/jobs", params={"wait": 60}, json={
            "language": "rust", "source": 'fn main() { println!("no"); }\n'})
        result = r.json()["result"]
        assert result["status"] == "unsupported", result
        assert "compile jail unavailable" in result["message"], result
    finally:
        cluster.close()
