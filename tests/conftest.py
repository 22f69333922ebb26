"""Shared fixtures: a real Sandbox (real wasmtime) with its data dir in a temp folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxes.runtime.sandbox import Sandbox
from sandboxes.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"


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
