"""Multi-tenant load (loopback only, stops by itself): three tenants at different quotas
keep the service saturated with a mix of WASM, source and judge submissions for a fixed
time. It measures what the callers assert: every tenant's quotas held exactly (its running
and queued jobs, sampled from Redis twice a second, never above its caps), no tenant
starved (each tenant's share of the jobs finished against its weight), latency p50/p99
and error counts per tenant, and the workers' memory over the run.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from judge.kattis import load_package
from tests import wat_modules as W
from tests.service.cluster import Cluster
from tests.service.test_judge_api import upload
from workers.judging import JUDGE_FIELD
from workers.scheduling import running_key

KATTIS = Path(__file__).resolve().parents[1] / "fixtures" / "kattis"


@dataclass(frozen=True)
class TenantPlan:
    name: str
    weight: int
    max_running: int
    max_queued: int
    per_minute: int  # submissions_per_minute (and the burst)


PLANS = (TenantPlan("gold", 3, 3, 40, 6000), TenantPlan("silver", 2, 2, 30, 6000),
         TenantPlan("bronze", 1, 2, 10, 600))


@dataclass
class TenantFigures:
    accepted: int = 0
    refused: Counter[int] = field(default_factory=Counter)  # 4xx by status
    server_errors: int = 0
    finished: int = 0
    latencies_s: list[float] = field(default_factory=list)
    max_running_seen: int = 0
    max_queued_seen: int = 0

    def p(self, q: float) -> float:
        values = sorted(self.latencies_s)
        return values[min(len(values) - 1, int(q / 100 * len(values)))] if values else 0.0


@dataclass
class LoadReport:
    seconds: float
    tenants: dict[str, TenantFigures]
    rss_mib: list[float]

    def summary(self) -> str:
        lines = [f"{self.seconds:.0f} s; worker RSS (MiB) {[round(r) for r in self.rss_mib]}"]
        for name, t in self.tenants.items():
            lines.append(
                f"  {name}: {t.accepted} accepted, {t.finished} finished, refused "
                f"{dict(t.refused)}, 5xx {t.server_errors}, latency p50 {t.p(50):.2f} s p99 "
                f"{t.p(99):.2f} s, max running seen {t.max_running_seen}, max queued seen "
                f"{t.max_queued_seen}")
        return "\n".join(lines)


def _bodies(n: int) -> tuple[str, dict[str, Any]]:
    """The n-th submission of the mix: (path, body)."""
    kind = n % 4
    if kind == 0:
        return "/v1/jobs", {"wat": W.sleep(0.05)}
    if kind == 1:
        return "/v1/jobs", {"wat": W.LOOP, "limits": {"fuel": 50_000_000}}
    if kind == 2:
        return "/v1/jobs", {"language": "python", "source": f"print({n})"}
    return "/v1/problems/sum/submissions", {
        "language": "python", "source": "print(sum(map(int, input().split())))"}


def _client(cluster: Cluster, http: httpx.Client, figures: TenantFigures, stop: float,
            outstanding: int) -> None:
    """Keep ``outstanding`` submissions in flight until ``stop``; wait for each."""
    lock = threading.Lock()

    def one(n: int) -> None:
        while time.monotonic() < stop:
            path, body = _bodies(n)
            started = time.monotonic()
            try:
                r = http.post(path, json=body, params={"wait": 30})
            except httpx.TransportError:
                with lock:
                    figures.server_errors += 1
                continue
            with lock:
                if r.status_code >= 500:
                    figures.server_errors += 1
                elif r.status_code >= 400:
                    figures.refused[r.status_code] += 1
                else:
                    figures.accepted += 1
                    if r.status_code == 200:
                        figures.finished += 1
                        figures.latencies_s.append(time.monotonic() - started)
            if r.status_code == 429:
                time.sleep(float(r.headers.get("Retry-After", "1")))
            n += outstanding

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(outstanding)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, stop - time.monotonic()) + 60)


def run_load(cluster: Cluster, seconds: float, workers: list[Any]) -> LoadReport:
    figures: dict[str, TenantFigures] = {}
    clients: list[threading.Thread] = []
    stop = time.monotonic() + seconds
    tenants: dict[str, str] = {}
    for plan in PLANS:
        tenant, http = cluster.new_tenant(plan.name, weight=plan.weight,
                                          max_running=plan.max_running,
                                          max_queued=plan.max_queued,
                                          submissions_per_minute=plan.per_minute,
                                          submission_burst=plan.per_minute)
        tenants[plan.name] = tenant
        upload(http, "sum", load_package(KATTIS / "aplusb"))
        figures[plan.name] = TenantFigures()
        clients.append(threading.Thread(
            target=_client, args=(cluster, http, figures[plan.name], stop,
                                  plan.max_queued + plan.max_running), daemon=True))
    rss: list[float] = []
    for c in clients:
        c.start()
    client = cluster.client
    next_rss = time.monotonic()
    while time.monotonic() < stop:
        for plan in PLANS:
            tenant = tenants[plan.name]
            running = int(client.zcard(running_key(tenant)))
            queued = _submitted_queued(client, tenant)
            f = figures[plan.name]
            f.max_running_seen = max(f.max_running_seen, running)
            f.max_queued_seen = max(f.max_queued_seen, queued)
        if time.monotonic() >= next_rss:
            rss.append(sum(_rss(p.pid) for p in workers) / 2**20)
            next_rss += max(seconds / 10, 1.0)
        time.sleep(0.5)
    for c in clients:
        c.join(timeout=90)
    rss.append(sum(_rss(p.pid) for p in workers) / 2**20)
    return LoadReport(seconds, figures, rss)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _submitted_queued(client: Any, tenant: str) -> int:
    """The tenant's queued jobs that its max_queued caps: all but the test jobs a judge
    submission spawns (queued past the cap once the submission was admitted)."""
    rq_ids = [rq for key in client.scan_iter(f"rq:queue:*.{tenant}")
              for rq in client.lrange(key, 0, -1)]
    pipe = client.pipeline(transaction=False)
    for rq_id in rq_ids:
        pipe.hget(f"warden:job:{rq_id.decode().partition('-')[0]}", JUDGE_FIELD)
    spawned = sum(1 for task in pipe.execute()
                  if task and json.loads(task).get("phase") != "compile")
    return len(rq_ids) - spawned
