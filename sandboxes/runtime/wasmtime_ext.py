"""wasmtime C-API entry points that wasmtime-py 50 binds but does not wrap, or wraps slowly.

* ``wasmtime_store_epoch_deadline_callback``: lets each store decide at every epoch tick
  whether to go on or trap. This is how one run is stopped (wall time, cancel, output cap)
  without touching other runs that share the engine.
* ``wasi_config_set_stdin_bytes``: stdin from memory, so no temp file is written per run.
* The per-run hot path (see docs/notes/core-performance.md): ``instantiate``,
  ``call_export`` and ``memory_size`` skip wasmtime-py's per-call wrapping (export maps,
  ``FuncType`` objects, ``Val`` conversions: ~40 µs of a ~180 µs hello run), and
  ``define_memory_func`` registers a host function through ``define_func_unchecked`` with
  a raw ctypes callback that hands it the caller's memory base and size (the wasmtime-py
  trampoline builds a ``Caller``, four ``Val``s and a ``Memory`` per call: ~20 µs).
  Errors surface exactly as wasmtime-py raises them (``WasmtimeError._from_ptr``,
  ``Trap._from_ptr``, ``ExitTrap``).

All come from ``wasmtime._bindings``; tests pin their behaviour so an upgrade that changes
them fails loudly.
"""

from __future__ import annotations

import contextlib
import ctypes
import struct
import threading
from collections.abc import Callable
from typing import cast

import wasmtime
from wasmtime import _bindings as ffi
from wasmtime import _ffi
from wasmtime._func import maybe_raise_last_exn

# Return None to keep running for one more tick, or a message to trap with.
DeadlineCheck = Callable[[], str | None]

_lock = threading.Lock()
_checks: dict[int, DeadlineCheck] = {}
_next_id = 0

_CALLBACK_TYPE = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.POINTER(ffi.wasmtime_context_t),
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ffi.wasmtime_update_deadline_kind_t),
)
_FINALIZER_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_UPDATE_CONTINUE = 0


def _on_deadline(
    _ctx: object, data: int | None, delta: ctypes._Pointer[ctypes.c_uint64], kind: object
) -> int:
    check = _checks.get(data or 0)
    try:
        reason = check() if check is not None else "run controller is gone"
    except Exception as exc:  # never unwind through wasmtime's frames
        reason = f"deadline check failed: {exc}"
    if reason is None:
        delta[0] = 1
        kind[0] = _UPDATE_CONTINUE  # type: ignore[index]
        return 0
    err = ffi.wasmtime_error_new(ctypes.create_string_buffer(reason.encode()))
    return ctypes.cast(err, ctypes.c_void_p).value or 0


def _on_finalize(data: int | None) -> None:
    with _lock:
        _checks.pop(data or 0, None)


_CALLBACK = _CALLBACK_TYPE(_on_deadline)
_FINALIZER = _FINALIZER_TYPE(_on_finalize)


def set_deadline_check(store: wasmtime.Store, check: DeadlineCheck) -> None:
    """Call ``check`` at every epoch tick while ``store`` runs wasm; trap when it says so."""
    global _next_id
    with _lock:
        _next_id += 1
        key = _next_id
        _checks[key] = check
    ffi.wasmtime_store_epoch_deadline_callback(
        store.ptr(), _CALLBACK, ctypes.c_void_p(key), _FINALIZER
    )
    store.set_epoch_deadline(1)


_ARGV_CACHE_ENTRIES = 256
_argv_arrays: dict[tuple[str, ...], ctypes.Array[ctypes.c_char_p]] = {}
_set_argv = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)(
    ("wasi_config_set_argv", _ffi.dll)
)


def set_argv(wasi: wasmtime.WasiConfig, argv: tuple[str, ...]) -> None:
    """``wasi.argv = argv``, reusing the C string array of an argv seen before.

    wasmtime copies the strings, so the array is only host-side scratch (no guest state).
    """
    array = _argv_arrays.get(argv)
    if array is None:
        array = (ctypes.c_char_p * len(argv))(*(a.encode() for a in argv))
        if len(_argv_arrays) >= _ARGV_CACHE_ENTRIES:
            _argv_arrays.clear()
        _argv_arrays[argv] = array
    if not _set_argv(ctypes.cast(wasi.ptr(), ctypes.c_void_p), len(argv), array):
        raise wasmtime.WasmtimeError("failed to configure argv")


def set_stdin_bytes(wasi: wasmtime.WasiConfig, data: bytes) -> None:
    """Give the guest ``data`` as stdin, from memory."""
    vec = ffi.wasm_byte_vec_t()
    buf = ctypes.create_string_buffer(data, len(data))
    ffi.wasm_byte_vec_new(
        ctypes.byref(vec), len(data), ctypes.cast(buf, ctypes.POINTER(ffi.wasm_byte_t))
    )
    ffi.wasi_config_set_stdin_bytes(wasi.ptr(), ctypes.byref(vec))


# -- the per-run hot path ----------------------------------------------------------------


def _proto(name: str, restype: type | None, *argtypes: type) -> Callable[..., object]:
    """A private foreign-function object for ``name`` taking plain ints (no pointer objects).

    A fresh object, so wasmtime-py's own ``argtypes`` on the shared one stay untouched.
    Only for lookups that return at once: it keeps the GIL (``PYFUNCTYPE``), which saves a
    release/reacquire per call; anything that runs wasm goes through wasmtime-py's
    bindings, which release it.
    """
    prototype = ctypes.PYFUNCTYPE(restype, *argtypes)
    return prototype((name, _ffi.dll))


_VP = ctypes.c_void_p
_caller_export_get = _proto(
    "wasmtime_caller_export_get", ctypes.c_bool, _VP, ctypes.c_char_p, ctypes.c_size_t, _VP
)
_caller_context = _proto("wasmtime_caller_context", _VP, _VP)
_memory_data = _proto("wasmtime_memory_data", _VP, _VP, _VP)
_memory_data_size = _proto("wasmtime_memory_data_size", ctypes.c_size_t, _VP, _VP)
_instance_export_get = _proto(
    "wasmtime_instance_export_get", ctypes.c_bool, _VP, _VP, ctypes.c_char_p, ctypes.c_size_t, _VP
)

# (env, caller, args_and_results, count) -> trap pointer; args are 16-byte ``ValRaw`` slots
_RAW_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_size_t, _VP, _VP, _VP, ctypes.c_size_t)
_NO_FINALIZER = ctypes.cast(0, ctypes.CFUNCTYPE(None, _VP))
_EXTERN_MEMORY = int(_ffi.WASMTIME_EXTERN_MEMORY.value)
_EXTERN_FUNC = int(_ffi.WASMTIME_EXTERN_FUNC.value)
_MEMORY = b"memory"


def _kind(item: ffi.wasmtime_extern_t) -> int:
    return cast(int, item.kind)  # a c_uint8 field reads as int
_keep_alive: list[object] = []

# fn(caller, memory_base, memory_size, *args) -> i32; base and size are 0 without a
# "memory"; ``caller`` is valid during the call only (for ``consume_fuel``)
MemoryFunc = Callable[..., int]


class HostTrap(Exception):  # noqa: N818 - it is not an error of the host: the guest traps
    """Raised by a ``MemoryFunc``: the guest traps with this message (a bad pointer)."""


def define_memory_func(
    linker: wasmtime.Linker, module: str, name: str, params: str, fn: MemoryFunc,
    on_error: int,
) -> None:
    """Define ``module.name`` as ``(params) -> i32`` calling ``fn`` directly.

    ``params`` has one letter per parameter: ``i`` (i32, passed as the u32 WASI means) or
    ``I`` (i64, passed as u64). ``fn`` gets the caller, the address and size of the
    caller's exported ``memory`` (valid for the call only: nothing can grow it meanwhile)
    and the arguments.
    It may raise ``HostTrap`` to trap the guest; any other exception gives the guest
    ``on_error`` (an exception may never unwind through wasmtime's frames, and
    wasmtime-py's process-global ``LAST_EXCEPTION`` is not used).
    """
    item_type = ffi.wasmtime_extern_t
    layout = struct.Struct("<" + "".join("I12x" if p == "i" else "Q8x" for p in params))
    size_of_args = layout.size

    def callback(_env: int | None, caller: int | None, args: int | None, _count: int) -> int:
        try:
            base = size = 0
            item = item_type()
            if _caller_export_get(caller, _MEMORY, 6, ctypes.addressof(item)) and (
                _kind(item) == _EXTERN_MEMORY
            ):
                context = _caller_context(caller)
                memory = ctypes.addressof(item.of.memory)
                base = _memory_data(context, memory) or 0  # type: ignore[assignment]
                size = _memory_data_size(context, memory)  # type: ignore[assignment]
            values = layout.unpack(ctypes.string_at(args or 0, size_of_args))
            result = fn(caller, base, size, *values)
        except HostTrap as trap:
            message = str(trap).encode()
            return cast(int, _trap_new(message, len(message)))
        except BaseException:
            result = on_error
        try:
            ctypes.c_int32.from_address(args or 0).value = result
        except BaseException:
            ctypes.c_int32.from_address(args or 0).value = on_error
        return 0

    types = {"i": wasmtime.ValType.i32(), "I": wasmtime.ValType.i64()}
    _define_raw(linker, module, name, callback, [types[p] for p in params],
                [wasmtime.ValType.i32()])


_ARG1 = struct.Struct("<I12x")
_trap_new = _proto("wasmtime_trap_new", _VP, ctypes.c_char_p, ctypes.c_size_t)


def define_exit_func(
    linker: wasmtime.Linker, module: str, name: str, fn: Callable[[int], None], message: bytes
) -> None:
    """Define ``module.name`` as ``(i32) -> ()`` that calls ``fn`` with the u32 argument and
    then always traps with ``message`` (the run ends there: ``proc_exit``). ``fn`` must not
    raise; if it does, the guest still traps."""

    def callback(_env: int | None, _caller: int | None, args: int | None, _count: int) -> int:
        with contextlib.suppress(BaseException):  # nothing may unwind through wasmtime
            (code,) = _ARG1.unpack(ctypes.string_at(args or 0, 16))
            fn(code)
        return cast(int, _trap_new(message, len(message)))

    _define_raw(linker, module, name, callback, [wasmtime.ValType.i32()], [])


def _define_raw(
    linker: wasmtime.Linker, module: str, name: str,
    callback: Callable[[int | None, int | None, int | None, int], int],
    params: list[wasmtime.ValType], results: list[wasmtime.ValType],
) -> None:
    raw = _RAW_CALLBACK(callback)
    _keep_alive.append(raw)
    ty = wasmtime.FuncType(params, results)
    module_b, name_b = module.encode(), name.encode()
    error = ffi.wasmtime_linker_define_func_unchecked(
        linker.ptr(),
        ctypes.create_string_buffer(module_b),
        len(module_b),
        ctypes.create_string_buffer(name_b),
        len(name_b),
        ty.ptr(),
        ctypes.cast(raw, ffi.wasmtime_func_unchecked_callback_t),
        None,
        _NO_FINALIZER,
    )
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)


def _raise_from(
    error: ctypes._Pointer[ffi.wasmtime_error_t] | None,
    trap: ctypes._Pointer[ffi.wasm_trap_t],
) -> None:
    """Raise what wasmtime-py's ``enter_wasm`` would for this error/trap pair."""
    if error:
        exc = wasmtime.WasmtimeError._from_ptr(error)
        maybe_raise_last_exn()
        raise exc
    if trap:
        trap_obj = wasmtime.Trap._from_ptr(trap)
        maybe_raise_last_exn()
        raise trap_obj


class RawInstance:
    """An instance as the C API sees it: its store, and the store context's and the
    instance's addresses, computed once (each is a ctypes cast otherwise)."""

    __slots__ = ("address", "context", "raw", "store")

    def __init__(self, store: wasmtime.Store, raw: ffi.wasmtime_instance_t) -> None:
        self.store = store
        self.raw = raw
        self.context: int = ctypes.cast(store._context(), _VP).value or 0
        self.address = ctypes.addressof(raw)


def instantiate(pre: wasmtime.InstancePre, store: wasmtime.Store) -> RawInstance:
    """``pre.instantiate(store)`` without wrapping the result in an ``Instance``."""
    instance = ffi.wasmtime_instance_t()
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    error = ffi.wasmtime_instance_pre_instantiate(
        pre.ptr(), store._context(), ctypes.byref(instance), ctypes.byref(trap)
    )
    if error or trap:
        _raise_from(error, trap)
    return RawInstance(store, instance)


def _export(instance: RawInstance, name: bytes) -> ffi.wasmtime_extern_t | None:
    item = ffi.wasmtime_extern_t()
    found = _instance_export_get(
        instance.context, instance.address, name, len(name), ctypes.addressof(item)
    )
    return item if found else None


def call_export(instance: RawInstance, name: bytes) -> None:
    """Call the exported ``() -> ()`` function ``name``; raises like ``Func.__call__``.

    The caller has checked the export's type (``_start`` is checked when a module is
    linked); a missing or non-function export raises ``KeyError``.
    """
    item = _export(instance, name)
    if item is None or _kind(item) != _EXTERN_FUNC:
        raise KeyError(name.decode())
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    error = ffi.wasmtime_func_call(
        instance.store._context(), ctypes.byref(item.of.func), None, 0, None, 0,
        ctypes.byref(trap),
    )
    if error or trap:
        _raise_from(error, trap)


def memory_size(instance: RawInstance) -> int:
    """Bytes in the instance's exported ``memory`` now (0 when it exports none)."""
    item = _export(instance, _MEMORY)
    if item is None or _kind(item) != _EXTERN_MEMORY:
        return 0
    size = _memory_data_size(instance.context, ctypes.addressof(item.of.memory))
    assert isinstance(size, int)
    return size


def set_async_stack_size(cfg: wasmtime.Config, size: int) -> None:
    """``wasmtime_config_async_stack_size_set``, which wasmtime-py does not wrap."""
    ffi.wasmtime_config_async_stack_size_set(cfg.ptr(), ctypes.c_uint64(size))


def use_pooling_allocator(cfg: wasmtime.Config, limits: dict[str, int]) -> None:
    """Switch ``cfg`` to wasmtime's pooling instance allocator with these pool ``limits``.

    Keys are the ``wasmtime_pooling_allocation_config_<key>_set`` names (``total_memories``,
    ``max_memory_size``, ...). Slots are reserved address space, reused between stores and
    decommitted (zeroed) when a store drops its instance.
    """
    pool = ffi.wasmtime_pooling_allocation_config_new()
    try:
        for key, value in limits.items():
            setter = getattr(ffi, f"wasmtime_pooling_allocation_config_{key}_set")
            setter(pool, value)
        ffi.wasmtime_pooling_allocation_strategy_set(cfg.ptr(), pool)
    finally:
        ffi.wasmtime_pooling_allocation_config_delete(pool)


# -- fuel-instrumented modules (sandboxes.metering.fuel_rewriter) ---------------------------------
_EXTERN_GLOBAL = int(_ffi.WASMTIME_EXTERN_GLOBAL.value)
_VAL_I64 = int(_ffi.WASMTIME_I64.value)
_global_get = _proto("wasmtime_global_get", None, _VP, _VP, _VP)
_global_set = _proto("wasmtime_global_set", _VP, _VP, _VP, _VP)


def _global(instance: RawInstance, name: bytes) -> ffi.wasmtime_extern_t:
    item = _export(instance, name)
    if item is None or _kind(item) != _EXTERN_GLOBAL:
        raise KeyError(name.decode())
    return item


def get_global(instance: RawInstance, name: bytes) -> int:
    """The value of the exported integer global ``name`` (i32 or i64)."""
    item = _global(instance, name)
    value = ffi.wasmtime_val_t()
    _global_get(instance.context, ctypes.addressof(item.of.global_), ctypes.addressof(value))
    if cast(int, value.kind) == _VAL_I64:  # a c_uint8 field reads as int
        return int(value.of.i64)
    return int(value.of.i32)


def set_global_i64(instance: RawInstance, name: bytes, number: int) -> None:
    """Set the exported mutable i64 global ``name``."""
    item = _global(instance, name)
    value = ffi.wasmtime_val_t(_VAL_I64, ffi.wasmtime_valunion(i64=number))
    error = _global_set(
        instance.context, ctypes.addressof(item.of.global_), ctypes.addressof(value)
    )
    if error:  # only a type mismatch, which the rewriter's own globals cannot have
        raise wasmtime.WasmtimeError(f"cannot set global {name.decode()}")


_context_get_fuel = _proto("wasmtime_context_get_fuel", _VP, _VP, _VP)
_context_set_fuel = _proto("wasmtime_context_set_fuel", _VP, _VP, ctypes.c_uint64)
_error_delete = _proto("wasmtime_error_delete", None, _VP)


def consume_fuel(caller: int, amount: int, fuel_global: bytes | None) -> bool:
    """Take ``amount`` from the calling run's fuel, from inside a host call: the
    instrumented module's exported i64 global ``fuel_global`` (which it reloads after the
    call and checks), or, with None, the store's own fuel (0 at the least: wasmtime then
    traps at its next charge). False when the run did not have that much left."""
    context = _caller_context(caller)
    if fuel_global is not None:
        item = ffi.wasmtime_extern_t()
        if not _caller_export_get(caller, fuel_global, len(fuel_global),
                                  ctypes.addressof(item)) or _kind(item) != _EXTERN_GLOBAL:
            raise KeyError(fuel_global.decode())
        value = ffi.wasmtime_val_t()
        address = ctypes.addressof(item.of.global_)
        _global_get(context, address, ctypes.addressof(value))
        left = int(value.of.i64) - amount
        value = ffi.wasmtime_val_t(_VAL_I64, ffi.wasmtime_valunion(i64=max(left, -(1 << 62))))
        error = _global_set(context, address, ctypes.addressof(value))
        if error:
            _error_delete(error)
            raise wasmtime.WasmtimeError(f"cannot set global {fuel_global.decode()}")
        return left >= 0
    fuel = ctypes.c_uint64()
    error = _context_get_fuel(context, ctypes.addressof(fuel))
    if error:  # a store without fuel: nothing to charge
        _error_delete(error)
        return True
    left = fuel.value - amount
    error = _context_set_fuel(context, max(left, 0))
    if error:
        _error_delete(error)
        raise wasmtime.WasmtimeError("cannot set the store's fuel")
    return left >= 0


def memory_address(instance: RawInstance, name: bytes) -> int:
    """Where the exported memory ``name`` starts (valid while the instance lives and the
    memory does not grow)."""
    item = _export(instance, name)
    if item is None or _kind(item) != _EXTERN_MEMORY:
        raise KeyError(name.decode())
    address = _memory_data(instance.context, ctypes.addressof(item.of.memory))
    assert isinstance(address, int)
    return address
