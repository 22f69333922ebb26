"""Every WARDEN_* environment setting, read in this one place (pydantic-settings).

Each setting has a safe default; the service, workers and CLI all read ``get_settings()``.
Sizes (``*_BYTES``) take the forms limits take (``64MiB``), durations (``*_S``) ``2s`` or
``500ms``. A bad value is a :class:`SettingsError` whose message names the variable and
what it allows, in one line, so that commands can report it instead of a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import annotated_types
from pydantic import BeforeValidator, Field, ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, SettingsConfigDict

from sandboxes.schema import Bytes, Seconds
from sandboxes.units import format_size, parse_duration

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: str) -> tuple[IpNetwork, ...]:
    """Comma-separated CIDRs (``10.1.2.0/24,fd00::/8``); ValueError names a bad one."""
    networks = []
    for name in (part.strip() for part in value.split(",")):
        if not name:
            continue
        try:
            networks.append(ipaddress.ip_network(name, strict=False))
        except ValueError:
            raise ValueError(f"{name!r} is not a network (a CIDR such as 10.1.2.0/24)"
                             ) from None
    return tuple(networks)


def _networks(value: object) -> object:
    if isinstance(value, str):
        parse_networks(value)  # a typo is one clear line at start
    return value


Networks = Annotated[str, BeforeValidator(_networks)]

# Whole seconds (a Redis TTL), in the same forms as other durations ("24h", "86400").
WholeSeconds = Annotated[
    int, BeforeValidator(lambda v: parse_duration(v) if isinstance(v, str) else v)
]


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
    compile_timeout_s: Seconds = Field(
        default=20.0, gt=0, le=600, description="Wall-time cap on compiling one module"
    )
    compile_memory_bytes: Bytes = Field(
        default=4 * 1024**3, ge=256 * 1024**2, description="Address-space cap of the compiler"
    )
    memory_cache_entries: int = Field(
        default=256, ge=1, description="Compiled modules kept in memory (LRU)"
    )
    disk_cache_bytes: Bytes = Field(
        default=4 * 1024**3, ge=0, description="Serialized artifacts kept on disk (0: none)"
    )
    toolchain_dir: Path = Field(
        default_factory=_default_toolchain_dir,
        description="Prebuilt, read-only toolchain parts (zig sysroot, QuickJS module); shared "
        "by every data dir on the machine",
    )
    source_compile_timeout_s: Seconds = Field(
        default=30.0, gt=0, le=600, description="Wall-time cap on compiling one source job"
    )
    source_compile_memory_bytes: Bytes = Field(
        default=2 * 1024**3, ge=256 * 1024**2, description="Address-space cap of a source compiler"
    )
    compile_output_bytes: Bytes = Field(
        default=64 * 1024, ge=1024, le=16 * 1024**2,
        description="Compiler messages kept; a compiler printing more is stopped",
    )
    source_compile_fuel: int = Field(
        default=200_000_000_000, ge=1_000_000_000, le=1_000_000_000_000,
        description="Fuel one C, C++ or Go compile may use (the compiler runs in the sandbox: "
        "a compile bomb stops at the same point on every machine; C++ with <iostream> "
        "takes ~1-7 G, a Go hello ~1.9 G)",
    )
    compiled_cache_bytes: Bytes = Field(
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
    epoch_tick_s: Seconds = Field(
        default=0.005, gt=0, le=0.1, description="Interrupt-check period: bounds stop latency"
    )
    backstop_grace_s: Seconds = Field(
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
    api_key: str | None = Field(
        default=None, repr=False, description="The API key client commands (`warden "
        "submit`, `warden job`, `warden tenant`...) send; unset: the key `warden up` "
        "stored in the data dir",
    )
    bootstrap_admin_key: str | None = Field(
        default=None, repr=False, pattern=r"^wdn_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$",
        description="An admin key (wdn_<id>_<secret>, e.g. from a Kubernetes Secret) the "
        "API registers for a `default` tenant when it starts on a store with no tenant",
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
    worker_health_file: Path | None = Field(
        default=None, description="File a worker's main loop rewrites every second with "
        "its state, for `python -m workers.health live|ready` (a Kubernetes exec probe: a "
        "worker listens on no port); unset: none",
    )
    worker_health_max_age_s: Seconds = Field(
        default=30.0, gt=0, le=600, description="A health file older than this means the "
        "worker's main loop is stuck (liveness fails); a worker's Redis calls give up after "
        "a third of it (2 to 10 s), so a Redis that stops answering does not stop the loop",
    )
    queue_name: str = Field(default="warden", description="RQ queue the jobs go through")
    job_ttl_s: WholeSeconds = Field(
        default=86_400, ge=60, description="How long finished jobs are kept"
    )
    lease_s: Seconds = Field(
        default=10.0, ge=1, le=300, description="A running job whose worker stops renewing "
        "this lease is re-run or failed (the dead-worker recovery time)",
    )
    max_attempts: int = Field(default=2, ge=1, le=10, description="Runs before giving up")
    max_queue_length: int = Field(
        default=10_000, ge=1, description="Queued jobs of one tenant beyond this get 503 + "
        "Retry-After (each tenant's own max_queued quota is a 429 below it)"
    )
    idempotency_window_s: WholeSeconds = Field(
        default=86_400, ge=1, description="How long an Idempotency-Key returns its first "
        "request's jobs (at most WARDEN_JOB_TTL_S: the jobs must still exist)",
    )
    usage_retention_days: int = Field(
        default=90, ge=1, le=3660, description="Days a tenant's daily usage is kept")
    metrics_tenant_labels: bool = Field(
        default=False, description="Label /metrics series by tenant (only for a bounded, "
        "known set of tenants: each tenant multiplies the series)")
    max_body_bytes: Bytes = Field(  # the base64 of a 64 MiB stdin, files or module fits
        default=96 * 1024**2, ge=1024, description="Request bodies over this get 413 "
        "(base64 included: the default carries up to about 72 MiB of bytes)",
    )
    max_wait_s: Seconds = Field(
        default=60.0, gt=0, le=600, description="Longest ?wait allowed"
    )
    judge_fuel_per_second: int = Field(
        default=13_000_000_000, ge=1_000_000, le=1_000_000_000_000,
        description="The judge's calibration constant: fuel a reference machine burns per "
        "second (bench/bench_fuel_calibration.py measures it); a problem's time limit is "
        "this many fuel per second, and a test's reported time is fuel / this",
    )
    judge_wall_factor: float = Field(
        default=3.0, ge=1.0, le=20.0, description="The judge's wall-clock safety cap: this "
        "many times the time limit (plus WARDEN_JUDGE_WALL_EXTRA_S)",
    )
    judge_wall_extra_s: Seconds = Field(
        default=1.0, ge=0, le=60, description="Seconds added to the judge's wall-clock cap",
    )
    callbacks_enabled: bool = Field(
        default=True, description="Accept callback URLs on submissions (delivered only to "
        "public addresses, or to WARDEN_CALLBACK_ALLOWED_NETWORKS)",
    )
    callback_allowed_networks: Networks = Field(
        default="", description="Comma-separated CIDRs that callbacks may reach although "
        "they are not public (loopback, private, link-local, metadata addresses are refused "
        "otherwise); empty: public addresses only",
    )
    callback_timeout_s: Seconds = Field(
        default=5.0, gt=0, le=60, description="One callback attempt, connect to last byte",
    )
    callback_max_attempts: int = Field(
        default=3, ge=1, le=10, description="Attempts to deliver one callback",
    )
    callback_backoff_s: Seconds = Field(
        default=2.0, ge=0, le=600, description="Wait before the second attempt; each "
        "further wait is 4 times the one before",
    )

    @property
    def callback_networks(self) -> tuple[IpNetwork, ...]:
        return parse_networks(self.callback_allowed_networks)

    @property
    def redis_call_timeout_s(self) -> float:
        """How long a worker's Redis call may take: its main loop must rewrite the health
        file within ``worker_health_max_age_s`` even when Redis stops answering (blocking
        calls wait 1 s at most, so 2 s is the floor)."""
        return min(10.0, max(2.0, self.worker_health_max_age_s / 3))

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


ENV_PREFIX = str(Settings.model_config.get("env_prefix", ""))


def env_name(field: str) -> str:
    """The environment variable of a setting: ``workers`` -> ``WARDEN_WORKERS``."""
    return f"{ENV_PREFIX}{field}".upper()


class SettingsError(ValueError):
    """WARDEN_* values that are not allowed. The message is one line: each variable, the
    value given, and what the setting allows (``WARDEN_WORKERS=0: must be an integer from
    1 to 256``)."""

    def __init__(self, exc: ValidationError) -> None:
        errors = exc.errors()
        self.fields = sorted({str(e["loc"][0]) for e in errors if e["loc"]})
        super().__init__("; ".join(_problem(e) for e in errors))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings from the environment, read once; :class:`SettingsError` if invalid."""
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(exc) from None


def toolchain_dir() -> Path:
    """WARDEN_TOOLCHAIN_DIR, for code that needs it at import (the languages registry): a
    bad value of some other setting must not turn every import into a traceback; it is
    reported, in one line, by whatever reads the settings next (the CLI does at once)."""
    try:
        return get_settings().toolchain_dir
    except SettingsError as err:  # the others as given, the bad ones at their defaults
        defaults = {name: Settings.model_fields[name].get_default(call_default_factory=True)
                    for name in err.fields}
        return Settings(**defaults).toolchain_dir


def _problem(error: ErrorDetails) -> str:
    if not error["loc"] or str(error["loc"][0]) not in Settings.model_fields:
        return error["msg"]
    name = str(error["loc"][0])
    given = _raw_value(env_name(name), str(error.get("input")))
    shown = shlex.quote(given if len(given) <= 40 else given[:40] + "…")
    if not Settings.model_fields[name].repr:  # a secret: never echoed
        shown = "(hidden)"
    if error["type"] == "string_pattern_mismatch":
        pattern = (error.get("ctx") or {}).get("pattern", "")
        return f"{env_name(name)}={shown}: must match {pattern}"
    return f"{env_name(name)}={shown}: must be {allowed(name)}"


def _raw_value(variable: str, fallback: str) -> str:
    """The text the user wrote (``64MiB``, not the bytes it was read as)."""
    for key, value in os.environ.items():
        if key.upper() == variable:  # pydantic-settings matches names case-insensitively
            return value
    return fallback


def allowed(name: str) -> str:
    """What setting ``name`` accepts, in words: its kind, its range and its default."""
    field = Settings.model_fields[name]
    shown: Callable[[Any], str] = _number
    if name.endswith("_bytes"):
        kind, shown = "a size", format_size
    elif name.endswith("_s"):
        kind, shown = "a duration", _seconds
        if field.annotation is int:  # WholeSeconds
            kind = "a duration in whole seconds"
    else:
        kind = _kind(field.annotation)
    low = high = ""
    for bound in field.metadata:
        if isinstance(bound, annotated_types.Ge):
            low = f"at least {shown(bound.ge)}"
        elif isinstance(bound, annotated_types.Gt):
            low = f"above {shown(bound.gt)}"
        elif isinstance(bound, annotated_types.Le):
            high = f"at most {shown(bound.le)}"
        elif isinstance(bound, annotated_types.Lt):
            high = f"below {shown(bound.lt)}"
    if low.startswith("at least") and high.startswith("at most"):
        span = f"from {low.removeprefix('at least ')} to {high.removeprefix('at most ')}"
    else:
        span = " and ".join(part for part in (low, high) if part)
    default = field.get_default(call_default_factory=True)
    text = f"{kind} {span}" if span and kind in ("an integer", "a number") else (
        f"{kind}, {span}" if span else kind)
    return text + ("" if default is None else f" (default {shown(default)})")


def _kind(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(str(a) for a in get_args(annotation))
    kinds: dict[Any, str] = {bool: "true or false", int: "an integer", float: "a number",
                             Path: "a path"}
    return kinds.get(annotation, "text")


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def _seconds(value: Any) -> str:
    return f"{float(value):g}s"
