"""Threads with room for a guest's stack.

wasmtime runs a synchronous call on the calling thread's own stack and only checks the
guest against ``max_wasm_stack`` measured from where the call starts. If the thread's real
stack is smaller than that, deep recursion runs past its end into the guard page and the
whole process dies of SIGSEGV instead of the guest getting a clean stack-overflow trap. So
every guest runs on a thread known to be deep enough: Warden's own guest threads (worker
lanes) are created with ``GUEST_THREAD_STACK_BYTES``; a call from any other thread whose
room is unknown or too small hops to a one-off guest thread (~0.1 ms).
"""

from __future__ import annotations

import resource
import threading
from collections.abc import Callable
from typing import Final, TypeVar

from sandboxes.schema import LIMIT_BOUNDS, MiB

T = TypeVar("T")

# Host frames below and above the guest's: Python, wasmtime's entry, host calls (fd_write,
# poll_oneoff run on the same stack, past the guest's limit).
HOST_MARGIN_BYTES: Final = 8 * MiB
GUEST_THREAD_STACK_BYTES: Final = int(LIMIT_BOUNDS["stack_bytes"].maximum) + HOST_MARGIN_BYTES

_local = threading.local()
_create_lock = threading.Lock()


def start_guest_thread(target: Callable[[], object], name: str,
                       daemon: bool = True) -> threading.Thread:
    """Start a thread whose stack holds the deepest guest the limits allow."""

    def run() -> None:
        _local.room = GUEST_THREAD_STACK_BYTES
        target()

    with _create_lock:  # threading.stack_size is process-wide: set it only around start()
        previous = threading.stack_size(GUEST_THREAD_STACK_BYTES)
        try:
            thread = threading.Thread(target=run, name=name, daemon=daemon)
            thread.start()
        finally:
            threading.stack_size(previous)
    return thread


def room() -> int:
    """Stack bytes this thread is known to have (0 when unknown)."""
    known: int = getattr(_local, "room", 0)
    if known:
        return known
    if threading.current_thread() is threading.main_thread():
        soft, _ = resource.getrlimit(resource.RLIMIT_STACK)
        return 1 << 62 if soft == resource.RLIM_INFINITY else soft
    return 0


def call_with_stack(guest_stack_bytes: int, fn: Callable[[], T]) -> T:
    """``fn()`` on this thread if it has room for a guest of this stack size, else on a
    one-off guest thread (its result or exception comes back here)."""
    if room() >= guest_stack_bytes + HOST_MARGIN_BYTES:
        return fn()
    box: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            box.append(fn())
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    start_guest_thread(run, "warden-guest", daemon=True).join()
    if failure:
        raise failure[0]
    return box[0]
