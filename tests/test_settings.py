"""WARDEN_* settings: every one documented in the README's table (checked, so the table
cannot drift), sizes and durations in the forms the README shows, and a bad value as one
line naming the variable and its range, never a traceback at import."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxes.settings import (
    Settings,
    SettingsError,
    env_name,
    get_settings,
    toolchain_dir,
)
from sandboxes.units import format_size

ROOT = Path(__file__).resolve().parents[1]


def readme_settings() -> set[str]:
    """The variables the README's Configuration table names (a row may name two)."""
    section = (ROOT / "README.md").read_text().split("## Configuration", 1)[1]
    table = section.split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `WARDEN_")]
    return {name for row in rows for name in re.findall(r"`(WARDEN_[A-Z_]+)`", row.split("|")[1])}


def test_every_setting_is_in_the_readme_table_and_nothing_else() -> None:
    assert readme_settings() == {env_name(name) for name in Settings.model_fields}
    assert "WARDEN_FUEL_INSTRUMENTATION" in readme_settings()


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    """get_settings() reads the environment once: read it again in this test."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_sizes_take_the_readme_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = [name for name in Settings.model_fields if name.endswith("_bytes")]
    assert len(sizes) >= 6
    for name in sizes:
        default = Settings.model_fields[name].get_default(call_default_factory=True)
        for text in (format_size(default), str(default)):
            monkeypatch.setenv(env_name(name), text)
            assert getattr(Settings(), name) == default, (name, text)
    monkeypatch.setenv("WARDEN_MAX_BODY_BYTES", "64MiB")
    assert Settings().max_body_bytes == 64 * 1024**2
    monkeypatch.setenv("WARDEN_MAX_BODY_BYTES", "1.5 GB")
    assert Settings().max_body_bytes == 1_500_000_000


def test_durations_take_the_readme_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    durations = [name for name in Settings.model_fields if name.endswith("_s")]
    assert len(durations) >= 6
    for name in durations:
        default = Settings.model_fields[name].get_default(call_default_factory=True)
        for text in (f"{default}s", f"{default * 1000}ms", str(default)):
            monkeypatch.setenv(env_name(name), text)
            assert getattr(Settings(), name) == pytest.approx(default), (name, text)
    monkeypatch.setenv("WARDEN_LEASE_S", "2s")
    assert Settings().lease_s == 2.0
    monkeypatch.setenv("WARDEN_EPOCH_TICK_S", "5ms")
    assert Settings().epoch_tick_s == pytest.approx(0.005)
    monkeypatch.setenv("WARDEN_JOB_TTL_S", "24h")
    assert Settings().job_ttl_s == 86_400 and isinstance(Settings().job_ttl_s, int)


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("WARDEN_WORKERS", "0", "WARDEN_WORKERS=0: must be an integer from 1 to 256"),
    ("WARDEN_WORKERS", "many", "WARDEN_WORKERS=many: must be an integer from 1 to 256"),
    ("WARDEN_COMPILE_MEMORY_BYTES", "64MiB",
     "WARDEN_COMPILE_MEMORY_BYTES=64MiB: must be a size, at least 256MiB (default 4GiB)"),
    ("WARDEN_EPOCH_TICK_S", "1s",
     "WARDEN_EPOCH_TICK_S=1s: must be a duration, above 0s and at most 0.1s (default 0.005s)"),
    ("WARDEN_REDIS_APPENDFSYNC", "never",
     "WARDEN_REDIS_APPENDFSYNC=never: must be one of always, everysec (default everysec)"),
    ("WARDEN_WARM_LANGUAGES", "maybe",
     "WARDEN_WARM_LANGUAGES=maybe: must be true or false (default true)"),
    ("WARDEN_MAX_BODY_BYTES", "a lot",
     "WARDEN_MAX_BODY_BYTES='a lot': must be a size, at least 1KiB (default 96MiB)"),
])
def test_a_bad_value_names_the_variable_and_what_it_allows(
    monkeypatch: pytest.MonkeyPatch, fresh_settings: None, variable: str, value: str,
    message: str,
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        get_settings()
    assert str(raised.value).startswith(message), str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_toolchain_dir_survives_a_bad_other_setting(
    monkeypatch: pytest.MonkeyPatch, fresh_settings: None, tmp_path: Path
) -> None:
    """The languages registry reads it at import: a bad WARDEN_WORKERS must not make
    that import fail, nor change which toolchain dir it reads."""
    monkeypatch.setenv("WARDEN_TOOLCHAIN_DIR", str(tmp_path))
    monkeypatch.setenv("WARDEN_WORKERS", "0")
    assert toolchain_dir() == tmp_path
    with pytest.raises(SettingsError):
        get_settings()


def warden(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The full command (service.cli, what `warden` runs) with these WARDEN_* values."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args], capture_output=True, text=True,
        timeout=60, check=False, cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(Path.home()),
             **{f"WARDEN_{k.upper()}": v for k, v in env.items()}},
    )


@pytest.mark.parametrize("command", [("languages",), ("up",), ("submit", "x.wat"),
                                     ("job", "list"), ("worker",), ("up", "--help")])
def test_every_command_reports_a_bad_setting_in_one_line(command: tuple[str, ...]) -> None:
    proc = warden(*command, workers="0", max_wait_s="forever")
    assert proc.returncode == 2, proc
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("warden: WARDEN_WORKERS=0: must be an integer from 1 to 256"
                                  ), proc.stderr
    assert "; WARDEN_MAX_WAIT_S=forever: must be a duration" in proc.stderr, proc.stderr


def test_help_lists_the_commands_despite_a_bad_setting() -> None:
    proc = warden("--help", workers="0")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    for command in ("run", "submit", "job", "warm", "up"):
        assert re.search(rf"\b{command}\b", proc.stdout), command
