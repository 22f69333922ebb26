"""Shared fixtures: a real Sandbox (real wasmtime) with its data dir in a temp folder."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import workers.redis_server
from sandboxes.runtime.sandbox import Sandbox
from sandboxes.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"


def _worker_free_port(ports: range) -> int:
    """A free port of this test process's own range. Tests kill and restart Redis on its
    port while their API and workers keep reconnecting to it: with the kernel's ports, a
    test in the other process could get that port meanwhile and have the first test's
    workers write into its Redis (seen once). Below the kernel's ephemeral range
    (32768-), so no process's own port-0 choice lands in it either."""
    for _ in range(200):
        port = random.choice(ports)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports}")


_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1... under pytest-xdist
if _WORKER.startswith("gw") and _WORKER[2:].isdigit():
    _PORTS = range(12000 + 2500 * int(_WORKER[2:]), 12000 + 2500 * (int(_WORKER[2:]) + 1))
    workers.redis_server.free_port = lambda: _worker_free_port(_PORTS)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("warden-data")


@pytest.fixture(scope="session")
def sandbox(data_dir: Path) -> Iterator[Sandbox]:
    sb = Sandbox(Settings(data_dir=data_dir, compile_timeout_s=20))
    yield sb
    sb.close()


@pytest.fixture(scope="session")
def metered_sandbox(data_dir: Path) -> Iterator[Sandbox]:
    """Core modules metered by wasmtime's fuel and epochs, as components and modules the
    fuel rewriter refuses are (the default sandbox uses the rewriter)."""
    sb = Sandbox(Settings(data_dir=data_dir, compile_timeout_s=20, fuel_instrumentation=False))
    yield sb
    sb.close()


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()
