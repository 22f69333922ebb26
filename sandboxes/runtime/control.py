"""Per-run stop control: wall deadline, cancellation, output and scratch caps.

``RunControl.check()`` runs every tick while wasm runs: from the epoch callback on the
guest's thread (wasmtime-metered engines), or from the ticker thread, which then trips the
run's interrupt page (fuel-instrumented engines: ``sandboxes.metering.interrupts``). Host calls that
block (sleeps) wait on ``RunControl.wake`` so a stop ends them too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import Enum

from sandboxes.schema import RunStatus


class StopReason(Enum):
    WALL_TIMEOUT = RunStatus.WALL_TIMEOUT
    CANCELLED = RunStatus.CANCELLED
    OUTPUT_LIMIT = RunStatus.OUTPUT_LIMIT
    SCRATCH_LIMIT = RunStatus.SCRATCH_LIMIT
    INTERNAL_ERROR = RunStatus.INTERNAL_ERROR  # a host call failed: a bug, so the run stops


class CancelToken:
    """Handed to ``Sandbox.run``; ``cancel()`` from any thread stops the run within a tick."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        with self._lock:
            self._event.set()
            listeners = list(self._listeners)
        for listener in listeners:
            listener()

    def subscribe(self, listener: Callable[[], None]) -> None:
        with self._lock:
            self._listeners.append(listener)
            fire = self._event.is_set()
        if fire:
            listener()


class WakeFlag:
    """A one-shot ``threading.Event`` (``set``, ``is_set``, ``wait``) for one run.

    A ``threading.Event`` costs ~2.6 µs to create (a Condition and its lock); this is one
    lock held from the start and released by the first ``set`` (~0.2 µs), and every run
    creates one.
    """

    __slots__ = ("_flag", "_lock")
    _set_lock = threading.Lock()  # makes the first-set check and the release one step

    def __init__(self) -> None:
        self._flag = False
        self._lock = threading.Lock()
        self._lock.acquire()

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        with WakeFlag._set_lock:
            if not self._flag:
                self._flag = True
                self._lock.release()

    def wait(self, timeout: float) -> bool:
        """Block until set or ``timeout`` seconds passed; True when set."""
        if self._flag:
            return True
        if self._lock.acquire(timeout=max(timeout, 0.0)):
            self._lock.release()
            return True
        return self._flag


class RunControl:
    """The state one run's watchdog checks; the first stop reason wins."""

    def __init__(self, wall_time_s: float, cancel: CancelToken | None = None) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + wall_time_s
        self.wake = WakeFlag()
        self.reason: StopReason | None = None
        self.exit_code: int | None = None  # what the guest passed to proc_exit
        self._periodic: list[tuple[float, float, Callable[[], StopReason | None]]] = []
        self._interrupt: Callable[[], None] | None = None
        if cancel is not None:
            cancel.subscribe(lambda: self.stop(StopReason.CANCELLED))

    def stop(self, reason: StopReason) -> None:
        if self.reason is None:
            self.reason = reason
        self.wake.set()
        interrupt = self._interrupt
        if interrupt is not None:
            interrupt()

    def attach_interrupt(self, interrupt: Callable[[], None] | None) -> None:
        """Call ``interrupt`` on every stop from now on (and at once if stopped already):
        an instrumented guest stops at its next check instead of at the next tick."""
        self._interrupt = interrupt
        if interrupt is not None and self.reason is not None:
            interrupt()

    def add_periodic_check(self, every_s: float, check: Callable[[], StopReason | None]) -> None:
        """Run ``check`` at most every ``every_s`` (e.g. a scratch-dir size scan)."""
        self._periodic.append((every_s, 0.0, check))

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def check(self) -> str | None:
        """Epoch-tick hook: None to go on, else the trap message."""
        now = time.monotonic()
        if self.reason is None and now >= self.deadline:
            self.stop(StopReason.WALL_TIMEOUT)
        if self.reason is None and self._periodic:
            for i, (every, last, fn) in enumerate(self._periodic):
                if now - last >= every:
                    self._periodic[i] = (every, now, fn)
                    found = fn()
                    if found is not None:
                        self.stop(found)
                        break
        if self.reason is None:
            return None
        return f"warden: run stopped ({self.reason.value.value})"
