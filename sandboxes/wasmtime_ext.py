"""Two wasmtime C-API entry points that wasmtime-py 50 binds but does not wrap.

* ``wasmtime_store_epoch_deadline_callback``: lets each store decide at every epoch tick
  whether to go on or trap. This is how one run is stopped (wall time, cancel, output cap)
  without touching other runs that share the engine.
* ``wasi_config_set_stdin_bytes``: stdin from memory, so no temp file is written per run.

Both come from ``wasmtime._bindings``; tests/test_wasmtime_ext.py pins their behaviour so an
upgrade that changes them fails loudly.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable

import wasmtime
from wasmtime import _bindings as ffi

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


def set_stdin_bytes(wasi: wasmtime.WasiConfig, data: bytes) -> None:
    """Give the guest ``data`` as stdin, from memory."""
    vec = ffi.wasm_byte_vec_t()
    buf = ctypes.create_string_buffer(data, len(data))
    ffi.wasm_byte_vec_new(
        ctypes.byref(vec), len(data), ctypes.cast(buf, ctypes.POINTER(ffi.wasm_byte_t))
    )
    ffi.wasi_config_set_stdin_bytes(wasi.ptr(), ctypes.byref(vec))
