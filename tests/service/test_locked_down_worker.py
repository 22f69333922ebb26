"""A worker that runs locked down (no user namespaces, no capabilities, a read-only root,
beside an API locked down the same way, as the Helm chart runs them)
says which languages it serves: those compiled or interpreted inside the sandbox. The API
reports them, the worker runs them, and a job in a language it cannot compile ends
``unsupported`` with a clear message; beside a worker whose jail works, jobs that need the
jail reach that one only (the worker pools)."""

from __future__ import annotations

import base64
import time
from pathlib import Path

from tests.service.cluster import Cluster, assert_problem
from workers.store import job_key

SANDBOXED = {"c", "cpp", "go", "python", "javascript", "ruby"}
JAILED = {"rust", "zig"}


def _locked_down(data_dir: Path) -> list[str]:
    (data_dir / "tmp").mkdir(exist_ok=True)  # the only writable places: the data dir
    return ["bwrap", "--ro-bind", "/", "/", "--bind", str(data_dir), str(data_dir),
            "--dev", "/dev", "--proc", "/proc", "--unshare-user", "--disable-userns",
            "--cap-drop", "ALL", "--die-with-parent", "--setenv", "TMPDIR",
            str(data_dir / "tmp"), "--"]


def _served(cluster: Cluster) -> dict[str, bool | None]:
    return {lang["id"]: lang["served"] for lang in cluster.http.get("/v1/languages").json()}


def test_a_locked_down_worker_serves_the_sandboxed_languages(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, lease_s=2)
    try:
        cluster.start_api(wrapper=_locked_down(tmp_path))  # as the chart runs both
        cluster.start_worker(wrapper=_locked_down(tmp_path))
        cluster.wait_ready(1)
        served = _served(cluster)
        assert {lang for lang, ok in served.items() if ok} == SANDBOXED, served
        assert all(served[lang] is False for lang in JAILED), served
        r = cluster.http.post("/v1/jobs", params={"wait": 120}, json={
            "language": "cpp", "source": '#include <iostream>\nint main() { std::cout << '
            '"locked down\\n"; }\n'})
        assert r.status_code == 200, r.text
        assert base64.b64decode(r.json()["result"]["stdout"]) == b"locked down\n", r.json()
        r = cluster.http.post("/v1/jobs", params={"wait": 120}, json={
            "language": "go", "source": 'package main\n\nimport "fmt"\n\nfunc main() '
            '{ fmt.Println("go locked down") }\n'})
        assert r.status_code == 200, r.text
        assert base64.b64decode(r.json()["result"]["stdout"]) == b"go locked down\n", r.json()
        # refused at submit (no worker up could compile it), not left queued; Judge0's
        # and Piston's APIs say so their way
        r = cluster.http.post("/v1/jobs", json={
            "language": "rust", "source": 'fn main() { println!("no"); }\n'})
        problem = assert_problem(r, 503, "language-unavailable")
        assert "no worker up now can compile rust" in problem["detail"], problem
        assert r.headers["Retry-After"] == "30"
        r = cluster.http.post("/v1/jobs/batch", json={"jobs": [
            {"wat": "(module)"}, {"language": "zig", "source": "pub fn main() void {}"}]})
        assert r.status_code == 503 and "jobs[1]" in r.json()["detail"], r.text
        r = cluster.http.post("/judge0/submissions", json={
            "source_code": "fn main() {}", "language_id": 73})
        assert r.status_code == 503 and "rust" in r.json()["error"], r.text
        r = cluster.http.post("/piston/api/v2/execute", json={
            "language": "rust", "version": "*", "files": [{"content": "fn main() {}"}]})
        assert r.status_code == 503 and "rust" in r.json()["message"], r.text
        jobs = cluster.http.get("/v1/jobs", params={"limit": 100}).json()["jobs"]
        assert len(jobs) == 2, jobs  # the C++ and Go jobs only: nothing refused was queued

        # A worker whose jail works joins: Rust is served now, and every Rust job reaches
        # it (the jail pool), never the idle locked-down worker.
        jail_worker = cluster.start_worker()
        cluster.wait_ready(2)
        deadline = time.monotonic() + 10  # the API reads what workers serve once a second
        while not _served(cluster)["rust"]:
            assert time.monotonic() < deadline, "rust not served with a jail worker up"
            time.sleep(0.2)
        ids = [cluster.submit({"language": "rust",
                               "source": f'fn main() {{ println!("r{i}"); }}\n'})
               for i in range(4)]
        for i, job_id in enumerate(ids):
            record = cluster.wait_state(job_id, timeout_s=120)
            assert record["state"] == "finished", record
            assert base64.b64decode(record["result"]["stdout"]) == f"r{i}\n".encode(), record
            worker = cluster.client.hget(job_key(job_id), "worker")
            assert worker is not None and worker.decode().endswith(f":{jail_worker.pid}")
    finally:
        cluster.close()
