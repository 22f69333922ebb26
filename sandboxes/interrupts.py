"""Interrupt pages: how the host stops a fuel-instrumented guest from another thread.

Code rewritten by ``sandboxes.fuel_rewriter`` compares its fuel with the i64 at address 0
of an imported one-page shared memory at every function entry and loop header: 0 lets it
run, INT64_MAX makes the next check trap. One compare serves both the fuel limit and every
stop (timeout, cancel, output cap), and it is not a call, so the hot loop keeps its
registers (wasmtime's epoch check is).

Each concurrent run holds its own page (a slot), so the compiled code needs no slot index.
A slot remembers which run holds it: a stop that arrives after the run gave the slot back
(and another run took it) must not trip the new run.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable

import wasmtime

from sandboxes.fuel_rewriter import INTERRUPT_MODULE, INTERRUPT_NAME
from sandboxes.wasmtime_ext import define_shared_memory

TRIPPED = 2**63 - 1
ARMED = 0

# fast stdio path -> a WASI linker for the engine (sandboxes.wasi_p1.build_linker)
LinkerFactory = Callable[[bool], wasmtime.Linker]


class InterruptSlot:
    """One page and the linkers that import it; held by one run at a time."""

    __slots__ = ("_linkers", "_lock", "_memory", "_owner", "_pages", "_word", "index")

    def __init__(self, index: int, pages: InterruptPages) -> None:
        self.index = index
        self._pages = pages
        self._memory = wasmtime.SharedMemory(
            pages.engine, wasmtime.MemoryType(wasmtime.Limits(1, 1), shared=True)
        )
        # An aligned 8-byte store, which the guest reads with i64.atomic.load.
        self._word = ctypes.cast(self._memory.data_ptr(), ctypes.POINTER(ctypes.c_int64))
        self._owner: object | None = None
        self._lock = pages.lock
        self._linkers: dict[bool, wasmtime.Linker] = {}

    def linker(self, fast_stdio: bool) -> wasmtime.Linker:
        """The WASI linker of this slot (built on first use; only its holder calls this)."""
        linker = self._linkers.get(fast_stdio)
        if linker is None:
            linker = self._pages.make_linker(fast_stdio)
            define_shared_memory(
                linker, self._pages.engine, INTERRUPT_MODULE, INTERRUPT_NAME, self._memory
            )
            self._linkers[fast_stdio] = linker
        return linker

    def interrupter(self, owner: object) -> Callable[[], None]:
        """A callable that trips this page if ``owner`` still holds it."""

        def trip() -> None:
            with self._lock:
                if self._owner is owner:
                    self._word[0] = TRIPPED

        return trip

    @property
    def tripped(self) -> bool:
        return bool(self._word[0] == TRIPPED)

    def _take(self, owner: object) -> None:
        self._owner = owner
        self._word[0] = ARMED

    def _give_back(self) -> None:
        self._owner = None
        self._word[0] = ARMED


class InterruptPages:
    """The slots of one instrumented engine. Most recently freed slot first, so a busy
    process keeps reusing a few slots whose linkers and instance-pres already exist."""

    def __init__(self, engine: wasmtime.Engine, make_linker: LinkerFactory) -> None:
        self.engine = engine
        self.make_linker = make_linker
        self.lock = threading.Lock()
        self._free: list[InterruptSlot] = []
        self._count = 0

    def acquire(self, owner: object) -> InterruptSlot:
        with self.lock:
            if self._free:
                slot = self._free.pop()
            else:
                slot = InterruptSlot(self._count, self)
                self._count += 1
            slot._take(owner)
        return slot

    def release(self, slot: InterruptSlot) -> None:
        with self.lock:
            slot._give_back()
            self._free.append(slot)

    @property
    def size(self) -> int:
        """Slots created so far (the most runs this engine has had at once)."""
        return self._count
