"""/metrics: cluster-wide figures from Redis, linted by promtool (issue 12)."""

from __future__ import annotations

import shutil
import subprocess
import time

from prometheus_client.parser import text_string_to_metric_families

from service.metrics import FLUSH_S
from tests import wat_modules as W
from tests.service.cluster import Cluster


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_count_jobs_across_processes_and_pass_promtool(cluster: Cluster) -> None:
    before = _samples(cluster.http.get("/metrics").text)
    ok_key = ("warden_jobs_total", (("language", "wasm"), ("status", "ok")))
    trap_key = ("warden_jobs_total", (("language", "wasm"), ("status", "trap")))
    for i in range(5):  # two workers share these: the counts are the cluster's
        r = cluster.http.post("/v1/jobs", json={"wat": W.hello(f"{i}\n")}, params={"wait": 30})
        assert r.status_code == 200, r.text
    r = cluster.http.post("/v1/jobs", json={"wat": W.UNREACHABLE}, params={"wait": 30})
    assert r.json()["result"]["status"] == "trap"
    time.sleep(FLUSH_S + 0.5)  # the API adds its HTTP timings to Redis every FLUSH_S
    response = cluster.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = _samples(response.text)
    assert after[ok_key] - before.get(ok_key, 0) == 5
    assert after[trap_key] - before.get(trap_key, 0) == 1
    assert after[("warden_fuel_consumed_total", ())] > before.get(
        ("warden_fuel_consumed_total", ()), 0)
    runs = after[("warden_job_run_seconds_count", ())]
    assert runs - before.get(("warden_job_run_seconds_count", ()), 0) == 6
    assert after[("warden_job_run_seconds_bucket", (("le", "+Inf"),))] == runs
    assert after[("warden_workers", ())] == 2
    assert after[("warden_lanes", ())] >= 2
    posted = ("warden_http_request_duration_seconds_count",
              (("code", "200"), ("method", "POST"), ("route", "/v1/jobs")))
    assert after[posted] - before.get(posted, 0) == 6
    assert ("warden_queue_depth", (("pool", "sandbox"),)) in after
    assert ("warden_queue_depth", (("pool", "jail"),)) in after
    assert not any(name == "warden_jobs_total" and dict(labels).get("tenant")
                   for name, labels in after)  # no tenant labels unless configured

    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/install.sh --dev installs Debian's prometheus"
    lint = subprocess.run([promtool, "check", "metrics"], input=response.content,
                          capture_output=True, timeout=60)
    assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), (
        lint.stdout.decode(), lint.stderr.decode())
