"""The run's filesystem: granted read-only files at /, an optional scratch dir at /tmp.

Host code writes the granted files *before* the guest exists, and afterwards only deletes
the directories with ``shutil.rmtree``, which on Linux works through directory fds with
O_NOFOLLOW (``rmtree.avoids_symlink_attacks``), so a symlink the guest planted is removed,
never followed. The scratch-size scan uses lstat only. Nothing else of the guest's writing
is read, opened, chowned or followed by the host.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

import wasmtime

from sandboxes.control import StopReason
from sandboxes.schema import SCRATCH_GUEST_DIR, Grants

if not shutil.rmtree.avoids_symlink_attacks:  # pragma: no cover - Linux always has it
    raise RuntimeError("this platform's rmtree can follow symlinks; refusing to run guests")

MAX_SCRATCH_ENTRIES = 10_000


class Workspace:
    """Creates the preopened directories for one run and removes them after it."""

    def __init__(self, root: Path, grants: Grants) -> None:
        self._root = root
        self._grants = grants
        self._dirs: list[str] = []
        self.scratch: str | None = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        for d in self._dirs:
            with contextlib.suppress(OSError):
                shutil.rmtree(d)

    def _mkdtemp(self, prefix: str) -> str:
        self._root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = tempfile.mkdtemp(prefix=prefix, dir=self._root)
        self._dirs.append(path)
        return path

    def configure(self, wasi: wasmtime.WasiConfig) -> None:
        """Preopen what was granted, and nothing when nothing was."""
        if self._grants.files:
            files_dir = self._mkdtemp("files-")
            for name, data in self._grants.files.items():
                target = Path(files_dir, name)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            wasi.preopen_dir(files_dir, "/", False)
        if self._grants.scratch is not None:
            self.scratch = self._mkdtemp("scratch-")
            wasi.preopen_dir(self.scratch, SCRATCH_GUEST_DIR, True)

    def scratch_check(self) -> StopReason | None:
        """Stop the run once the scratch dir holds more than its quota (blocks on disk)."""
        assert self.scratch is not None and self._grants.scratch is not None
        used, entries = _usage(self.scratch)
        if used > self._grants.scratch.quota_bytes or entries > MAX_SCRATCH_ENTRIES:
            return StopReason.SCRATCH_LIMIT
        return None


def _usage(top: str) -> tuple[int, int]:
    """Bytes allocated and entries under ``top``, never following a symlink."""
    used = 0
    entries = 0
    stack = [top]
    while stack and entries <= MAX_SCRATCH_ENTRIES:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as it:
            for entry in it:
                entries += 1
                st = entry.stat(follow_symlinks=False)
                used += max(st.st_blocks * 512, st.st_size if stat.S_ISREG(st.st_mode) else 0)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
    return used, entries
