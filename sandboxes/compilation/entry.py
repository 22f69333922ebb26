"""Whether a module has an entry Warden can run, read from its bytes without compiling it.

The API answers 422 at submit for a module no worker could start (``(module)``: no
``_start``; a ``_start`` that takes parameters or returns values), instead of queueing it to
fail later. Only validated modules come here. A core module needs an exported function
``_start`` of type ``() -> ()``; a component needs a top-level export named
``wasi:cli/run@0.2.x`` (read from its export sections, not searched for in its bytes).
Anything this reader does not know (a GC type group, an encoding newer than it) is left to
the worker's check at link time, which is authoritative: this one only answers early.
"""

from __future__ import annotations

import re
from typing import Final

from sandboxes.compilation.modules import ModuleBytes, ModuleKind
from sandboxes.languages.toolchains.wasm_bytes import read_uleb

NO_START: Final = "module exports no _start function: only WASI command modules can run"
NO_RUN: Final = (
    "component exports no wasi:cli/run@0.2.x: only WASI P2 command components can run"
)
_TYPE_SECTION: Final = 1
_IMPORT_SECTION: Final = 2
_FUNCTION_SECTION: Final = 3
_EXPORT_SECTION: Final = 7
_COMPONENT_EXPORT_SECTION: Final = 11
_FUNC_KIND: Final = 0
_FUNC_TYPE: Final = 0x60
_REF_TYPES: Final = (0x63, 0x64)  # (ref null? <heaptype>): the heap type follows as s33
_RUN_EXPORT: Final = re.compile(rb"^wasi:cli/run@0\.2\.[0-9]+$")
_VALTYPE_NAMES: Final = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x7B: "v128",
                         0x70: "funcref", 0x6F: "externref"}


class _Unknown(Exception):  # noqa: N818 - a private signal, not an error to report
    """An encoding this reader does not handle: leave the question to the worker."""


def entry_problem(module: ModuleBytes) -> str | None:
    """Why ``module`` cannot be run (no entry, or an entry of the wrong type), or None."""
    try:
        if module.kind is ModuleKind.COMPONENT:
            return None if _exports_run(module.wasm) else NO_RUN
        return _start_problem(module.wasm)
    except (_Unknown, IndexError):
        return None


def _sections(wasm: bytes) -> list[tuple[int, int, int]]:
    """(id, start, end) of each top-level section, after the 8-byte header."""
    found = []
    pos = 8
    while pos < len(wasm):
        size, start = read_uleb(wasm, pos + 1)
        found.append((wasm[pos], start, start + size))
        pos = start + size
    return found


def _skip_uleb(wasm: bytes, pos: int) -> int:
    return read_uleb(wasm, pos)[1]


def _valtype(wasm: bytes, pos: int) -> tuple[str, int]:
    byte = wasm[pos]
    if byte in _REF_TYPES:
        return "ref", _skip_uleb(wasm, pos + 1)  # an s33 has the same continuation bits
    return _VALTYPE_NAMES.get(byte, f"0x{byte:02x}"), pos + 1


def _func_types(wasm: bytes, start: int) -> list[str]:
    """Each function type of the type section as ``(params) -> (results)``."""
    count, pos = read_uleb(wasm, start)
    types = []
    for _ in range(count):
        if wasm[pos] != _FUNC_TYPE:
            raise _Unknown("a GC type group")
        pos += 1
        sides = []
        for _side in range(2):
            n, pos = read_uleb(wasm, pos)
            names = []
            for _ in range(n):
                name, pos = _valtype(wasm, pos)
                names.append(name)
            sides.append(", ".join(names))
        types.append(f"({sides[0]}) -> ({sides[1]})")
    return types


def _imported_func_types(wasm: bytes, start: int) -> list[int]:
    """The type index of each imported function, in order."""
    count, pos = read_uleb(wasm, start)
    found = []
    for _ in range(count):
        for _name in range(2):  # module and field names
            length, pos = read_uleb(wasm, pos)
            pos += length
        kind = wasm[pos]
        pos += 1
        if kind == 0:  # func: a type index
            index, pos = read_uleb(wasm, pos)
            found.append(index)
        elif kind == 1:  # table: a reference type and limits
            pos = _skip_limits(wasm, _valtype(wasm, pos)[1])
        elif kind == 2:  # memory: limits
            pos = _skip_limits(wasm, pos)
        elif kind == 3:  # global: a value type and mutability
            pos = _valtype(wasm, pos)[1] + 1
        else:
            raise _Unknown(f"import kind {kind}")
    return found


def _skip_limits(wasm: bytes, pos: int) -> int:
    flags = wasm[pos]
    if flags & ~0x07:  # max, shared, 64-bit: anything else is newer than this reader
        raise _Unknown(f"limits flags 0x{flags:02x}")
    pos = _skip_uleb(wasm, pos + 1)
    return _skip_uleb(wasm, pos) if flags & 1 else pos


def _start_index(wasm: bytes, start: int) -> int | None:
    """The function index exported as ``_start``, or None."""
    count, pos = read_uleb(wasm, start)
    for _ in range(count):
        length, pos = read_uleb(wasm, pos)
        name = wasm[pos:pos + length]
        kind = wasm[pos + length]
        index, pos = read_uleb(wasm, pos + length + 1)
        if name == b"_start" and kind == _FUNC_KIND:
            return index
    return None


def _start_problem(wasm: bytes) -> str | None:
    sections = {sid: start for sid, start, _end in _sections(wasm)}
    if _EXPORT_SECTION not in sections:
        return NO_START
    index = _start_index(wasm, sections[_EXPORT_SECTION])
    if index is None:
        return NO_START
    types = _func_types(wasm, sections[_TYPE_SECTION]) if _TYPE_SECTION in sections else []
    imported = (_imported_func_types(wasm, sections[_IMPORT_SECTION])
                if _IMPORT_SECTION in sections else [])
    if index < len(imported):
        type_index = imported[index]
    else:
        count, pos = read_uleb(wasm, sections[_FUNCTION_SECTION])
        if index - len(imported) >= count:
            raise _Unknown("function index out of range")
        for _ in range(index - len(imported)):
            pos = _skip_uleb(wasm, pos)
        type_index = read_uleb(wasm, pos)[0]
    signature = types[type_index]
    if signature != "() -> ()":
        return f"_start must take no parameters and return nothing (it is {signature})"
    return None


def _exports_run(wasm: bytes) -> bool:
    """Whether a top-level export of the component is ``wasi:cli/run@0.2.x``."""
    for sid, start, _end in _sections(wasm):
        if sid != _COMPONENT_EXPORT_SECTION:
            continue
        count, pos = read_uleb(wasm, start)
        for _ in range(count):
            if wasm[pos] not in (0x00, 0x01):  # the export name's encoding
                raise _Unknown(f"export name encoding 0x{wasm[pos]:02x}")
            length, pos = read_uleb(wasm, pos + 1)
            if _RUN_EXPORT.match(wasm[pos:pos + length]):
                return True
            pos = _skip_extern_desc(wasm, _skip_sort_index(wasm, pos + length))
    return False


def _skip_sort_index(wasm: bytes, pos: int) -> int:
    sort = wasm[pos]
    pos += 2 if sort == 0x00 else 1  # a core sort names its kind in a second byte
    return _skip_uleb(wasm, pos)


def _skip_extern_desc(wasm: bytes, pos: int) -> int:
    """Past an export's optional type ascription (``externdesc?``)."""
    if wasm[pos] == 0x00:
        return pos + 1
    pos += 1
    kind = wasm[pos]
    if kind == 0x00:  # core module: 0x11 then a type index
        return _skip_uleb(wasm, pos + 2)
    if kind in (0x01, 0x04, 0x05):  # func, component, instance: a type index
        return _skip_uleb(wasm, pos + 1)
    if kind in (0x02, 0x03):  # value or type bound: a tag, then an index or a type
        return _skip_uleb(wasm, pos + 2)
    raise _Unknown(f"extern kind 0x{kind:02x}")
