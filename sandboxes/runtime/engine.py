"""Engines: one wasmtime configuration, its fingerprint, and the ticker that drives it.

Two kinds, both deny-by-default (memory64, GC and exception handling off):

* metered by wasmtime: its fuel and epochs on; threads and multi-memory off. Components and
  any core module the fuel rewriter cannot handle run here.
* instrumented (``instrumented=True``): for core modules rewritten by
  ``sandboxes.metering.fuel_rewriter``, which carry their own fuel counter and interrupt check, so
  wasmtime's fuel and epochs are off (they cost the sieve 2.8x native; the rewriter ~1.4x).
  Threads (atomics) and multi-memory are on only because the rewritten code reads its
  interrupt word atomically from a second, one-page memory: the guest's *original* module
  is validated on the metered engine's feature set first, and the rewriter refuses modules
  that use its reserved names, so the guest itself can use neither.

The wasm stack limit is an engine setting, so there is one engine per (power-of-two) stack
size and kind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version

import wasmtime

from sandboxes.metering.fuel_rewriter import REWRITER_VERSION
from sandboxes.runtime.wasmtime_ext import set_async_stack_size, use_pooling_allocator

WASMTIME_VERSION = version("wasmtime")


@dataclass(frozen=True)
class EngineSpec:
    """What an engine is built from; equal specs give interchangeable compiled artifacts."""

    stack_bytes: int
    instrumented: bool = False

    def settings(self) -> dict[str, object]:
        wasmtime_meters = not self.instrumented
        return {
            "wasmtime": WASMTIME_VERSION,
            "strategy": "cranelift",
            "opt_level": "speed",
            "consume_fuel": wasmtime_meters,
            "epoch_interruption": wasmtime_meters,
            "max_wasm_stack": self.stack_bytes,
            "threads": self.instrumented,
            "memory64": False,
            "multi_memory": self.instrumented,
            "gc": False,
            "exceptions": False,
            "component_model": True,
            "fuel_rewriter": REWRITER_VERSION if self.instrumented else None,
        }

    def strict(self) -> EngineSpec:
        """The metered spec of the same stack size: what a guest's own module must pass."""
        return EngineSpec(self.stack_bytes)

    @property
    def fingerprint(self) -> str:
        """Cache key part: serialized code is only valid for this exact version and config."""
        blob = json.dumps(self.settings(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def build(self, *, pooled: bool = False) -> wasmtime.Engine:
        """The engine; ``pooled`` for one that runs guests (see ``POOL_LIMITS``).

        Compiled code does not depend on the allocator (serialized artifacts are byte-equal),
        so the compile helper, which runs under an address-space cap that a pool's
        reservation would exceed, builds an unpooled engine with the same fingerprint.
        """
        cfg = wasmtime.Config()
        cfg.strategy = "cranelift"
        cfg.cranelift_opt_level = "speed"
        cfg.consume_fuel = not self.instrumented
        cfg.epoch_interruption = not self.instrumented
        # wasmtime refuses (the C API aborts the process) a max_wasm_stack above its async
        # stack size, 2 MiB by default, even though sync calls never use an async stack.
        set_async_stack_size(cfg, self.stack_bytes + ASYNC_STACK_SLACK_BYTES)
        cfg.max_wasm_stack = self.stack_bytes
        cfg.wasm_threads = self.instrumented
        cfg.wasm_memory64 = False
        cfg.wasm_multi_memory = self.instrumented
        cfg.wasm_gc = False
        cfg.wasm_exceptions = False  # the fuel rewriter cannot meter them
        cfg.wasm_component_model = True
        if pooled and _can_reserve(_pool_reservation_bytes(self.pool_limits)):
            use_pooling_allocator(cfg, self.pool_limits)
        return wasmtime.Engine(cfg)

    @property
    def pool_limits(self) -> dict[str, int]:
        """``POOL_LIMITS``; an instrumented core module has one memory more (its page)."""
        if not self.instrumented:
            return POOL_LIMITS
        return POOL_LIMITS | {
            "total_memories": 2 * POOL_LIMITS["total_memories"],
            "max_memories_per_module": 2,
        }

    def build_for_runs(self) -> tuple[wasmtime.Engine, int | None]:
        """A pooled engine if the address space allows, and its run capacity in units
        (``POOL_RUN_UNITS``; None: on-demand allocator, no pool to exhaust)."""
        pooled = _can_reserve(_pool_reservation_bytes(self.pool_limits))
        return self.build(pooled=pooled), POOL_RUN_UNITS if pooled else None


# The pooling allocator: instance, memory and table slots reserved once per engine and
# reused, instead of an mmap/munmap of a 4 GiB + guard reservation per run (hello:
# instantiate + store drop ~31 -> ~12 µs). Pool sizes sit above every per-store limit
# Sandbox sets (``Store.set_limits`` and LIMIT_BOUNDS), so those limits, and their error
# messages, still decide; the pool only bounds how many guests one engine runs at once.
# Freed slots are decommitted (keep-resident 0): a new store sees zeroed memory and tables.
# Address space per engine: memories 128 x (4 GiB + guard) ~ 0.5 TiB, tables 1024 x 80 MB,
# instances 1024 x 32 MiB: reserved, not committed (~0.6 TiB of the 128 TiB user space).
POOL_LIMITS: dict[str, int] = {
    "total_memories": 128,  # one per core run (multi-memory is off), one per component run
    "max_memory_size": 4 * 1024**3,  # LIMIT_BOUNDS memory_bytes maximum
    "max_memories_per_module": 1,
    "max_memories_per_component": 16,  # the store limit (components.MAX_MEMORIES) refuses more
    "total_tables": 1024,
    "table_elements": 10_000_000,  # LIMIT_BOUNDS table_elements maximum
    "max_tables_per_module": 64,  # the store limit (4 per core module) refuses more
    "max_tables_per_component": 64,
    "total_core_instances": 1024,
    "max_core_instance_size": 32 * 1024**2,  # VMContext bytes: grows with funcs/globals
    "total_component_instances": 128,
    "max_component_instance_size": 32 * 1024**2,
    "max_core_instances_per_component": 64,  # the store limit for components
    # Async fiber stacks: Warden only makes synchronous calls, which run on the calling
    # thread's stack; without this the pool reserves 1000 x the async stack size.
    "total_stacks": 1,
}
ASYNC_STACK_SLACK_BYTES = 1024**2
# Admission, so a busy process waits for a slot instead of failing instantiation ("maximum
# concurrent limit ... reached"): a core run takes 1 unit (<= 1 memory, 1 instance, 4
# tables), a component run 8 (<= 1 memory, 64 core instances, 64 tables). 128 units keep
# every mix within the pools: memories <= 128, core instances and tables <= 8 x 128.
POOL_RUN_UNITS = 128
CORE_RUN_UNITS = 1
COMPONENT_RUN_UNITS = 8
_GUARD_BYTES = 64 * 1024**2  # wasmtime's default guard (32 MiB), doubled for slack
_MAP_NORESERVE = 0x4000  # Linux; Python 3.11's mmap module does not name it

log = logging.getLogger(__name__)


def _pool_reservation_bytes(lim: dict[str, int]) -> int:
    """An upper bound of the address space a pooled engine reserves (~0.6 TiB; ~1.1 TiB
    for an instrumented one)."""
    memories = lim["total_memories"] * (lim["max_memory_size"] + _GUARD_BYTES)
    tables = lim["total_tables"] * lim["table_elements"] * 8
    instances = lim["total_core_instances"] * lim["max_core_instance_size"]
    components = lim["total_component_instances"] * lim["max_component_instance_size"]
    return memories + tables + instances + components


def _can_reserve(size: int) -> bool:
    """Whether ``size`` bytes of address space can be reserved now (then released).

    wasmtime *aborts the process* when a pool's reservation fails (the C API unwraps the
    engine's creation), e.g. under ``ulimit -v`` or valgrind: check first, and fall back
    to the on-demand allocator (same code and limits, ~20 µs more per run).
    """
    try:
        probe = mmap.mmap(
            -1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE, prot=0
        )
    except (OSError, OverflowError, ValueError) as exc:
        log.warning("no address space for the pooling allocator (%s): using on-demand", exc)
        return False
    probe.close()
    return True


def stack_class(stack_bytes: int) -> int:
    """Round up to a power of two so few engines exist (each holds its own compiled code)."""
    size = 64 * 1024
    while size < stack_bytes:
        size *= 2
    return size


_LINGER_S = 1.0


class EpochTicker:
    """Increments an engine's epoch (if it uses epochs) and calls the watched runs' checks
    every ``tick_s`` while at least one run is active.

    Each run's deadline callback is consulted once per tick, so the tick bounds how late a
    timeout, cancel or output-cap stop can land. An engine stops ticking after ``_LINGER_S``
    without runs (waking the thread for every short run costs more than the ticks).

    With a ``capacity`` (pooled engines), runs enter through ``core`` or ``component``, which
    wait while the engine's pool could not hold one more run of that kind (only past
    ``POOL_RUN_UNITS`` concurrent runs). The wait comes before the run's wall clock starts;
    a cancel during it takes effect as soon as the run starts.
    """

    def __init__(
        self,
        engine: wasmtime.Engine,
        tick_s: float,
        capacity: int | None = None,
        epochs: bool = True,
    ) -> None:
        self._engine = engine
        self._epochs = epochs  # False: an instrumented engine, which has no epoch checks
        self._tick_s = tick_s
        self._active = 0
        self._lock = threading.Lock()
        self._busy = threading.Event()
        self._capacity = capacity
        self._used = 0
        self._waiting = 0
        self._room = threading.Condition(self._lock)
        self.core = _Admission(self, CORE_RUN_UNITS)
        self.component = _Admission(self, COMPONENT_RUN_UNITS)
        self._watched: dict[int, Callable[[], object]] = {}
        self._thread = threading.Thread(target=self._loop, name="warden-epoch", daemon=True)
        self._thread.start()

    def watch(self, key: int, check: Callable[[], object]) -> None:
        """Call ``check`` every tick until ``unwatch(key)``: the deadline of a run on an
        instrumented engine, where no epoch callback runs on the guest's thread."""
        self._watched[key] = check

    def unwatch(self, key: int) -> None:
        self._watched.pop(key, None)

    def _loop(self) -> None:
        idle_since: float | None = None
        while True:
            self._busy.wait()
            time.sleep(self._tick_s)
            if self._epochs:
                self._engine.increment_epoch()
            for check in list(self._watched.values()):
                try:
                    check()
                except Exception:  # one run's broken check must not stop every deadline
                    log.exception("run check failed on the ticker thread")
            with self._lock:
                if self._active:
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > _LINGER_S:
                    self._busy.clear()
                    idle_since = None

    def enter(self, units: int) -> None:
        with self._lock:
            if self._capacity is not None:
                while self._used and self._used + units > self._capacity:
                    self._waiting += 1
                    try:
                        self._room.wait()
                    finally:
                        self._waiting -= 1
                self._used += units
            self._active += 1
            # The ticker clears ``_busy`` only under this lock, after lingering idle, so a
            # run that finds it set needs no Event.set (Condition lock + notify: ~1.5 µs).
            if self._active == 1 and not self._busy.is_set():
                self._busy.set()

    def exit(self, units: int) -> None:
        with self._lock:
            self._active -= 1
            if self._capacity is not None:
                self._used -= units
                if self._waiting:
                    self._room.notify_all()

    def __enter__(self) -> EpochTicker:
        self.enter(CORE_RUN_UNITS)
        return self

    def __exit__(self, *exc: object) -> None:
        self.exit(CORE_RUN_UNITS)


class _Admission:
    """``with ticker.core:`` / ``with ticker.component:``: one run of that kind."""

    __slots__ = ("_ticker", "_units")

    def __init__(self, ticker: EpochTicker, units: int) -> None:
        self._ticker = ticker
        self._units = units

    def __enter__(self) -> None:
        self._ticker.enter(self._units)

    def __exit__(self, *exc: object) -> None:
        self._ticker.exit(self._units)
