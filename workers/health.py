"""A worker's health, for probes that cannot ask it over the network.

A worker pod listens on no port (nothing needs to reach it, and its NetworkPolicy admits
nothing), so Kubernetes probes it with ``python -m workers.health live|ready``, which reads
the file the worker's main loop rewrites every second (``WARDEN_WORKER_HEALTH_FILE``):

* live: the file is younger than ``WARDEN_WORKER_HEALTH_MAX_AGE_S``: the main loop (signals,
  heartbeats, maintenance) still turns. Redis being down does not fail it: a restart would
  not bring Redis back, and the worker reconnects by itself.
* ready: live, and the worker takes jobs: it is serving, its last Redis call answered, and
  its warm-up (interpreters, compilers) is done, so a rolling update waits for a warm pod.

The file lives in a directory only the worker writes (the pod's own emptyDir), never one a
guest can reach: guests see in-memory trees only.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class Health:
    serving: bool  # the worker takes jobs (after start-up, before a stop)
    redis: bool  # the main loop's last Redis call answered
    warm: bool  # warm-up is done (or not asked for)
    time: float = 0.0  # wall clock of the write (a probe runs in another process)


def write_health(path: Path, health: Health) -> None:
    """Replace the file in one rename, so a probe never reads half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=".health-")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(health) | {"time": time.time()}, out)
        tmp.replace(path)
    except BaseException:
        tmp.unlink()
        raise


def check(path: Path, kind: Literal["live", "ready"], max_age_s: float,
          now: float | None = None) -> str | None:
    """Why the worker is not live (or not ready), or None when it is."""
    try:
        raw = json.loads(path.read_text())
        health = Health(serving=bool(raw["serving"]), redis=bool(raw["redis"]),
                        warm=bool(raw["warm"]), time=float(raw["time"]))
    except FileNotFoundError:
        return f"no health file at {path} yet (the worker has not started its main loop)"
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"unreadable health file {path}: {err}"
    age = (time.time() if now is None else now) - health.time
    if age > max_age_s:
        return f"the worker's main loop last reported {age:.0f} s ago (limit {max_age_s:g} s)"
    if kind == "live":
        return None
    if not health.serving:
        return "the worker is not taking jobs (starting or stopping)"
    if not health.redis:
        return "the worker cannot reach Redis"
    if not health.warm:
        return "the worker is still warming its languages"
    return None


def main(argv: list[str]) -> int:
    """``python -m workers.health live|ready``: exit 0 when so, else 1 with one line why."""
    from sandboxes.settings import SettingsError, get_settings

    if len(argv) != 1 or argv[0] not in ("live", "ready"):
        print("usage: python -m workers.health live|ready", file=sys.stderr)
        return 2
    try:
        settings = get_settings()
    except SettingsError as err:
        print(err, file=sys.stderr)
        return 1
    if settings.worker_health_file is None:
        print("WARDEN_WORKER_HEALTH_FILE is not set: the worker writes no health file",
              file=sys.stderr)
        return 1
    kind: Literal["live", "ready"] = "live" if argv[0] == "live" else "ready"
    reason = check(settings.worker_health_file, kind, settings.worker_health_max_age_s)
    if reason is not None:
        print(reason, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
