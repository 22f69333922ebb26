"""The attack corpus (tests/attacks/README.md): every hostile case in ``cases/`` against a
real service, as a tenant sends it. Each must end as expected, leak no host byte, leave the
workers alive and no file behind; the workers' memory stays bounded over the corpus."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from judge.kattis import load_package
from sandboxes.schema import RunStatus
from tests.service.cluster import Cluster
from tests.service.test_judge_api import upload
from workers.health import check

HERE = Path(__file__).parent
CASES = sorted((HERE / "cases").glob("*.toml"))
FIXTURES = HERE.parent / "fixtures"
# Output of a run over this many bytes is not scanned beyond it (outputs are capped anyway).
_SCAN_BYTES = 4 * 1024 * 1024
# Workers' RSS may grow by caches (compiled modules, toolchains loaded on first use); more
# than this over the whole corpus is a leak.
_RSS_GROWTH_BYTES = 600 * 1024 * 1024


class Canaries:
    """Secrets planted on the host; none may appear in anything a case gets back."""

    def __init__(self, root: Path) -> None:
        self.file_secret = "canary-file-" + secrets.token_hex(16)
        self.env_secret = "canary-env-" + secrets.token_hex(16)
        self.env_name = "ATTACK_CANARY_SECRET"
        self.file = root / "host-secret.txt"
        self.file.write_text(self.file_secret + "\n")
        self.file.chmod(0o644)

    def leaked(self, text: str) -> list[str]:
        found = []
        for secret in (self.file_secret, self.env_secret):
            forms = (secret, base64.b64encode(secret.encode()).decode()[:-4], secret[::-1])
            if any(form in text for form in forms):
                found.append(secret)
        return found

    def substitute(self, value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{CANARY_FILE}", str(self.file)).replace(
                "{CANARY_ENV}", self.env_name)
        if isinstance(value, list):
            return [self.substitute(v) for v in value]
        if isinstance(value, dict):
            return {k: self.substitute(v) for k, v in value.items()}
        return value


class Corpus:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.canaries = Canaries(root)
        self.cluster = Cluster(root / "service", lease_s=2, max_body_bytes=8_000_000,
                               warm_languages="true")
        self.tmp = root / "worker-tmp"  # the workers' TMPDIR: must stay empty
        self.tmp.mkdir()
        self.cluster.env[self.canaries.env_name] = self.canaries.env_secret
        self.cluster.env["TMPDIR"] = str(self.tmp)
        self.cluster.start_api()
        health = [root / f"health-{n}.json" for n in range(2)]
        self.workers = [self.cluster.start_worker(env={"WARDEN_WORKER_HEALTH_FILE": str(h)})
                        for h in health]
        self.cluster.wait_ready(2)
        # Memory is measured from when both have loaded every toolchain (warm-up): what
        # grows after that is what the cases cost.
        deadline = time.monotonic() + 300
        while not all(check(h, "ready", 60) is None for h in health):
            assert time.monotonic() < deadline, "the workers did not finish warming up"
            time.sleep(0.5)
        self.rss_start = self.rss()

    def rss(self) -> int:
        total = 0
        for proc in self.workers:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        return total

    def files(self) -> set[str]:
        """Every file the service keeps, but its caches, Redis, logs and key file."""
        data = self.cluster.data_dir
        # "files": components' granted files, a bounded read-only cache by content that host
        # code writes before the guest starts (sandboxes/wasi/workspace.py)
        kept = {"artifacts", "compiled", "redis", "logs", "api-key", "files"}
        # the jail's parent dir is made once; each compile's own dir in it must go
        found = {str(p.relative_to(data)) for p in data.rglob("*")
                 if p.relative_to(data).parts[0] not in kept and p != data / "compile-jobs"}
        return found | {str(p) for p in self.tmp.rglob("*")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    c = Corpus(tmp_path_factory.mktemp("attacks"))
    try:
        yield c
    finally:
        c.cluster.close()


def _decoded(record: dict[str, Any]) -> str:
    """The record as text, with its base64 outputs decoded, for the leak scan."""
    parts = [json.dumps(record)]
    result = record.get("result") or {}
    for field in ("stdout", "stderr"):
        if result.get(field):
            parts.append(base64.b64decode(result[field])[:_SCAN_BYTES].decode(errors="replace"))
    return "\n".join(parts)


def _expected(case: dict[str, Any]) -> set[str]:
    expect = case["expect"]
    statuses = {expect} if isinstance(expect, str) else set(expect)
    assert statuses <= {s.value for s in RunStatus}, statuses
    assert RunStatus.INTERNAL_ERROR.value not in statuses  # never something a guest causes
    return statuses


def _run_job(corpus: Corpus, case: dict[str, Any]) -> str:
    job = dict(case["job"])
    fixture = job.pop("wasm_fixture", None)  # a binary from tests/fixtures (components)
    if fixture is not None:
        job["wasm_base64"] = base64.b64encode((FIXTURES / fixture).read_bytes()).decode()
    r = corpus.cluster.http.post("/v1/jobs", params={"wait": 60}, json=job)
    if "expect_http" in case:
        assert r.status_code == case["expect_http"], r.text
        if "expect_problem" in case:
            assert r.json()["type"].rsplit("/", 1)[-1] == case["expect_problem"], r.text
        return r.text
    assert r.status_code in (200, 202), r.text
    record = r.json()
    if r.status_code == 202:  # still running after 60 s: its limits should have ended it
        record = corpus.cluster.wait_state(record["id"], timeout_s=120)
    assert record["state"] in ("finished", "cancelled"), record
    status = record["result"]["status"]
    assert status in _expected(case), (status, record["result"].get("message"),
                                       record["result"].get("compile_output"))
    return _decoded(record)


def _run_judge(corpus: Corpus, case: dict[str, Any]) -> str:
    spec = case["judge"]
    http = corpus.cluster.http
    problem_id = re.sub(r"[^a-z0-9-]", "-", spec["problem"].lower())
    package = corpus.root / "problems" / problem_id  # with the placeholders filled in
    shutil.copytree(HERE / "problems" / spec["problem"], package, dirs_exist_ok=True)
    for path in package.rglob("*"):
        if path.is_file():
            path.write_text(corpus.canaries.substitute(path.read_text()))
    upload(http, problem_id, load_package(package))
    r = http.post(f"/v1/problems/{problem_id}/submissions", params={"wait": 60},
                  json={"language": spec["language"], "source": spec["source"]})
    assert r.status_code in (200, 202), r.text
    view = r.json()
    if r.status_code == 202:
        view = http.get(f"/v1/problems/{problem_id}/submissions/{view['id']}",
                        params={"wait": 60}).json()
    assert view["verdict"] == case["expect_verdict"], view
    if "expect_message" in case:
        messages = [test.get("message") or "" for test in view.get("tests") or []]
        assert any(case["expect_message"] in m for m in messages), messages
        assert all(len(m) <= 64 * 1024 for m in messages), "a judge message is not capped"
    return json.dumps(view)


def _run_requests(corpus: Corpus, case: dict[str, Any]) -> str:
    _, http = corpus.cluster.new_tenant("attack", **case.get("tenant", {}).get("quotas", {}))
    seen = []
    for step in case["requests"]:
        accepted = 0
        for _ in range(step.get("times", 1)):
            r = http.request(step.get("method", "POST"), step["path"], json=step.get("json"),
                             params=step.get("params"), headers=step.get("headers"))
            assert r.status_code in step["expect_http"], (step["path"], r.status_code, r.text)
            accepted += r.is_success
            seen.append(r.text)
        if "max_accepted" in step:
            assert accepted <= step["max_accepted"], (step["path"], accepted)
    jobs = http.get("/v1/jobs", params={"limit": 100}).json()["jobs"]
    if "max_jobs" in case:
        assert len(jobs) <= case["max_jobs"], len(jobs)
    if "max_queued_jobs" in case:
        queued = [j for j in jobs if j["state"] == "queued"]
        assert len(queued) <= case["max_queued_jobs"], len(queued)
    for job in jobs:  # nothing of a quota case may keep the workers busy for the next ones
        if job["state"] not in ("finished", "failed", "cancelled"):
            http.delete(f"/v1/jobs/{job['id']}", params={"wait": 10})
    return "\n".join(seen)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case(corpus: Corpus, path: Path) -> None:
    case = corpus.canaries.substitute(tomllib.loads(path.read_text()))
    assert case.get("about"), f"{path.name}: say what the case attacks"
    before = corpus.files()
    if "job" in case:
        text = _run_job(corpus, case)
    elif "judge" in case:
        text = _run_judge(corpus, case)
    elif "requests" in case:
        text = _run_requests(corpus, case)
    else:
        raise AssertionError(f"{path.name}: no [job], [judge] or [[requests]]")
    assert corpus.canaries.leaked(text) == [], f"{path.name} leaked a host secret"
    for proc in corpus.workers:
        assert proc.poll() is None, f"a worker died during {path.name}"
    assert corpus.files() - before == set(), f"{path.name} left files behind"


def test_the_corpus_is_large_and_the_workers_memory_bounded(corpus: Corpus) -> None:
    assert len(CASES) >= 60, len(CASES)
    grown = corpus.rss() - corpus.rss_start
    print(f"{len(CASES)} cases; the two workers' RSS {corpus.rss_start / 2**20:.0f} MiB after "
          f"warm-up, {grown / 2**20:+.0f} MiB after the corpus")
    assert grown < _RSS_GROWTH_BYTES, f"workers grew {grown / 2**20:.0f} MiB over the corpus"
    assert os.path.exists(corpus.canaries.file)  # the planted file was there all along
