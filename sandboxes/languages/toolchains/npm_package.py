"""Toolchain parts published on npm, fetched without running anything of npm's: ``npm
pack`` (no install scripts, no dependencies) downloads the tarball, which must match its
pinned sha512 integrity; members are then read out of it by exact name, each checked
against a pinned SHA-256 where one is given."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path


class NpmPackageError(RuntimeError):
    """The package cannot be fetched, or is not the pinned one."""


@dataclass(frozen=True)
class NpmPackage:
    name: str
    version: str
    integrity: str  # "sha512-<base64>", as the registry publishes it

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    def pack(self, dest: Path, purpose: str) -> Path:
        """Download the tarball into ``dest``; ``purpose`` says what it is for (errors)."""
        npm = shutil.which("npm")
        if npm is None:
            raise NpmPackageError(f"npm is not installed (apt-get install npm): it fetches "
                                  f"{purpose} {self.spec}")
        cmd = [npm, "pack", self.spec, "--pack-destination", str(dest), "--ignore-scripts",
               "--silent"]
        env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false"}
        try:
            done = subprocess.run(cmd, cwd=dest, env=env, capture_output=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise NpmPackageError(f"npm pack {self.spec} failed: {exc}") from None
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip()[-2000:]
            raise NpmPackageError(f"npm pack {self.spec} failed: {tail}")
        tarballs = list(dest.glob("*.tgz"))
        if len(tarballs) != 1:
            raise NpmPackageError(f"npm pack left {len(tarballs)} tarballs in {dest}")
        return tarballs[0]

    def members(self, tarball: Path, wanted: dict[str, str | None],
                max_bytes: int) -> dict[str, bytes]:
        """The wanted members (name -> pinned SHA-256, or None for unpinned ones that may
        be absent), from a tarball that must have the pinned integrity."""
        data = tarball.read_bytes()
        integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
        if integrity != self.integrity:
            raise NpmPackageError(f"{tarball.name} has integrity {integrity}, expected the "
                                  f"pinned {self.integrity}")
        out: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive:
                if member.name in wanted and member.isfile() and member.size <= max_bytes:
                    f = archive.extractfile(member)
                    if f is not None:
                        out[member.name] = f.read()
        for name, expected in wanted.items():
            if expected is None:
                continue
            if name not in out:
                raise NpmPackageError(f"{tarball.name} has no {name}")
            if hashlib.sha256(out[name]).hexdigest() != expected:
                raise NpmPackageError(f"{name} in {tarball.name} is not the pinned file")
        return out
