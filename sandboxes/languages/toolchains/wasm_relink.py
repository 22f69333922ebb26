"""Re-link a core wasm module: drop some function imports, add others, append functions.

What the Ruby runtime needs to turn the npm ``ruby+stdlib.wasm`` (a reactor that imports a
JavaScript host) into a WASI command (see ``ruby_wasm``), kept generic:

* ``Module.parse`` splits a module into its sections, imports, types and code bodies;
* ``relink`` builds a new module: imported functions are kept, replaced by a defined body
  (a stub), or moved, new imports are added, functions from a second small module (written
  in WAT, compiled by wasmtime) are appended with their calls bound to the first module's
  functions, and the exports are replaced. Every function index in code, element segments,
  globals and the start section is rewritten for the new index space.

Only what the MVP plus the post-MVP features clang and binaryen emit by default is
understood (sign-ext, non-trapping float-to-int, bulk memory, reference types,
multi-value, tail calls); anything else (SIMD, exceptions, GC, threads, multi-memory) raises
``RelinkError``, so a module is never rewritten half-understood.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from sandboxes.languages.toolchains.wasm_bytes import (
    CORE_HEADER,
    read_sleb,
    read_uleb,
    split_sections,
)
from sandboxes.languages.toolchains.wasm_bytes import write_name as name_bytes
from sandboxes.languages.toolchains.wasm_bytes import write_uleb as uleb

MAGIC: Final = CORE_HEADER
SEC_CUSTOM, SEC_TYPE, SEC_IMPORT, SEC_FUNCTION, SEC_TABLE, SEC_MEMORY = 0, 1, 2, 3, 4, 5
SEC_GLOBAL, SEC_EXPORT, SEC_START, SEC_ELEMENT, SEC_CODE, SEC_DATA, SEC_DATACOUNT = (
    6, 7, 8, 9, 10, 11, 12
)
KIND_FUNC, KIND_TABLE, KIND_MEMORY, KIND_GLOBAL = 0, 1, 2, 3


class RelinkError(ValueError):
    """The module uses something this re-linker does not understand, or a name is missing."""




def _read_name(data: bytes, pos: int) -> tuple[str, int]:
    length, pos = read_uleb(data, pos)
    return data[pos : pos + length].decode(), pos + length


# -- instructions ---------------------------------------------------------------------------
# Immediate kinds, per opcode (one-byte opcodes; 0xFC has its own table).
_NONE, _ULEB, _BLOCK, _BR_TABLE, _CALL, _CALL_INDIRECT, _MEMARG = 0, 1, 2, 3, 4, 5, 6
_SLEB, _F32, _F64, _SELECT_T, _REF_NULL, _REF_FUNC, _PREFIX_FC, _BAD = 7, 8, 9, 10, 11, 12, 13, 14


def _opcode_kinds() -> list[int]:
    kinds = [_BAD] * 256
    for op in (0x00, 0x01, 0x05, 0x0B, 0x0F, 0x1A, 0x1B, 0xD1):
        kinds[op] = _NONE
    for op in (0x02, 0x03, 0x04):
        kinds[op] = _BLOCK
    for op in (0x0C, 0x0D, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x3F, 0x40):
        kinds[op] = _ULEB  # labels, locals, globals, tables, memory index of size/grow
    kinds[0x0E] = _BR_TABLE
    kinds[0x10] = kinds[0x12] = _CALL  # call, return_call
    kinds[0x11] = kinds[0x13] = _CALL_INDIRECT  # call_indirect, return_call_indirect
    for op in range(0x28, 0x3F):
        kinds[op] = _MEMARG
    kinds[0x41] = kinds[0x42] = _SLEB
    kinds[0x43] = _F32
    kinds[0x44] = _F64
    for op in range(0x45, 0xC5):  # numeric, including sign-extension (0xC0-0xC4)
        kinds[op] = _NONE
    kinds[0x1C] = _SELECT_T
    kinds[0xD0] = _REF_NULL
    kinds[0xD2] = _REF_FUNC
    kinds[0xFC] = _PREFIX_FC
    return kinds


_KINDS: Final = _opcode_kinds()
# 0xFC sub-opcodes: number of uleb immediates, and which of them is a data index.
_FC_IMMEDIATES: Final = {
    **{sub: 0 for sub in range(8)},  # trunc_sat
    8: 2, 9: 1, 10: 2, 11: 1,  # memory.init data mem, data.drop data, memory.copy, fill
    12: 2, 13: 1, 14: 2, 15: 1, 16: 1, 17: 1,  # table.init/elem.drop/copy/grow/size/fill
}


def _skip_leb(code: bytes, pos: int) -> int:
    while code[pos] & 0x80:
        pos += 1
    return pos + 1


@dataclass
class Remap:
    """Old index → new index, per index space; a missing map means unchanged."""

    func: Callable[[int], int] | None = None
    type: Callable[[int], int] | None = None
    data: Callable[[int], int] | None = None


def remap_expr(code: bytes, pos: int, end: int | None, remap: Remap) -> tuple[bytes, int]:
    """Rewrite the instructions from ``pos``: up to ``end`` (a function body), or, when
    ``end`` is None, through the ``end`` opcode that closes a constant expression.

    Returns the new bytes and the position after the last instruction read.
    """
    kinds = _KINDS
    out: list[bytes] = []
    last = pos
    depth = 0
    fmap, tmap, dmap = remap.func, remap.type, remap.data
    limit = len(code) if end is None else end
    while pos < limit:
        op = code[pos]
        pos += 1
        kind = kinds[op]
        if kind == _NONE:
            if op == 0x0B and end is None:
                if depth == 0:
                    break
                depth -= 1
        elif kind in (_ULEB, _SLEB):
            pos = _skip_leb(code, pos)
        elif kind == _MEMARG:
            if code[pos] & 0x40:
                raise RelinkError("multi-memory access is not supported")
            pos = _skip_leb(code, _skip_leb(code, pos))
        elif kind in (_CALL, _REF_FUNC):
            index, after = read_uleb(code, pos)
            if fmap is not None:
                out.append(code[last:pos])
                out.append(uleb(fmap(index)))
                last = after
            pos = after
        elif kind == _BLOCK:
            depth += 1
            byte = code[pos]
            if byte == 0x40 or byte in (0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F):
                pos += 1
            else:
                index, after = read_sleb(code, pos)
                if index < 0:
                    raise RelinkError(f"unknown block type {byte:#x}")
                if tmap is not None:
                    out.append(code[last:pos])
                    out.append(uleb(tmap(index)))  # a non-negative s33 < 2**31 reads as uleb
                    last = after
                pos = after
        elif kind == _CALL_INDIRECT:
            index, after = read_uleb(code, pos)
            if tmap is not None:
                out.append(code[last:pos])
                out.append(uleb(tmap(index)))
                last = after
            pos = _skip_leb(code, after)  # table index
        elif kind == _BR_TABLE:
            count, pos = read_uleb(code, pos)
            for _ in range(count + 1):
                pos = _skip_leb(code, pos)
        elif kind == _F32:
            pos += 4
        elif kind == _F64:
            pos += 8
        elif kind == _SELECT_T:
            count, pos = read_uleb(code, pos)
            pos += count
        elif kind == _REF_NULL:
            pos += 1
        elif kind == _PREFIX_FC:
            sub, pos = read_uleb(code, pos)
            if sub not in _FC_IMMEDIATES:
                raise RelinkError(f"unsupported instruction 0xfc {sub}")
            count = _FC_IMMEDIATES[sub]
            if sub in (8, 9) and dmap is not None:
                index, after = read_uleb(code, pos)
                out.append(code[last:pos])
                out.append(uleb(dmap(index)))
                last = after
                pos = after
                count -= 1
            for _ in range(count):
                pos = _skip_leb(code, pos)
        else:
            raise RelinkError(f"unsupported instruction {op:#x} at byte {pos - 1}")
    if end is not None and pos != end:
        raise RelinkError("function body overruns its size")
    out.append(code[last:pos])
    return b"".join(out), pos


def instructions(code: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(opcode, position, immediate) for each instruction of ``code[start:end]``.

    For reading small functions (pattern checks). The immediate is decoded for calls, local
    and global accesses, ``i32.const`` (signed) and memory accesses (the offset); else -1.
    """
    pos = start
    while pos < end:
        op = code[pos]
        imm = -1
        if op in (0x10, 0x20, 0x21, 0x22, 0x23, 0x24):
            imm, _ = read_uleb(code, pos + 1)
        elif op == 0x41:
            imm, _ = read_sleb(code, pos + 1)
        elif 0x28 <= op <= 0x3E:
            imm, _ = read_uleb(code, _skip_leb(code, pos + 1))
        yield op, pos, imm
        pos += _instruction_length(code, pos)


def _instruction_length(code: bytes, pos: int) -> int:
    """Length of the one instruction at ``pos`` (blocks count as their opening byte+type)."""
    op = code[pos]
    kind = _KINDS[op]
    p = pos + 1
    if kind == _NONE:
        return 1
    if kind in (_ULEB, _SLEB, _CALL, _REF_FUNC):
        return _skip_leb(code, p) - pos
    if kind == _MEMARG:
        return _skip_leb(code, _skip_leb(code, p)) - pos
    if kind == _BLOCK:
        return (p + 1 if code[p] & 0x40 and code[p] < 0x80 else _skip_leb(code, p)) - pos
    if kind == _CALL_INDIRECT:
        return _skip_leb(code, _skip_leb(code, p)) - pos
    if kind == _BR_TABLE:
        count, p = read_uleb(code, p)
        for _ in range(count + 1):
            p = _skip_leb(code, p)
        return p - pos
    if kind == _F32:
        return 5
    if kind == _F64:
        return 9
    if kind == _SELECT_T:
        count, p = read_uleb(code, p)
        return p + count - pos
    if kind == _REF_NULL:
        return 2
    if kind == _PREFIX_FC:
        sub, p = read_uleb(code, p)
        for _ in range(_FC_IMMEDIATES.get(sub, 0)):
            p = _skip_leb(code, p)
        return p - pos
    raise RelinkError(f"unsupported instruction {op:#x}")


# -- modules ----------------------------------------------------------------------------------
@dataclass
class Import:
    module: str
    name: str
    kind: int
    desc: bytes  # the raw import description after the kind byte
    type_index: int = -1  # for functions


@dataclass
class Body:
    """One function body: its local declarations and its code (``end`` included)."""

    raw: bytes
    code_start: int  # offset in ``raw`` where the instructions begin


@dataclass
class Module:
    sections: list[tuple[int, bytes]]
    types: list[bytes] = field(default_factory=list)  # raw type entries (0x60 ...)
    imports: list[Import] = field(default_factory=list)
    functions: list[int] = field(default_factory=list)  # type index per defined function
    exports: list[tuple[str, int, int]] = field(default_factory=list)  # (name, kind, index)
    bodies: list[Body] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)  # function names (name section)

    @property
    def func_imports(self) -> list[Import]:
        return [imp for imp in self.imports if imp.kind == KIND_FUNC]

    def section(self, sid: int) -> bytes | None:
        return next((body for s, body in self.sections if s == sid), None)

    def func_type(self, index: int) -> bytes:
        imports = self.func_imports
        if index < len(imports):
            return self.types[imports[index].type_index]
        return self.types[self.functions[index - len(imports)]]

    def body(self, index: int) -> Body:
        return self.bodies[index - len(self.func_imports)]

    def export_index(self, name: str, kind: int = KIND_FUNC) -> int:
        for export_name, export_kind, index in self.exports:
            if export_name == name and export_kind == kind:
                return index
        raise RelinkError(f"the module exports no {name!r}")

    @classmethod
    def parse(cls, data: bytes | bytearray, with_code: bool = True) -> Module:
        sections = split_sections(bytes(data))
        if sections is None:
            raise RelinkError("not a core wasm module")
        module = cls(sections)
        for sid, body in sections:
            if sid == SEC_TYPE:
                module.types = _parse_types(body)
            elif sid == SEC_IMPORT:
                module.imports = _parse_imports(body)
            elif sid == SEC_FUNCTION:
                count, p = read_uleb(body, 0)
                for _ in range(count):
                    index, p = read_uleb(body, p)
                    module.functions.append(index)
            elif sid == SEC_EXPORT:
                count, p = read_uleb(body, 0)
                for _ in range(count):
                    name, p = _read_name(body, p)
                    kind = body[p]
                    index, p = read_uleb(body, p + 1)
                    module.exports.append((name, kind, index))
            elif sid == SEC_CODE and with_code:
                module.bodies = _parse_bodies(body)
            elif sid == SEC_CUSTOM:
                custom, p = _read_name(body, 0)
                if custom == "name":
                    module.names = _parse_function_names(body, p)
        return module


def _parse_types(body: bytes) -> list[bytes]:
    count, pos = read_uleb(body, 0)
    out = []
    for _ in range(count):
        start = pos
        if body[pos] != 0x60:
            raise RelinkError(f"unsupported type form {body[pos]:#x}")
        params, pos = read_uleb(body, pos + 1)
        pos += params
        results, pos = read_uleb(body, pos)
        pos += results
        out.append(body[start:pos])
    return out


def _limits_length(body: bytes, pos: int) -> int:
    flags = body[pos]
    if flags not in (0, 1):
        raise RelinkError(f"unsupported limits flags {flags:#x} (shared or 64-bit memory?)")
    end = _skip_leb(body, pos + 1)
    return (_skip_leb(body, end) if flags == 1 else end) - pos


def _parse_imports(body: bytes) -> list[Import]:
    count, pos = read_uleb(body, 0)
    out = []
    for _ in range(count):
        module, pos = _read_name(body, pos)
        name, pos = _read_name(body, pos)
        kind = body[pos]
        pos += 1
        start = pos
        type_index = -1
        if kind == KIND_FUNC:
            type_index, pos = read_uleb(body, pos)
        elif kind == KIND_TABLE:
            pos += 1 + _limits_length(body, pos + 1)
        elif kind == KIND_MEMORY:
            pos += _limits_length(body, pos)
        elif kind == KIND_GLOBAL:
            pos += 2
        else:
            raise RelinkError(f"unsupported import kind {kind}")
        out.append(Import(module, name, kind, body[start:pos], type_index))
    return out


def _parse_bodies(body: bytes) -> list[Body]:
    count, pos = read_uleb(body, 0)
    out = []
    for _ in range(count):
        size, pos = read_uleb(body, pos)
        raw = body[pos : pos + size]
        groups, p = read_uleb(raw, 0)
        for _ in range(groups):
            _, p = read_uleb(raw, p)
            p += 1
        out.append(Body(raw, p))
        pos += size
    return out


def _parse_function_names(body: bytes, pos: int) -> dict[int, str]:
    names: dict[int, str] = {}
    while pos < len(body):
        sub = body[pos]
        size, pos = read_uleb(body, pos + 1)
        if sub == 1:
            count, p = read_uleb(body, pos)
            for _ in range(count):
                index, p = read_uleb(body, p)
                names[index], p = _read_name(body, p)
        pos += size
    return names


# -- relinking --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stub:
    """A defined body that replaces a function import: its instructions, ``end`` excluded."""

    code: bytes = b"\x00"  # unreachable


def relink(
    base: Module,
    *,
    stubs: Mapping[tuple[str, str], Stub],
    extra: Module,
    resolve: Callable[[Import], int | tuple[str, str]],
    exports: Sequence[tuple[str, int, str | int]],
) -> bytes:
    """A new module from ``base``.

    ``stubs``: function imports of ``base`` (module, name) that become defined functions.
    ``extra``: a small module whose function imports are resolved by ``resolve`` to a
    function index of ``base`` or to a (module, name) import of the result (kept or added),
    whose memory and table imports stand for ``base``'s memory 0 and table 0, and whose
    defined functions are appended. It may not define memories, tables, globals, data or
    element segments of its own.
    ``exports``: (name, kind, index) of the result, where for functions the index is a
    ``base`` function index or the name of an ``extra`` export.
    """
    for sid, _ in extra.sections:
        if sid in (SEC_TABLE, SEC_MEMORY, SEC_GLOBAL, SEC_START, SEC_ELEMENT, SEC_DATA):
            raise RelinkError(f"the extra module may not have section {sid}")
    old_imports = base.func_imports
    n_old = len(old_imports)
    missing = set(stubs) - {(imp.module, imp.name) for imp in old_imports}
    if missing:
        raise RelinkError(f"no such imports to stub: {sorted(missing)}")

    # Types: base's, then the extra module's that base lacks.
    types = list(base.types)
    type_of = {t: i for i, t in reversed(list(enumerate(types)))}
    extra_type: list[int] = []
    for t in extra.types:
        if t not in type_of:
            type_of[t] = len(types)
            types.append(t)
        extra_type.append(type_of[t])

    # Imports: base's kept imports in order, then new ones the extra module asks for.
    new_imports: list[Import] = []
    import_index: dict[tuple[str, str], int] = {}
    base_func_new: dict[int, int] = {}
    func_count = 0
    for imp in base.imports:
        if imp.kind == KIND_FUNC and (imp.module, imp.name) in stubs:
            continue
        new_imports.append(imp)
        if imp.kind == KIND_FUNC:
            import_index[(imp.module, imp.name)] = func_count
            func_count += 1
    extra_targets: list[int | tuple[str, str]] = []
    for imp in extra.func_imports:
        target = resolve(imp)
        if isinstance(target, tuple) and target not in import_index:
            wanted = extra.types[imp.type_index]
            new_imports.append(
                Import(target[0], target[1], KIND_FUNC, uleb(type_of[wanted]), type_of[wanted])
            )
            import_index[target] = func_count
            func_count += 1
        extra_targets.append(target)
    n_new_imports = func_count
    # Defined functions: base's, the stubs, then the extra module's.
    for k, imp in enumerate(old_imports):
        key = (imp.module, imp.name)
        if key in import_index:
            base_func_new[k] = import_index[key]
    n_base_defined = len(base.functions)
    for k in range(n_base_defined):
        base_func_new[n_old + k] = n_new_imports + k
    stub_order = [k for k, imp in enumerate(old_imports) if (imp.module, imp.name) in stubs]
    for j, k in enumerate(stub_order):
        base_func_new[k] = n_new_imports + n_base_defined + j
    extra_first = n_new_imports + n_base_defined + len(stub_order)
    n_extra_imports = len(extra.func_imports)

    def extra_func(index: int) -> int:
        if index < n_extra_imports:
            target = extra_targets[index]
            return import_index[target] if isinstance(target, tuple) else base_func_new[target]
        return extra_first + index - n_extra_imports

    base_remap = Remap(func=base_func_new.__getitem__)
    extra_remap = Remap(func=extra_func, type=extra_type.__getitem__)

    out = bytearray(MAGIC)

    def emit(sid: int, body: bytes) -> None:
        out.append(sid)
        out.extend(uleb(len(body)))
        out.extend(body)

    def vec(items: Sequence[bytes]) -> bytes:
        return uleb(len(items)) + b"".join(items)

    defined_types = (
        list(base.functions)
        + [old_imports[k].type_index for k in stub_order]
        + [extra_type[t] for t in extra.functions]
    )
    bodies = [_remap_body(b, base_remap) for b in base.bodies]
    bodies += [vec([]) + stubs[(old_imports[k].module, old_imports[k].name)].code + b"\x0b"
               for k in stub_order]
    bodies += [_remap_body(b, extra_remap) for b in extra.bodies]

    extra_exports = {name: index for name, kind, index in extra.exports if kind == KIND_FUNC}
    export_entries = []
    for name, kind, index in exports:
        if kind == KIND_FUNC:
            index = extra_func(extra_exports[index]) if isinstance(index, str) else (
                base_func_new[index]
            )
        elif isinstance(index, str):
            raise RelinkError("only function exports may name an extra export")
        export_entries.append(name_bytes(name) + bytes([kind]) + uleb(index))

    for sid, body in base.sections:
        if sid == SEC_CUSTOM:
            continue  # names and debug info would describe the old index space
        if sid == SEC_TYPE:
            body = vec(types)
        elif sid == SEC_IMPORT:
            body = vec([
                name_bytes(i.module) + name_bytes(i.name) + bytes([i.kind]) + i.desc
                for i in new_imports
            ])
        elif sid == SEC_FUNCTION:
            body = vec([uleb(t) for t in defined_types])
        elif sid == SEC_GLOBAL:
            body = _remap_globals(body, base_remap)
        elif sid == SEC_EXPORT:
            body = vec(export_entries)
        elif sid == SEC_START:
            index, _ = read_uleb(body, 0)
            body = uleb(base_func_new[index])
        elif sid == SEC_ELEMENT:
            body = _remap_elements(body, base_remap)
        elif sid == SEC_CODE:
            body = vec([uleb(len(b)) + b for b in bodies])
        emit(sid, body)
    return bytes(out)


def _remap_body(body: Body, remap: Remap) -> bytes:
    code, _ = remap_expr(body.raw, body.code_start, len(body.raw), remap)
    return body.raw[: body.code_start] + code


def _remap_globals(body: bytes, remap: Remap) -> bytes:
    count, pos = read_uleb(body, 0)
    out = [uleb(count)]
    for _ in range(count):
        out.append(body[pos : pos + 2])  # value type, mutability
        expr, pos = remap_expr(body, pos + 2, None, remap)
        out.append(expr)
    return b"".join(out)


def _remap_elements(body: bytes, remap: Remap) -> bytes:
    fmap = remap.func
    assert fmap is not None
    count, pos = read_uleb(body, 0)
    out = [uleb(count)]
    for _ in range(count):
        flags, pos = read_uleb(body, pos)
        out.append(uleb(flags))
        if flags > 7:
            raise RelinkError(f"unsupported element segment flags {flags}")
        if flags & 1 == 0:  # active: (table index) offset expression
            if flags & 2:
                table, pos = read_uleb(body, pos)
                out.append(uleb(table))
            expr, pos = remap_expr(body, pos, None, remap)
            out.append(expr)
        if flags & 3:  # explicit element kind / reference type
            out.append(body[pos : pos + 1])
            pos += 1
        n, pos = read_uleb(body, pos)
        out.append(uleb(n))
        for _ in range(n):
            if flags & 4:
                expr, pos = remap_expr(body, pos, None, remap)
                out.append(expr)
            else:
                index, pos = read_uleb(body, pos)
                out.append(uleb(fmap(index)))
    return b"".join(out)


def element_slots(module: Module, function: int) -> list[int]:
    """Slots of table 0 that active element segments with constant offsets fill with
    ``function``."""
    body = module.section(SEC_ELEMENT)
    if body is None:
        return []
    slots = []
    count, pos = read_uleb(body, 0)
    for _ in range(count):
        flags, pos = read_uleb(body, pos)
        table, offset = 0, None
        if flags & 1 == 0:
            if flags & 2:
                table, pos = read_uleb(body, pos)
            if body[pos] == 0x41:
                offset, _ = read_sleb(body, pos + 1)
            _, pos = remap_expr(body, pos, None, Remap())
        if flags & 3:
            pos += 1
        n, pos = read_uleb(body, pos)
        for k in range(n):
            if flags & 4:
                start = pos
                _, pos = remap_expr(body, pos, None, Remap())
                value = read_uleb(body, start + 1)[0] if body[start] == 0xD2 else -1
            else:
                value, pos = read_uleb(body, pos)
            if value == function and table == 0 and offset is not None:
                slots.append(offset + k)
    return slots
