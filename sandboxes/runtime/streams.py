"""Streams between two runs (interactive judging): one run's stdout is the other's stdin.

A :class:`ByteStream` is an in-memory pipe. The writer is the other run's stdout sink (its
output cap bounds what the pipe can hold); the reader is the guest's ``fd_read`` on stdin,
which blocks until bytes come, the writer closes (end of file), or the run is stopped (its
wall-clock cap, a cancel): a guest waiting for input for ever ends at its wall limit and
never holds a lane. Waiting costs no fuel: the time is spent in a host call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from sandboxes.runtime.control import RunControl, StopReason
from sandboxes.wasi.memfs import ReadOnlyData

_STOP_POLL_S: Final = 0.05  # how soon a blocked read notices a stop (data wakes it at once)


class StreamStoppedError(Exception):
    """The run was stopped while its guest waited for input."""


class ByteStream:
    def __init__(self) -> None:
        self._buf = bytearray()
        self._closed = False
        self._cond = threading.Condition()

    def write(self, data: bytes) -> int:
        with self._cond:
            if not self._closed:
                self._buf += data
                self._cond.notify_all()
        return len(data)

    def close(self) -> None:
        """End of file for the reader (after what is buffered)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def read(self, n: int, control: RunControl) -> bytes:
        """Up to ``n`` bytes, blocking until at least one is there; b"" at end of file.
        StreamStoppedError when the run is stopped (or its wall deadline passes) first."""
        with self._cond:
            while not self._buf and not self._closed:
                if control.remaining() <= 0:
                    control.stop(StopReason.WALL_TIMEOUT)
                if control.reason is not None:
                    raise StreamStoppedError
                self._cond.wait(min(_STOP_POLL_S, max(control.remaining(), 0.001)))
            data = bytes(self._buf[:n])
            del self._buf[:n]
            return data


MAX_COLLECTED_FILES: Final = 16  # RunIO.collect_limits' default: a checker's message or
MAX_COLLECTED_BYTES: Final = 64 * 1024  # score, per file


@dataclass
class RunIO:
    """What a run gets besides its grants: a stdin stream (instead of ``grants.stdin``), a
    tee of its stdout as written, and a dict to fill with the files its scratch dir holds at
    the end (read from Warden's in-memory tree, never a host path)."""

    stdin: ByteStream | None = None
    stdout_tee: Callable[[bytes], object] | None = None
    scratch_files: dict[str, bytes] | None = None
    ended_at: float | None = None  # monotonic time the guest ended (set by the sandbox)
    # Warden's own runs (a compiler in the sandbox): read-only files of a toolchain beside
    # the grants (not bound by the grants' limits: Warden provides them), files the scratch
    # dir starts with (charged to its quota), and how much of the scratch dir to collect.
    system_files: Mapping[str, ReadOnlyData] | None = None
    scratch_seed: Mapping[str, bytes] | None = None
    collect_limits: tuple[int, int] = (MAX_COLLECTED_FILES, MAX_COLLECTED_BYTES)  # files,
    # bytes per file

    def mark_ended(self) -> None:
        self.ended_at = time.monotonic()


