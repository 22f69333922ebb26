"""The WASI preview1 linker: wasmtime's own WASI, with ``poll_oneoff`` and ``fd_write`` replaced.

Epoch interruption cannot end a guest blocked inside a host call, and ``poll_oneoff`` is the
one preview1 call that blocks for as long as the guest asks (stdin is in memory, files are
regular files). Our ``poll_oneoff`` sleeps on the run's wake event, never past the run's
deadline, so timeouts and cancels end sleeping guests too.

``fd_write`` to fds 1 and 2 goes straight into the run's capped sinks (wasmtime's
``stdout_custom`` bridge costs ~100 µs per run and ~65 µs at store teardown; this costs a few
µs), through a raw ctypes callback (``wasmtime_ext.define_memory_func``: no wasmtime-py
trampoline, ``Caller`` or ``Val`` objects). See ``build_linker`` for when that fast path
applies.

Host functions here never raise: an exception would go through wasmtime-py's process-global
``LAST_EXCEPTION`` and could surface in another thread's run. Errors become WASI errnos.
"""

from __future__ import annotations

import ctypes
import struct
import threading
import time

import wasmtime

from sandboxes.runtime.control import RunControl, StopReason
from sandboxes.runtime.wasmtime_ext import define_exit_func, define_memory_func

_ERRNO_SUCCESS = 0
_ERRNO_BADF = 8
_ERRNO_FAULT = 21
_ERRNO_IO = 29
_ERRNO_INVAL = 28
_ERRNO_NOSYS = 52
_EVENTTYPE_CLOCK = 0
_SUBSCRIPTION = struct.Struct("<QB7xIxxxxQQH6x")  # 48 bytes
_EVENT = struct.Struct("<QHBxxxxxQH6x")  # 32 bytes
_MAX_SUBSCRIPTIONS = 4096
_MAX_IOVS = 1024
_IOVEC = struct.Struct("<II")
_CLOCK_REALTIME = 0
_ABSTIME = 1

WASI_P1 = "wasi_snapshot_preview1"

_current = threading.local()


def bind_control(control: RunControl | None) -> None:
    """Tell this thread's host functions which run they serve."""
    _current.control = control


def _control() -> RunControl | None:
    return getattr(_current, "control", None)


def _poll_oneoff(
    caller: wasmtime.Caller, in_ptr: int, out_ptr: int, nsubs: int, nevents_ptr: int
) -> int:
    try:
        memory = caller.get("memory")
        if not isinstance(memory, wasmtime.Memory):
            return _ERRNO_NOSYS
        if nsubs <= 0 or nsubs > _MAX_SUBSCRIPTIONS:
            return _ERRNO_INVAL
        size = memory.data_len(caller)
        if in_ptr < 0 or in_ptr + nsubs * 48 > size or out_ptr < 0 or out_ptr + nsubs * 32 > size:
            return _ERRNO_FAULT
        if nevents_ptr < 0 or nevents_ptr + 4 > size:
            return _ERRNO_FAULT
        raw = memory.read(caller, in_ptr, in_ptr + nsubs * 48)
        events = _wait(_control(), [_SUBSCRIPTION.unpack_from(raw, i * 48) for i in range(nsubs)])
        out = b"".join(events)
        memory.write(caller, out, out_ptr)
        memory.write(caller, struct.pack("<I", len(events)), nevents_ptr)
        return _ERRNO_SUCCESS
    except Exception:
        return _ERRNO_FAULT


def _wait(
    control: RunControl | None, subs: list[tuple[int, int, int, int, int, int]]
) -> list[bytes]:
    """Block until the first clock fires, an fd is ready (always: stdio is in memory), or stop."""
    ready: list[bytes] = []
    clocks: list[tuple[float, int]] = []
    now = time.monotonic()
    for userdata, tag, clock_id, timeout_ns, _precision, flags in subs:
        if tag != _EVENTTYPE_CLOCK:
            ready.append(_EVENT.pack(userdata, _ERRNO_SUCCESS, tag, 0, 0))
            continue
        if flags & _ABSTIME:
            if clock_id == _CLOCK_REALTIME:
                wake = now + (timeout_ns / 1e9 - time.time())
            else:  # guest monotonic time starts near zero when the run starts
                start = control.started if control is not None else now
                wake = start + timeout_ns / 1e9
        else:
            wake = now + timeout_ns / 1e9
        clocks.append((wake, userdata))
    if ready or not clocks:
        return ready
    first = min(w for w, _ in clocks)
    if control is None:  # never sleep unbounded outside a controlled run
        first = min(first, now)
    else:
        first = min(first, control.deadline)
        delay = first - time.monotonic()
        if delay > 0:
            control.wake.wait(delay)
        if time.monotonic() >= control.deadline:
            control.stop(StopReason.WALL_TIMEOUT)
    fired_at = max(time.monotonic(), first)
    return [
        _EVENT.pack(userdata, _ERRNO_SUCCESS, _EVENTTYPE_CLOCK, 0, 0)
        for wake, userdata in clocks
        if wake <= fired_at
    ] or [_EVENT.pack(clocks[0][1], _ERRNO_SUCCESS, _EVENTTYPE_CLOCK, 0, 0)]


def _fd_write(
    base: int, size: int, fd: int, iovs_ptr: int, iovs_len: int, nwritten_ptr: int
) -> int:
    """preview1 ``fd_write`` for fds 1 and 2, into the run's sinks.

    ``base``/``size`` are the caller's memory (``define_memory_func``); the arguments are
    the guest's u32 values.
    """
    try:
        control = _control()
        if control is None or fd not in (1, 2):
            return _ERRNO_BADF  # this linker is only used when no other fd is writable
        sink = control.stdout if fd == 1 else control.stderr
        if sink is None or not base:
            return _ERRNO_BADF
        if iovs_len > _MAX_IOVS:
            return _ERRNO_INVAL
        if iovs_ptr + 8 * iovs_len > size or nwritten_ptr + 4 > size:
            return _ERRNO_FAULT
        raw = ctypes.string_at(base + iovs_ptr, 8 * iovs_len)
        total = 0
        for i in range(iovs_len):
            ptr, length = _IOVEC.unpack_from(raw, 8 * i)
            if ptr + length > size:
                return _ERRNO_FAULT
            room = sink.room()
            sink.write(ctypes.string_at(base + ptr, min(length, room)) if room else b"", length)
            total += length
        ctypes.c_uint32.from_address(base + nwritten_ptr).value = total & 0xFFFFFFFF
        return _ERRNO_SUCCESS
    except Exception:
        return _ERRNO_IO


EXIT_TRAP = b"warden: proc_exit"


def _proc_exit(code: int) -> None:
    """Record the status: wasmtime's own proc_exit refuses codes >= 126 with an error that
    loses the code (a judge needs 137 reported as 137)."""
    control = _control()
    if control is not None:
        control.exit_code = code


def build_linker(engine: wasmtime.Engine, *, stdio_fast_path: bool) -> wasmtime.Linker:
    """A linker with WASI preview1 only; shared by every run on ``engine``.

    ``stdio_fast_path`` replaces ``fd_write`` with the in-process stdio writer; it is only
    valid for runs with no writable fd besides 1 and 2 (no scratch dir granted). wasmtime's
    own ``fd_write`` cannot be called from a host function (it needs the caller's memory),
    so runs with a scratch dir use wasmtime's and ``stdout_custom`` sinks instead.
    """
    i32 = wasmtime.ValType.i32()
    four_i32_to_i32 = wasmtime.FuncType([i32, i32, i32, i32], [i32])  # types are per engine
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    linker.allow_shadowing = True
    linker.define_func(WASI_P1, "poll_oneoff", four_i32_to_i32, _poll_oneoff, access_caller=True)
    define_exit_func(linker, WASI_P1, "proc_exit", _proc_exit, EXIT_TRAP)
    if stdio_fast_path:
        define_memory_func(linker, WASI_P1, "fd_write", _fd_write, on_error=_ERRNO_IO)
    linker.allow_shadowing = False
    return linker
