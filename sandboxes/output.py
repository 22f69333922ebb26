"""Capped in-memory stdout/stderr: the cap is enforced as the guest writes."""

from __future__ import annotations

import threading
from collections.abc import Callable


class CappedSink:
    """Keeps at most ``cap`` bytes; the first byte past it calls ``on_overflow`` once.

    Writes past the cap are accepted and dropped (a short write would make the guest spin
    retrying); the run is stopped at the next epoch tick.
    """

    def __init__(self, cap: int, on_overflow: Callable[[], None]) -> None:
        self._cap = cap
        self._on_overflow = on_overflow
        self._buf = bytearray()
        self._lock = threading.Lock()
        self.truncated = False

    def __call__(self, data: bytes) -> int:
        with self._lock:
            room = self._cap - len(self._buf)
            if len(data) <= room:
                self._buf += data
                return len(data)
            self._buf += data[: max(room, 0)]
            first = not self.truncated
            self.truncated = True
        if first:
            self._on_overflow()
        return len(data)

    def room(self) -> int:
        return max(self._cap - len(self._buf), 0)

    def write(self, data: bytes, length: int) -> None:
        """Record a write of ``length`` bytes of which ``data`` is the part that fits."""
        with self._lock:
            self._buf += data
            over = length > len(data)
            first = over and not self.truncated
            if over:
                self.truncated = True
        if first:
            self._on_overflow()

    def value(self) -> bytes:
        with self._lock:
            return bytes(self._buf)
