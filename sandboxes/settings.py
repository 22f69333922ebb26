"""Every WARDEN_* environment setting, read in this one place (pydantic-settings).

Each setting has a safe default; the service, workers and CLI all read ``get_settings()``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "warden"


def _default_toolchain_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "warden" / "toolchains"


class Settings(BaseSettings):
    """Warden's configuration. Environment: ``WARDEN_<NAME>`` (e.g. ``WARDEN_DATA_DIR``)."""

    model_config = SettingsConfigDict(env_prefix="WARDEN_", extra="ignore")

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        description="Artifact cache, scratch dirs and the embedded Redis's data live here",
    )
    compile_timeout_s: float = Field(
        default=20.0, gt=0, le=600, description="Wall-time cap on compiling one module"
    )
    compile_memory_bytes: int = Field(
        default=4 * 1024**3, ge=256 * 1024**2, description="Address-space cap of the compiler"
    )
    memory_cache_entries: int = Field(
        default=256, ge=1, description="Compiled modules kept in memory (LRU)"
    )
    disk_cache_bytes: int = Field(
        default=4 * 1024**3, ge=0, description="Serialized artifacts kept on disk (0: none)"
    )
    toolchain_dir: Path = Field(
        default_factory=_default_toolchain_dir,
        description="Prebuilt, read-only toolchain parts (zig sysroot, QuickJS module); shared "
        "by every data dir on the machine",
    )
    source_compile_timeout_s: float = Field(
        default=30.0, gt=0, le=600, description="Wall-time cap on compiling one source job"
    )
    source_compile_memory_bytes: int = Field(
        default=2 * 1024**3, ge=256 * 1024**2, description="Address-space cap of a source compiler"
    )
    compile_output_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * 1024**2,
        description="Compiler messages kept; a compiler printing more is stopped",
    )
    compiled_cache_bytes: int = Field(
        default=1024**3, ge=0, description="Compiled source kept on disk (0: none)"
    )
    warm_languages: bool = Field(
        default=True, description="Workers compile the interpreters and zig's libraries at start"
    )
    fuel_instrumentation: bool = Field(
        default=True, description="Meter core modules with Warden's fuel rewriter (sieve "
        "~1.5x native) instead of wasmtime's fuel and epochs (~2.8x); modules the rewriter "
        "cannot handle, and components, use wasmtime's either way",
    )
    epoch_tick_s: float = Field(
        default=0.005, gt=0, le=0.1, description="Interrupt-check period: bounds stop latency"
    )
    backstop_grace_s: float = Field(
        default=0.5, ge=0.05, le=10,
        description="A component still running this long after its wall limit (or a "
        "cancel) has its executor process killed",
    )

    # -- service and workers ---------------------------------------------------------------
    redis_url: str | None = Field(
        default=None, description="Redis to use; unset: `warden up` starts an embedded one"
    )
    redis_appendfsync: Literal["always", "everysec"] = Field(
        default="everysec", description="AOF fsync policy of the embedded Redis: `always` "
        "survives a Redis crash with nothing lost at about half the throughput",
    )
    host: str = Field(default="127.0.0.1", description="API listen address")
    port: int = Field(default=8000, ge=0, le=65535, description="API listen port")
    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1, ge=1, le=256,
        description="Worker processes `warden up` starts",
    )
    worker_lanes: int = Field(
        default=1, ge=1, le=64, description="Jobs one worker process runs at once (threads: "
        "wasmtime releases the GIL); a stopping worker finishes its lanes' jobs",
    )
    queue_name: str = Field(default="warden", description="RQ queue the jobs go through")
    job_ttl_s: int = Field(default=86_400, ge=60, description="How long finished jobs are kept")
    lease_s: float = Field(
        default=10.0, ge=1, le=300, description="A running job whose worker stops renewing "
        "this lease is re-run or failed (the dead-worker recovery time)",
    )
    max_attempts: int = Field(default=2, ge=1, le=10, description="Runs before giving up")
    max_queue_length: int = Field(
        default=10_000, ge=1, description="Queued jobs beyond this get 503 + Retry-After"
    )
    max_body_bytes: int = Field(
        default=32 * 1024**2, ge=1024, description="Request bodies over this get 413"
    )
    max_wait_s: float = Field(default=60.0, gt=0, le=600, description="Longest ?wait allowed")

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def compiled_dir(self) -> Path:
        return self.data_dir / "compiled"

    @property
    def compile_root(self) -> Path:
        return self.data_dir / "compile-jobs"

    @property
    def file_trees_root(self) -> Path:
        return self.data_dir / "files"

    @property
    def scratch_root(self) -> Path:
        return self.data_dir / "scratch"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
