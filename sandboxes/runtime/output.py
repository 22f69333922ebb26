"""Capped in-memory stdout/stderr: the cap is enforced as the guest writes."""

from __future__ import annotations

from collections.abc import Callable


class CappedSink:
    """Keeps at most ``cap`` bytes; the first byte past it calls ``on_overflow`` once.

    Writes past the cap are accepted and dropped (a short write would make the guest spin
    retrying); the run is stopped at the next epoch tick. Writers hold the GIL for each call,
    which is all the mutual exclusion a single bytearray needs.
    """

    def __init__(self, cap: int, on_overflow: Callable[[], None],
                 tee: Callable[[bytes], object] | None = None) -> None:
        self._cap = cap
        self._on_overflow = on_overflow
        self._tee = tee  # also gets every kept byte as it is written (executor processes)
        self._buf = bytearray()
        self.truncated = False

    def __call__(self, data: bytes) -> int:
        """``stdout_custom`` callback form."""
        room = self.room()
        self.write(data if len(data) <= room else data[:room], len(data))
        return len(data)

    def room(self) -> int:
        return max(self._cap - len(self._buf), 0)

    def write(self, data: bytes, length: int) -> None:
        """Record a write of ``length`` bytes of which ``data`` is the part that fits."""
        self._buf += data
        if self._tee is not None and data:
            self._tee(data)
        if length > len(data) and not self.truncated:
            self.truncated = True
            self._on_overflow()

    def value(self) -> bytes:
        return bytes(self._buf)
