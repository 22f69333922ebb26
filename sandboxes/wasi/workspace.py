"""Host directories for WASI P2 components' granted files (read-only, shared by content).

Core modules see Warden's in-memory files (``sandboxes.wasi.memfs``); components, which go
through wasmtime's own WASI P2 filesystem, get their granted files from here and no
scratch dir at all.

Host code writes the granted files *before* the guest exists and preopens them read-only,
so the guest can neither change nor add anything there; afterwards the host only deletes
whole trees with ``shutil.rmtree``, which on Linux works through directory fds with
O_NOFOLLOW (``rmtree.avoids_symlink_attacks``). A file tree is written once per distinct
content and shared by later runs (``FileTrees``), which saves a mkdtemp + write + rmtree
(~1 ms) per run of the same program or test input.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

if not shutil.rmtree.avoids_symlink_attacks:  # pragma: no cover - Linux always has it
    raise RuntimeError("this platform's rmtree can follow symlinks; refusing to run guests")


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


def remove_stale_scratch(root: Path) -> None:
    """Remove scratch dirs left by versions that kept them on the host (none are made now)."""
    if root.is_dir():
        shutil.rmtree(root, ignore_errors=True)
