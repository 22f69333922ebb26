"""``Sandbox.run``: one module, its limits and grants in; a RunResult out. Never raises.

A Sandbox owns the engines (one per stack class), their epoch tickers and linkers, and the
artifact cache. It is thread-safe: wasmtime releases the GIL while wasm runs, so several
runs can share one process.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import wasmtime
import wasmtime.component

from sandboxes.compilation.artifacts import ArtifactCache, ExpiringCache
from sandboxes.compilation.compiler import CompilerProcess, CompileTimeoutError
from sandboxes.compilation.entry import NO_START
from sandboxes.compilation.modules import ModuleBytes, ModuleKind, decode_module
from sandboxes.errors import SandboxError
from sandboxes.metering.fuel_rewriter import (
    FUEL_GLOBAL,
    INTERRUPT_EXPORT,
    START_EXPORT,
    TRAP_GLOBAL,
)
from sandboxes.metering.interrupts import Interrupt
from sandboxes.runtime import components, wasmtime_ext
from sandboxes.runtime.control import CancelToken, RunControl, StopReason
from sandboxes.runtime.engine import EngineSpec, EpochTicker, stack_class
from sandboxes.runtime.executor import ComponentExecutors
from sandboxes.runtime.outcome import Outcome, classify
from sandboxes.runtime.output import CappedSink
from sandboxes.runtime.stacks import call_with_stack
from sandboxes.runtime.streams import RunIO
from sandboxes.runtime.wasmtime_ext import set_deadline_check, set_stdin_bytes
from sandboxes.schema import (
    MAX_SCRATCH_ENTRIES,
    SCRATCH_GUEST_DIR,
    Grants,
    Limits,
    RunResult,
    RunStatus,
    TrapKind,
)
from sandboxes.settings import Settings, get_settings
from sandboxes.wasi.descriptors import RunFiles
from sandboxes.wasi.memfs import Quota
from sandboxes.wasi.preview1 import EXIT_TRAP, WASI_P1, bind_run, build_linker
from sandboxes.wasi.workspace import FileTrees, remove_stale_scratch

log = logging.getLogger(__name__)

# Peak memory this close to the limit (within a quarter) on an abnormal end means an
# allocation was refused: wasmtime-py exposes no limiter callback to say so directly, and
# allocators ask for big chunks (QuickJS failed a 16 MB array at 86 of 96 MiB).
_MEMORY_SLACK_FRACTION = 4
# Modules whose compile failed (invalid, too slow, too big) are refused at once for a while;
# not for ever: a compile timeout depends on the machine's load.
_REFUSED_COMPILES = 1024
_REFUSED_COMPILE_TTL_S = 600.0
_RETRY_FACTOR = 1.1  # a timed-out module is compiled again only with a larger budget


# How guests react to a refused allocation: abort (unreachable), an error exit, or a bad
# access through what they did get. A divide by zero or a stack overflow is the guest's own.
_ALLOCATION_FAILURE_TRAPS = frozenset(
    {TrapKind.UNREACHABLE, TrapKind.OTHER, TrapKind.MEMORY_OUT_OF_BOUNDS}
)


def _ends_like_failed_allocation(outcome: Outcome) -> bool:
    return outcome.status is RunStatus.NONZERO_EXIT or (
        outcome.status is RunStatus.TRAP and outcome.trap_kind in _ALLOCATION_FAILURE_TRAPS
    )


@dataclass
class EngineContext:
    spec: EngineSpec
    engine: wasmtime.Engine
    ticker: EpochTicker
    linker: wasmtime.Linker  # core modules: WASI preview1 with Warden's files
    component_linker: wasmtime.component.Linker


@dataclass
class Prepared:
    """A module compiled and linked for one engine, ready to instantiate many times."""

    module: ModuleBytes
    ctx: EngineContext
    pre: wasmtime.InstancePre | None = None
    compiled: wasmtime.Module | None = None
    component: wasmtime.component.Component | None = None
    artifact: bytes | None = None  # components: the serialized code an executor loads
    has_start_export: bool = False  # instrumented: the module's start function, moved

    @property
    def instrumented(self) -> bool:
        return self.ctx.spec.instrumented


_TOOLCHAIN_MEMORY_ENTRIES = 16
_TOOLCHAIN_DISK_BYTES = 4 * 1024**3


class Sandbox:
    def __init__(self, settings: Settings | None = None,
                 components_in_process: bool = False) -> None:
        """``components_in_process``: run WASI P2 components on this process's own threads
        (only the executor process does); otherwise they run in killable executors."""
        self.settings = settings or get_settings()
        self.executors = None if components_in_process else ComponentExecutors(self.settings)
        self._engines: dict[tuple[int, bool], EngineContext] = {}
        self.file_trees = FileTrees(self.settings.file_trees_root)
        remove_stale_scratch(self.settings.scratch_root)
        self._lock = threading.Lock()
        self.compiler = CompilerProcess(
            self.settings.compile_timeout_s, self.settings.compile_memory_bytes
        )
        self._refused_compiles: ExpiringCache[SandboxError] = ExpiringCache(
            _REFUSED_COMPILES, _REFUSED_COMPILE_TTL_S
        )
        cache_dir = self.settings.cache_dir if self.settings.disk_cache_bytes > 0 else None
        self.cache: ArtifactCache[Prepared | SandboxError] = ArtifactCache(
            cache_dir, self.settings.memory_cache_entries, self.settings.disk_cache_bytes
        )
        # Trusted modules (interpreters, compilers) are Warden's own, the same for every
        # data dir: their machine code is kept beside the toolchains, compiled once per
        # machine (the compiler's takes minutes), never evicted by tenants' modules.
        self.toolchain_cache: ArtifactCache[Prepared | SandboxError] = ArtifactCache(
            self.settings.toolchain_dir / "artifacts", _TOOLCHAIN_MEMORY_ENTRIES,
            _TOOLCHAIN_DISK_BYTES)

    def close(self) -> None:
        """Stop the helper processes (compile helper, component executors)."""
        self.compiler.close()
        if self.executors is not None:
            self.executors.close()

    # -- engines -------------------------------------------------------------------------
    def engine_context(self, stack_bytes: int, instrumented: bool = False) -> EngineContext:
        size = stack_class(stack_bytes)
        with self._lock:
            ctx = self._engines.get((size, instrumented))
            if ctx is None:
                spec = EngineSpec(size, instrumented)
                engine, capacity = spec.build_for_runs()

                ctx = EngineContext(
                    spec,
                    engine,
                    EpochTicker(
                        engine, self.settings.epoch_tick_s, capacity, epochs=not instrumented
                    ),
                    build_linker(engine),
                    _component_linker(engine),
                )
                self._engines[(size, instrumented)] = ctx
            return ctx

    # -- compile -------------------------------------------------------------------------
    def prepare(
        self, source: bytes | str, limits: Limits, compile_timeout_s: float | None = None
    ) -> Prepared:
        """Decode, compile (bounded, cached) and link; SandboxError if the module can't run."""
        return self.prepare_timed(source, limits, compile_timeout_s)[0]

    def prepare_timed(
        self, source: bytes | str, limits: Limits, compile_timeout_s: float | None = None,
        trusted_module_bytes: int | None = None, instrument: bool = True,
    ) -> tuple[Prepared, float]:
        """``prepare``, and the seconds this call spent compiling (0 on a cache hit).

        The compile is bounded by ``limits.compile_time_s`` (under the worker's cap), or by
        ``compile_timeout_s`` for trusted modules (interpreters, compilers). Core modules
        go to the fuel-instrumented engine (unless disabled in the settings, or
        ``instrument`` is False: a toolchain too large for the rewriter), components to
        the wasmtime-metered one. ``trusted_module_bytes``: a trusted module's size bound,
        in place of the tenant limit's (a compiler can be larger than any job's module).
        """
        module = decode_module(source, trusted_module_bytes or limits.module_bytes)
        instrumented = (
            instrument and self.settings.fuel_instrumentation
            and module.kind is ModuleKind.CORE
        )
        ctx = self.engine_context(limits.stack_bytes, instrumented)
        key = f"{module.kind.value}-{module.sha256}-{ctx.spec.fingerprint}"
        trusted = compile_timeout_s is not None
        budget = compile_timeout_s if trusted else min(
            limits.compile_time_s, self.settings.compile_timeout_s)
        assert budget is not None

        deadline = time.monotonic() + budget
        self._raise_if_refused(key, budget)
        spent = [0.0]

        def compile_() -> bytes:
            # Run once this job holds the key: another job's compile of it may have just
            # been refused (then so is this one), and the wait came out of this budget.
            self._raise_if_refused(key, budget)
            left = deadline - time.monotonic()
            if left <= 0:
                raise CompileTimeoutError(budget)
            started = time.perf_counter()
            try:
                blob = self.compiler.compile(module, ctx.spec, left, background=trusted)
            except CompileTimeoutError as err:
                # A module that takes all the time it was given is refused at once for a
                # while (for budgets no larger): it cannot take a helper's time again and
                # again. The job hears of its whole budget.
                if not trusted:
                    self._refused_compiles.put(key, err)
                raise CompileTimeoutError(budget) from None
            except SandboxError as err:  # invalid, too big: refused the same way
                if not trusted:
                    self._refused_compiles.put(key, err)
                raise
            finally:
                spent[0] = time.perf_counter() - started
            self._refused_compiles.discard(key)  # it compiled (with a larger budget)
            return blob

        def load(blob: bytes) -> Prepared | SandboxError:
            return _link(module, ctx, blob)

        cache = self.toolchain_cache if trusted else self.cache
        try:  # waiting for another job's compile of the same module counts too
            prepared = cache.get(key, compile_, load, wait_s=budget)
        except TimeoutError:
            raise CompileTimeoutError(budget) from None
        if isinstance(prepared, SandboxError):
            raise prepared
        return prepared, spent[0]

    def _raise_if_refused(self, key: str, budget: float) -> None:
        """The module's remembered failure, again. A timeout is remembered with the time
        the compile had (less than its job's budget after a wait): a budget more than
        ``_RETRY_FACTOR`` times that tries again, any other is refused at once."""
        refused = self._refused_compiles.get(key)
        if refused is None:
            return
        if isinstance(refused, CompileTimeoutError):
            if budget > refused.budget_s * _RETRY_FACTOR:
                return
            raise CompileTimeoutError(budget)
        raise refused

    # -- run -----------------------------------------------------------------------------
    def run(
        self,
        source: bytes | str,
        limits: Limits | None = None,
        grants: Grants | None = None,
        cancel: CancelToken | None = None,
    ) -> RunResult:
        """Run a WASI command under ``limits`` with only ``grants``. Never raises."""
        limits = limits or Limits()
        grants = grants or Grants()
        started = time.perf_counter()
        compile_s: float | None = None
        try:
            prepared, compile_s = self.prepare_timed(source, limits)
            result = self.run_prepared(prepared, limits, grants, cancel)
            result.compile_time_s = compile_s
            return result
        except SandboxError as err:  # refused while compiling, or before the guest started
            elapsed = time.perf_counter() - started
            return RunResult(
                status=err.status,
                message=err.message,
                wall_time_s=0.0 if compile_s is None else elapsed - compile_s,
                compile_time_s=elapsed if compile_s is None else compile_s,
            )
        except Exception:
            log.exception("internal error in sandbox run")
            return RunResult(
                status=RunStatus.INTERNAL_ERROR,
                message="internal error (logged on the worker)",
                wall_time_s=time.perf_counter() - started,
            )

    def run_prepared(
        self,
        prepared: Prepared,
        limits: Limits,
        grants: Grants,
        cancel: CancelToken | None = None,
        argv0: str = "main.wasm",
        io: RunIO | None = None,
    ) -> RunResult:
        """Run a prepared module. A core run holds its engine's ticker (and, for a pooled
        engine, pool slots) from before its store exists until after the store is closed;
        a component runs in an executor process (``sandboxes.runtime.executor``). ``io``
        (core modules only): a stdin stream, a stdout tee, scratch files to collect."""
        if prepared.module.kind is ModuleKind.COMPONENT:
            if io is not None:
                return RunResult(status=RunStatus.UNSUPPORTED, message=_NO_COMPONENT_IO)
            return self._run_component(prepared, limits, grants, cancel, argv0)
        ticker = prepared.ctx.ticker

        def run() -> RunResult:
            with ticker.core:
                return self._run_prepared(prepared, limits, grants, cancel, argv0, io=io)

        return call_with_stack(prepared.ctx.spec.stack_bytes, run)

    def _run_component(self, prepared: Prepared, limits: Limits, grants: Grants,
                       cancel: CancelToken | None, argv0: str) -> RunResult:
        if grants.scratch is not None:
            return RunResult(status=RunStatus.UNSUPPORTED, message=_NO_COMPONENT_SCRATCH)
        tree_key, files_dir = self.file_trees.acquire(grants.files) if grants.files else (
            None, None)
        try:
            if self.executors is None:
                return self.run_component_here(prepared, limits, grants, cancel, argv0,
                                               files_dir)
            assert prepared.artifact is not None
            key = f"{prepared.module.sha256}-{prepared.ctx.spec.fingerprint}"
            return self.executors.run(key, prepared.artifact, prepared.ctx.spec.stack_bytes,
                                      limits, grants, files_dir, cancel, argv0)
        finally:
            if tree_key is not None:
                self.file_trees.release(tree_key)

    def run_component_here(
        self, prepared: Prepared, limits: Limits, grants: Grants, cancel: CancelToken | None,
        argv0: str, files_dir: str | None,
        tees: tuple[Callable[[bytes], object], Callable[[bytes], object]] | None = None,
    ) -> RunResult:
        """Run a component on this process's threads (in an executor): ``files_dir`` holds
        its granted files (preopened read-only), ``tees`` also get its output as written."""
        ticker = prepared.ctx.ticker

        def run() -> RunResult:
            with ticker.component:
                return self._run_prepared(prepared, limits, grants, cancel, argv0,
                                          files_dir, tees)

        return call_with_stack(prepared.ctx.spec.stack_bytes, run)

    def load_component(self, artifact: bytes, stack_bytes: int) -> Prepared:
        """A component from the serialized code a worker sends its executor."""
        ctx = self.engine_context(stack_bytes, instrumented=False)
        module = ModuleBytes(ModuleKind.COMPONENT, b"", hashlib.sha256(artifact).hexdigest())
        prepared = _link(module, ctx, artifact)
        if isinstance(prepared, SandboxError):
            raise prepared
        return prepared

    def _run_prepared(
        self,
        prepared: Prepared,
        limits: Limits,
        grants: Grants,
        cancel: CancelToken | None,
        argv0: str,
        files_dir: str | None = None,
        tees: tuple[Callable[[bytes], object], Callable[[bytes], object]] | None = None,
        io: RunIO | None = None,
    ) -> RunResult:
        control = RunControl(limits.wall_time_s, cancel)
        tee_out, tee_err = tees or (None, None)
        if io is not None and io.stdout_tee is not None:
            tee_out = io.stdout_tee
        stdout = CappedSink(limits.stdout_bytes, lambda: control.stop(StopReason.OUTPUT_LIMIT),
                            tee_out)
        stderr = CappedSink(limits.stderr_bytes, lambda: control.stop(StopReason.OUTPUT_LIMIT),
                            tee_err)
        is_component = prepared.module.kind is ModuleKind.COMPONENT
        store = wasmtime.Store(prepared.ctx.engine)
        store.set_limits(
            memory_size=limits.memory_bytes,
            table_elements=limits.table_elements,
            instances=64 if is_component else 1,
            tables=64 if is_component else 4,
            memories=components.MAX_MEMORIES if is_component else 1 + prepared.instrumented,
        )
        interrupt = Interrupt() if prepared.instrumented else None
        if interrupt is None:
            store.set_fuel(limits.fuel)
        wasi = wasmtime.WasiConfig()
        wasmtime_ext.set_argv(wasi, (argv0, *grants.args))
        if grants.env:  # a new WasiConfig has no environment
            wasi.env = list(grants.env.items())
        files: RunFiles | None = None
        if is_component:  # WASI P2 through wasmtime: stdio in capped sinks, files read-only
            if grants.stdin:
                set_stdin_bytes(wasi, grants.stdin)
            wasi.stdout_custom = stdout
            wasi.stderr_custom = stderr
            if files_dir is not None:
                wasi.preopen_dir(files_dir, "/", False)
        else:  # every descriptor is Warden's, over in-memory trees
            scratch = None
            if grants.scratch is not None:
                quota = Quota(grants.scratch.quota_bytes, MAX_SCRATCH_ENTRIES,
                              lambda: control.stop(StopReason.SCRATCH_LIMIT))
                scratch = (SCRATCH_GUEST_DIR, quota)
            stdin = io.stdin if io is not None and io.stdin is not None else grants.stdin
            files = RunFiles(stdin, stdout, stderr, grants.files, scratch, control,
                             io.system_files if io is not None else None,
                             io.scratch_seed if io is not None else None)
        ticker = prepared.ctx.ticker
        store.set_wasi(wasi)
        if interrupt is None:
            set_deadline_check(store, control.check)
        else:  # the ticker thread checks the deadline; any stop trips the page
            control.attach_interrupt(interrupt.trip)
            ticker.watch(id(control), control.check)
        bind_run(control, files, interrupt is not None, (argv0, *grants.args),
                 tuple(grants.env.items()))
        end = _CoreEnd()
        try:
            if is_component:
                end.error, end.memory_peak = _call_component(store, prepared)
            else:
                assert prepared.pre is not None
                fuel = limits.fuel if interrupt is not None else None
                end = _call_core(store, prepared.pre, fuel, prepared.has_start_export,
                                 interrupt)
        finally:
            bind_run(None, None)
            # from the instant the deadline counts from: a run stopped at its wall limit
            # always reports at least that limit
            elapsed = time.monotonic() - control.started
            if interrupt is not None:
                ticker.unwatch(id(control))
                control.attach_interrupt(None)
                interrupt.detach()  # before the store (and the page) goes
            if io is not None:
                io.mark_ended()
                if io.scratch_files is not None and files is not None:
                    io.scratch_files.update(files.scratch_files(*io.collect_limits))
            if files is not None:
                files.close_all()
        error, memory_peak = end.error, end.memory_peak
        outcome = classify(error, control)
        out_of_fuel = end.fuel_check_fired and control.exit_code is None
        if control.reason is None and (out_of_fuel or (end.fuel_left or 0) < 0):
            # The rewritten code's check trapped and no stop was asked for, or the run ended
            # after spending more than its budget in code past its last check (a return
            # chain, a loop's exit): either way it needed more fuel than it had.
            outcome = Outcome(RunStatus.FUEL_EXHAUSTED, message="fuel exhausted")
        if _ends_like_failed_allocation(outcome) and (
            memory_peak + limits.memory_bytes // _MEMORY_SLACK_FRACTION >= limits.memory_bytes
        ):
            outcome = Outcome(
                RunStatus.MEMORY_LIMIT,
                exit_code=outcome.exit_code,
                trap_kind=outcome.trap_kind,
                message=f"memory limit reached ({outcome.message or 'guest failed'})",
            )
        if isinstance(error, _InstantiateError):
            outcome = error.outcome
        if end.fuel_left is None:
            left = store.get_fuel()
            fuel_used = limits.fuel - left
            if left == 0 and outcome.status in (RunStatus.OK, RunStatus.NONZERO_EXIT):
                # wasmtime's counter stops at 0 and is checked only at function entries
                # and loop headers: a run that ends with none left ran past its budget
                outcome = Outcome(RunStatus.FUEL_EXHAUSTED, message="fuel exhausted")
        else:  # a check may trap a segment past zero: report the budget, as wasmtime does
            fuel_used = min(max(limits.fuel - end.fuel_left, 0), limits.fuel)
        store.close()  # free its instance and pool slots now, not when a traceback cycle dies
        return RunResult(  # validating is cheaper than model_construct (~3 vs ~10 µs)
            status=outcome.status,
            trap_kind=outcome.trap_kind,
            exit_code=outcome.exit_code,
            stdout=stdout.value(),
            stderr=stderr.value(),
            stdout_truncated=stdout.truncated,
            stderr_truncated=stderr.truncated,
            fuel_used=fuel_used,
            wall_time_s=elapsed,
            memory_peak_bytes=memory_peak,
            message=outcome.message,
        )


_NO_COMPONENT_IO = (
    "WASI P2 components cannot be judged interactively or as checkers: their stdio goes "
    "through wasmtime's own WASI; submit a core module (or source)"
)
_NO_COMPONENT_SCRATCH = (
    "scratch directories are available to core modules only: a WASI P2 component's writes "
    "go through wasmtime's own filesystem, where Warden cannot enforce the quota exactly"
)


class _InstantiateError(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


_POOL_FULL = "maximum concurrent"  # wasmtime's pooling allocator ran out of slots
_POOL_REFUSED = "pooling allocator"  # "module table does not fit in pooling allocator ..."
_COUNT_TOO_HIGH = "count too high"  # wasmtime's store limits: "table count too high at 5"


def _instantiate_outcome(exc: wasmtime.WasmtimeError) -> Outcome:
    text = str(exc)
    if _POOL_FULL in text:  # admission (EpochTicker) should prevent it: not the guest's fault
        return Outcome(RunStatus.INTERNAL_ERROR, message=f"instance pool full: {text}")
    lowered = text.lower()
    if _COUNT_TOO_HIGH in lowered:  # more tables/memories/instances than a store may have
        return Outcome(
            RunStatus.UNSUPPORTED,
            message=f"module defines more tables or memories than Warden allows ({text})",
        )
    if "memory" in lowered and ("limit" in lowered or "exceed" in lowered):
        return Outcome(RunStatus.MEMORY_LIMIT, message=f"module needs more memory: {text}")
    if "table" in lowered and ("limit" in lowered or "exceed" in lowered):
        return Outcome(RunStatus.MEMORY_LIMIT, message=f"module needs a larger table: {text}")
    if isinstance(exc, wasmtime.Trap):
        return Outcome(RunStatus.TRAP, message=text)
    return Outcome(RunStatus.LINK_ERROR, message=text)


@dataclass
class _CoreEnd:
    """How a core call ended: its error, peak memory, and (instrumented) the fuel left and
    whether the rewritten code's fuel/interrupt check made the trap."""

    error: BaseException | None = None
    memory_peak: int = 0
    fuel_left: int | None = None
    fuel_check_fired: bool = False


_EXIT_TRAP = EXIT_TRAP.decode()
_FUEL = FUEL_GLOBAL.encode()
_TRAP_FLAG = TRAP_GLOBAL.encode()
_START = START_EXPORT.encode()
_PAGE = INTERRUPT_EXPORT.encode()
# wasmtime 50 charges a start function 3 for its invocation, an exported call 1 (as the
# rewritten code does): the difference, so counts stay equal to wasmtime's.
_START_EXTRA_FUEL = 2


def _call_core(
    store: wasmtime.Store,
    pre: wasmtime.InstancePre,
    fuel: int | None,
    has_start: bool,
    interrupt: Interrupt | None,
) -> _CoreEnd:
    """Instantiate and call ``_start``; ``fuel`` is the budget of an instrumented module,
    which holds its fuel in a global and reads ``interrupt``'s word from its page (None:
    wasmtime's fuel, set on the store)."""
    try:
        instance = wasmtime_ext.instantiate(pre, store)
    except wasmtime.Trap as trap:  # an active segment out of bounds, or a start function
        return _CoreEnd(trap, fuel_left=fuel)  # (wasmtime-metered) that trapped: the guest's
    except wasmtime.WasmtimeError as exc:
        if _EXIT_TRAP in str(exc):  # a start function called proc_exit (wasmtime-metered)
            return _CoreEnd(exc, fuel_left=fuel)
        return _CoreEnd(_InstantiateError(_instantiate_outcome(exc)), fuel_left=fuel)
    end = _CoreEnd()
    if interrupt is not None:
        interrupt.attach(wasmtime_ext.memory_address(instance, _PAGE))
    try:
        if fuel is not None:
            if has_start:
                wasmtime_ext.set_global_i64(instance, _FUEL, fuel - _START_EXTRA_FUEL)
                wasmtime_ext.call_export(instance, _START)
            else:
                wasmtime_ext.set_global_i64(instance, _FUEL, fuel)
        wasmtime_ext.call_export(instance, b"_start")  # type checked at link time
    except Exception as exc:
        end.error = exc
    if fuel is not None:
        end.fuel_left = wasmtime_ext.get_global(instance, _FUEL)
        if isinstance(end.error, wasmtime.Trap):  # the check's slow path is an `unreachable`
            end.fuel_check_fired = wasmtime_ext.get_global(instance, _TRAP_FLAG) != 0
    end.memory_peak = wasmtime_ext.memory_size(instance)
    return end


def _call_component(
    store: wasmtime.Store, prepared: Prepared
) -> tuple[BaseException | None, int]:
    """Run a checked P2 command; peak memory is unknown (components export no memory)."""
    assert prepared.component is not None
    try:
        error = components.run_command(prepared.ctx.component_linker, store, prepared.component)
    except wasmtime.WasmtimeError as exc:
        trap = components.as_trap(exc)
        if isinstance(trap, wasmtime.Trap) or components.stopped_by_control(exc):
            return trap, 0  # a start function trapped or was stopped: classify as a run
        refused = None if _POOL_FULL in str(exc) else components.instantiate_refusal(exc)
        outcome = Outcome(*refused) if refused else _instantiate_outcome(exc)
        return _InstantiateError(outcome), 0
    return error, 0


def _component_linker(engine: wasmtime.Engine) -> wasmtime.component.Linker:
    return components.build_linker(engine)


def _link(module: ModuleBytes, ctx: EngineContext, blob: bytes) -> Prepared | SandboxError:
    """Deserialize and pre-link; link failures are cached as the SandboxError they are."""
    try:
        if module.kind is ModuleKind.COMPONENT:
            component = wasmtime.component.Component.deserialize(ctx.engine, blob)
            return components.link(component, ctx.engine) or Prepared(
                module, ctx, component=component, artifact=blob
            )
        compiled = wasmtime.Module.deserialize(ctx.engine, blob)
    except wasmtime.WasmtimeError as exc:
        if _POOL_REFUSED not in str(exc):
            raise
        # the compile helper's engine has no pool, so the module compiled; the run engine's
        # pool slots bound every instance: more tables or table elements than a slot holds
        return SandboxError(
            RunStatus.UNSUPPORTED,
            f"module needs more tables, table elements or memories than Warden runs: {exc}",
        )
    problem = _check_imports_exports(compiled)
    if problem is not None:
        return problem
    prepared = Prepared(module, ctx, compiled=compiled)
    try:
        prepared.pre = ctx.linker.instantiate_pre(compiled)
    except wasmtime.WasmtimeError as exc:
        return SandboxError(RunStatus.LINK_ERROR, f"cannot link module: {exc}")
    prepared.has_start_export = any(e.name == START_EXPORT for e in compiled.exports)
    return prepared


def _check_imports_exports(compiled: wasmtime.Module) -> SandboxError | None:
    foreign = [
        f"{imp.module}.{imp.name}" for imp in compiled.imports if imp.module != WASI_P1
    ]
    if foreign:
        shown = ", ".join(foreign[:10]) + (" …" if len(foreign) > 10 else "")
        return SandboxError(
            RunStatus.LINK_ERROR,
            f"module imports {shown}, which Warden does not provide "
            f"(only {WASI_P1} functions are available)",
        )
    exports: dict[str, Any] = {e.name: e.type for e in compiled.exports}
    start = exports.get("_start")
    if not isinstance(start, wasmtime.FuncType):
        return SandboxError(RunStatus.INVALID_MODULE, NO_START)
    if start.params or start.results:
        return SandboxError(
            RunStatus.INVALID_MODULE,
            f"_start must take no parameters and return nothing (it is {_signature(start)})",
        )
    return None


def _signature(ty: wasmtime.FuncType) -> str:
    params = ", ".join(str(p) for p in ty.params)
    results = ", ".join(str(r) for r in ty.results)
    return f"({params}) -> ({results})"
