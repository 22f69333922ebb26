"""Bounds- and alignment-checked access to a guest's linear memory from a host function.

Pointers and lengths arrive as the unsigned 32-bit values WASI means (never Python's
signed view of an i32), and every range is checked as Python integers, so ``ptr + len``
cannot wrap. A bad pointer is a ``GuestFault``, which Warden's host functions turn into a
trap, as wasmtime's own WASI does ("If a misaligned pointer is passed to a function, the
function shall trap", witx docs).
"""

from __future__ import annotations

import ctypes
import struct


class GuestFault(Exception):  # noqa: N818 - a fault of the guest, as a page fault
    """The guest passed a pointer outside its memory or misaligned for the type."""


class GuestMemory:
    """The caller's exported ``memory`` during one host call (``base``/``size``: address and
    length; both 0 when the module exports no memory)."""

    __slots__ = ("base", "size")

    def __init__(self, base: int, size: int) -> None:
        self.base = base
        self.size = size

    def check(self, ptr: int, length: int, align: int = 1) -> None:
        if ptr % align:
            raise GuestFault(f"pointer {ptr:#x} is not {align}-byte aligned")
        if ptr + length > self.size or (not self.base and length):
            raise GuestFault(f"{length} bytes at {ptr:#x} are outside the guest's memory")

    def read(self, ptr: int, length: int) -> bytes:
        self.check(ptr, length)
        return ctypes.string_at(self.base + ptr, length) if length else b""

    def write(self, ptr: int, data: bytes | bytearray | memoryview) -> None:
        length = len(data)
        self.check(ptr, length)
        if length:
            ctypes.memmove(self.base + ptr, bytes(data), length)

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
