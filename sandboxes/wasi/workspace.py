"""The run's filesystem: granted read-only files at /, an optional scratch dir at /tmp.

Host code writes the granted files *before* the guest exists, and afterwards only deletes
the directories with ``shutil.rmtree``, which on Linux works through directory fds with
O_NOFOLLOW (``rmtree.avoids_symlink_attacks``), so a symlink the guest planted is removed,
never followed. The scratch-size scan uses lstat only. Nothing else of the guest's writing
is read, opened, chowned or followed by the host.

Granted files are preopened read-only, so the guest cannot change them: a file tree is
written once per distinct content and shared by later runs (``FileTrees``), which saves a
mkdtemp + write + rmtree (~1 ms) per run of the same program or test input.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import wasmtime

from sandboxes.runtime.control import StopReason
from sandboxes.schema import SCRATCH_GUEST_DIR, Grants

if not shutil.rmtree.avoids_symlink_attacks:  # pragma: no cover - Linux always has it
    raise RuntimeError("this platform's rmtree can follow symlinks; refusing to run guests")

MAX_SCRATCH_ENTRIES = 10_000


class FileTrees:
    """Read-only file trees by content, shared between runs; bounded, in-use trees kept.

    Trees live in a private per-process directory removed at exit (and a dead process's
    directory is removed by the next one that starts in the same root).
    """

    def __init__(self, root: Path, max_trees: int = 64, max_bytes: int = 64 * 1024 * 1024):
        self._root = root
        self._max_trees = max_trees
        self._max_bytes = max_bytes
        self._dir: Path | None = None
        self._trees: OrderedDict[str, tuple[str, int]] = OrderedDict()  # key -> (path, size)
        self._in_use: dict[str, int] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def _base(self) -> Path:
        if self._dir is None:
            self._root.mkdir(parents=True, exist_ok=True, mode=0o700)
            _remove_dead_owners(self._root)
            self._dir = Path(tempfile.mkdtemp(prefix=f"trees-{os.getpid()}-", dir=self._root))
            atexit.register(shutil.rmtree, self._dir, True)
        return self._dir

    def acquire(self, files: dict[str, bytes]) -> tuple[str, str]:
        """(key, directory) holding exactly ``files``; release the key after the run."""
        h = hashlib.sha256()
        for name in sorted(files):
            data = files[name]
            h.update(name.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
        key = h.hexdigest()
        with self._lock:
            hit = self._trees.get(key)
            if hit is not None:
                self._trees.move_to_end(key)
                self._in_use[key] = self._in_use.get(key, 0) + 1
                return key, hit[0]
            base = self._base()
        path = tempfile.mkdtemp(prefix="files-", dir=base)
        for name, data in files.items():
            target = Path(path, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        size = sum(len(d) for d in files.values())
        with self._lock:
            if key in self._trees:  # another run wrote the same tree meanwhile: use that
                shutil.rmtree(path, ignore_errors=True)
                path = self._trees[key][0]
            else:
                self._trees[key] = (path, size)
                self._bytes += size
            self._in_use[key] = self._in_use.get(key, 0) + 1
            return key, path

    def release(self, key: str) -> None:
        with self._lock:
            count = self._in_use.get(key, 0) - 1
            if count > 0:
                self._in_use[key] = count
            else:
                self._in_use.pop(key, None)
            for old in list(self._trees):
                if len(self._trees) <= self._max_trees and self._bytes <= self._max_bytes:
                    break
                if old in self._in_use:
                    continue
                path, size = self._trees.pop(old)
                self._bytes -= size
                shutil.rmtree(path, ignore_errors=True)


def _remove_dead_owners(root: Path) -> None:
    for entry in root.glob("trees-*-*"):
        pid = entry.name.split("-")[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(entry, ignore_errors=True)


class Workspace:
    """Creates the preopened directories for one run and removes them after it."""

    def __init__(self, root: Path, grants: Grants, trees: FileTrees | None = None) -> None:
        self._root = root
        self._grants = grants
        self._trees = trees
        self._tree_key: str | None = None
        self._dirs: list[str] = []
        self.scratch: str | None = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        for d in self._dirs:
            with contextlib.suppress(OSError):
                shutil.rmtree(d)
        if self._trees is not None and self._tree_key is not None:
            self._trees.release(self._tree_key)

    def _mkdtemp(self, prefix: str) -> str:
        self._root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = tempfile.mkdtemp(prefix=prefix, dir=self._root)
        self._dirs.append(path)
        return path

    def configure(self, wasi: wasmtime.WasiConfig) -> None:
        """Preopen what was granted, and nothing when nothing was."""
        if self._grants.files:
            if self._trees is not None:
                self._tree_key, files_dir = self._trees.acquire(self._grants.files)
            else:
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
