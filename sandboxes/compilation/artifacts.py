"""Compiled-code cache: a bounded in-memory LRU over an on-disk store of serialized artifacts.

Keyed by the module's sha256 + wasmtime version + engine-config fingerprint, because a
serialized artifact is only valid for the exact engine that made it. Each disk file carries
its key and a sha256 of its payload: a corrupted, truncated or foreign file is detected,
removed and recompiled, never handed to ``deserialize`` blindly.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

_MAGIC = b"WARDEN-ARTIFACT-1\n"


class ArtifactCache(Generic[T]):
    """Thread-safe get-or-build with per-key locks so one key compiles once."""

    def __init__(self, directory: Path | None, max_entries: int, max_disk_bytes: int) -> None:
        self._dir = directory
        self._max_entries = max_entries
        self._max_disk_bytes = max_disk_bytes
        self._memory: OrderedDict[str, T] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self.hits = 0
        self.disk_hits = 0
        self.misses = 0
        if directory is not None:
            try:
                directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError:  # a read-only root (a locked-down pod): memory only, then
                if not directory.is_dir():
                    self._dir = None

    def get(
        self, key: str, compile_: Callable[[], bytes], load: Callable[[bytes], T],
        wait_s: float | None = None,
    ) -> T:
        """The loaded artifact for ``key``: memory, then disk, then ``compile_``.

        A caller waits for another's compile of the same key at most ``wait_s`` seconds
        (TimeoutError past it): that wait is part of its own compile budget.
        """
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                self.hits += 1
                return self._memory[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        if not key_lock.acquire(timeout=-1 if wait_s is None else max(wait_s, 0.0)):
            raise TimeoutError(key)
        try:
            try:
                with self._lock:
                    if key in self._memory:
                        self.hits += 1
                        return self._memory[key]
                value = self._from_disk(key, load)
                if value is None:
                    self.misses += 1
                    blob = compile_()
                    value = load(blob)
                    self._to_disk(key, blob)
                else:
                    self.disk_hits += 1
                with self._lock:
                    self._memory[key] = value
                    while len(self._memory) > self._max_entries:
                        self._memory.popitem(last=False)
                return value
            finally:  # also when compiling failed: one lock per key in flight, no more
                with self._lock:
                    self._key_locks.pop(key, None)
        finally:
            key_lock.release()

    def _path(self, key: str) -> Path | None:
        return None if self._dir is None else self._dir / f"{key}.cwasm"

    def _from_disk(self, key: str, load: Callable[[bytes], T]) -> T | None:
        path = self._path(key)
        if path is None or not path.exists():
            return None
        try:
            data = path.read_bytes()
            payload = _unwrap(key, data)
            if payload is None:
                raise ValueError("corrupt or foreign artifact")
            with contextlib.suppress(OSError):  # recency for eviction; a read-only dir
                os.utime(path)                  # keeps its files as they are
            return load(payload)
        except Exception:
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def _to_disk(self, key: str, blob: bytes) -> None:
        path = self._path(key)
        if path is None or self._dir is None or len(blob) > self._max_disk_bytes:
            return
        try:  # a read-only directory (a baked image's toolchains) keeps what it has
            fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".tmp-")
        except OSError:
            return
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_wrap(key, blob))
            Path(tmp).replace(path)
        except OSError:
            with contextlib.suppress(OSError):
                Path(tmp).unlink()
            return
        self._evict_disk()

    def _evict_disk(self) -> None:
        assert self._dir is not None
        files = []
        for p in self._dir.glob("*.cwasm"):
            with contextlib.suppress(OSError):  # another process may evict it meanwhile
                st = p.stat()
                files.append((st.st_mtime, st.st_size, p))
        total = sum(size for _, size, _ in files)
        for _, size, p in sorted(files):
            if total <= self._max_disk_bytes:
                break
            with contextlib.suppress(OSError):
                p.unlink()
            total -= size


def _wrap(key: str, payload: bytes) -> bytes:
    header = key.encode() + b"\n" + hashlib.sha256(payload).digest()
    return _MAGIC + len(header).to_bytes(4, "little") + header + payload


def _unwrap(key: str, data: bytes) -> bytes | None:
    if not data.startswith(_MAGIC):
        return None
    pos = len(_MAGIC)
    hlen = int.from_bytes(data[pos : pos + 4], "little")
    header = data[pos + 4 : pos + 4 + hlen]
    payload = data[pos + 4 + hlen :]
    want = key.encode() + b"\n"
    if not header.startswith(want) or header[len(want) :] != hashlib.sha256(payload).digest():
        return None
    return payload


class ExpiringCache(Generic[T]):
    """A small bounded map whose entries expire: remembered refusals, not artifacts."""

    def __init__(self, max_entries: int, ttl_s: float) -> None:
        self._entries: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._lock = threading.Lock()

    def get(self, key: str) -> T | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            if hit[0] < time.monotonic():
                del self._entries[key]
                return None
            return hit[1]

    def discard(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def put(self, key: str, value: T) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + self._ttl_s, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
