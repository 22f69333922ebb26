"""Bounds- and alignment-checked access to a guest's linear memory from a host function.

Pointers and lengths arrive as the unsigned 32-bit values WASI means (never Python's
signed view of an i32), and every range is checked as Python integers, so ``ptr + len``
cannot wrap. A bad pointer is a ``GuestFault``, which Warden's host functions turn into a
trap, as wasmtime's own WASI does ("If a misaligned pointer is passed to a function, the
function shall trap", witx docs).

Bytes move through ``view`` (a memoryview over the guest's own memory: one copy, never
two, and no C-int size limit) and every byte moved is added to ``cost``, the call's fuel
(``sandboxes.metering.host_costs``), so a guest pays for the host work it causes.
"""

from __future__ import annotations

import ctypes
import struct

from sandboxes.metering.host_costs import BYTES_PER_FUEL


class GuestFault(Exception):  # noqa: N818 - a fault of the guest, as a page fault
    """The guest passed a pointer outside its memory or misaligned for the type."""


class GuestMemory:
    """The caller's exported ``memory`` during one host call (``base``/``size``: address and
    length; both 0 when the module exports no memory) and the fuel the call has cost."""

    __slots__ = ("base", "cost", "size")

    def __init__(self, base: int, size: int) -> None:
        self.base = base
        self.size = size
        self.cost = 0

    def check(self, ptr: int, length: int, align: int = 1) -> None:
        if ptr % align:
            raise GuestFault(f"pointer {ptr:#x} is not {align}-byte aligned")
        if ptr + length > self.size or (not self.base and length):
            raise GuestFault(f"{length} bytes at {ptr:#x} are outside the guest's memory")

    def view(self, ptr: int, length: int) -> memoryview:
        """The guest's bytes ``ptr .. ptr+length``, writable, valid during this call only."""
        self.check(ptr, length)
        self.cost += length // BYTES_PER_FUEL
        if not length:
            return memoryview(b"")
        return memoryview((ctypes.c_char * length).from_address(self.base + ptr)).cast("B")

    def read(self, ptr: int, length: int) -> bytes:
        return bytes(self.view(ptr, length))

    def write(self, ptr: int, data: bytes | bytearray | memoryview) -> None:
        length = len(data)
        if length:
            self.view(ptr, length)[:] = data
        else:
            self.check(ptr, 0)

    def unpack(self, layout: struct.Struct, ptr: int, align: int) -> tuple[int, ...]:
        self.check(ptr, layout.size, align)
        return layout.unpack(ctypes.string_at(self.base + ptr, layout.size))

    def pack(self, layout: struct.Struct, ptr: int, align: int, *values: int) -> None:
        self.check(ptr, layout.size, align)
        ctypes.memmove(self.base + ptr, layout.pack(*values), layout.size)

    def put_u32(self, ptr: int, value: int) -> None:
        self.check(ptr, 4, 4)
        ctypes.c_uint32.from_address(self.base + ptr).value = value & 0xFFFFFFFF

    def put_u64(self, ptr: int, value: int) -> None:
        self.check(ptr, 8, 8)
        ctypes.c_uint64.from_address(self.base + ptr).value = value & 0xFFFFFFFFFFFFFFFF
