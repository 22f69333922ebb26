"""How the host stops a fuel-instrumented guest from another thread.

Code rewritten by ``sandboxes.metering.fuel_rewriter`` compares its fuel with the i64 at address 0
of a one-page memory of its own (exported as ``__warden_interrupt``) at every function
entry and loop header: 0 lets it run, ``TRIPPED`` makes the next check trap. One compare
serves the fuel limit and every stop (timeout, cancel, output cap), and it is not a call,
so the hot loop keeps its registers (wasmtime's epoch check is a call).

The page is the instance's own memory, written here through its address: an aligned
8-byte store, which the guest reads with ``i64.atomic.load`` (never hoisted or merged).
The address is only used between ``attach`` (after instantiation) and ``detach`` (before
the store is closed), under a lock, so a stop that comes late writes nowhere.
"""

from __future__ import annotations

import ctypes
import threading

from sandboxes.metering.fuel_rewriter import TRIPPED


class Interrupt:
    """One run's interrupt word; ``trip`` from any thread, before, during or after it."""

    __slots__ = ("_lock", "_pending", "_word")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._word: ctypes._Pointer[ctypes.c_int64] | None = None
        self._pending = False  # tripped before the instance existed

    def attach(self, address: int) -> None:
        """The live instance's page is at ``address`` (word 0 is the interrupt word)."""
        with self._lock:
            self._word = ctypes.cast(address, ctypes.POINTER(ctypes.c_int64))
            if self._pending:
                self._word[0] = TRIPPED

    def trip(self) -> None:
        with self._lock:
            if self._word is not None:
                self._word[0] = TRIPPED
            else:
                self._pending = True

    def detach(self) -> None:
        """The instance is about to go: no write may reach its memory any more."""
        with self._lock:
            self._word = None

    @property
    def tripped(self) -> bool:
        with self._lock:
            return self._pending or (self._word is not None and self._word[0] == TRIPPED)
