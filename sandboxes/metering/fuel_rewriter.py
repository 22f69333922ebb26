"""Deterministic fuel and a cross-thread interrupt, added to a core wasm module as wasm code.

wasmtime's own fuel plus epochs cost the C sieve ~2.8x native; the same two limits written
into the guest's code cost ~1.45x, with the same fuel counts as wasmtime 50 (but see below;
figures, host side and variants tried: ``docs/notes/fuel-metering.md``).

Design:

* Two mutable globals are appended after the guest's own and exported: ``__warden_fuel``
  (i64, remaining fuel) and ``__warden_trap`` (i32, set to 1 when the check fires).
* Each function caches the fuel in an extra i64 local (plus two i32 temporaries). Code is
  cut into straight-line segments where wasmtime 50 flushes its own fuel counter
  (``loop``, ``if``, ``else``, ``end``, ``br*``, calls, ``return``, ``unreachable``), and
  each segment's static cost is charged at its *end*, as wasmtime does: a loop header is
  the check alone, and the body's ``fuel -= k`` sits before its back edge. (Charging at the
  start made Cranelift compute ``fuel - k`` twice on both sides of the check's branch:
  three more instructions per iteration of the sieve's outer loop.)
* One exception to charging at the end: a block's first segment, when it ends with a
  branch to that block's end (``if (x) continue``), is charged at that end instead, when
  nothing in the block escapes past it (a branch further out, ``return``): every pass then
  reaches that end exactly once, and Cranelift no longer keeps ``fuel - k`` alive on both
  sides of the branch (the sieve's outer loop: 3 instructions fewer, ~4%).
* The check, at function entry, at every loop header and after every call returns (else
  a chain of returns, each frame running a long straight tail, would go unchecked: stack
  depth x tail length), is one compare covering both
  limits: ``if fuel < i64.atomic.load(page, 0)``. The page is one more memory of exactly
  one page, appended after the guest's (exported as ``__warden_interrupt``), whose word 0
  is 0 normally and ``TRIPPED`` once the host, from any thread, stops the run. (Not an
  imported shared memory: with any imported memory wasmtime gives up its copy-on-write
  memory images, and CPython took 8.9 ms instead of 7 us to instantiate.) The slow path is
  inline (store the fuel, set
  ``__warden_trap``, ``unreachable``), never a call, so Cranelift sees no clobbering call
  on the hot path. The local is stored to the global before calls and exits and reloaded
  after calls.
* Cost model = wasmtime 50's: 0 for ``nop``, ``drop``, ``block``, ``loop``,
  ``unreachable``, ``return``, ``else`` and ``end``; 1 for any other operator; +1 per
  function invocation; bulk operations (``memory.fill/copy/init``, ``table.fill/copy/init``,
  ``memory.grow``, ``table.grow``) also charge their length or delta operand, then check
  (a grow only if it succeeded, or by a constant <= 128: what wasmtime 50 charges).
  Straight-line code is finite, so the overshoot past zero is bounded; code after the last
  check (a loop's exit, a chain of returns) is charged but not checked, so the host treats
  a run that ends with the counter below zero as out of fuel, which makes the boundary
  exact: a budget is enough when it covers the count.
* The guest's memories keep their indices (the page comes after them). A start section
  is removed and its function exported as ``__warden_start`` so the host can set the fuel
  before it runs. Imports from module ``__warden`` and exports named ``__warden*`` are
  refused (the host finds its globals and page by those names).

Known differences from wasmtime 50's own count (tests/test_fuel_rewriter.py pins them):
instantiation is free here, while wasmtime meters its synthesized startup function (its
entry, the call to a start function (the host charges that one: 2), constant expressions
it cannot fold, segments with such offsets or in imported memories); and wasmtime checks
at other points and saturates its count, so near the budget one may stop where the other
finishes.

The guest cannot reach the counter, the flag or the page only because its *original*
module was validated (on an engine without threads or multi-memory: one memory at most,
index 0) before it is rewritten: the rewriter trusts the input's indices. It refuses, with
``UnsupportedModule``, what it does not handle (components, GC/rec-group types, exception
handling, unknown opcodes) and any input it cannot parse.
"""

from __future__ import annotations

from typing import NamedTuple

from sandboxes.languages.toolchains.wasm_bytes import (
    CORE_HEADER,
    read_sleb,
    read_uleb,
    split_sections,
    write_name,
    write_sleb,
    write_uleb,
)

# Part of the compiled-artifact cache key: bump whenever the output for some input changes.
REWRITER_VERSION = "7"
FUEL_GLOBAL = "__warden_fuel"
TRAP_GLOBAL = "__warden_trap"
START_EXPORT = "__warden_start"
INTERRUPT_EXPORT = "__warden_interrupt"  # the page: word 0 is 0, or TRIPPED to stop the run
TRIPPED = 2**63 - 1

_RESERVED = "__warden"
_SECTION_ORDER = (1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11)
_VALTYPE_BYTES = frozenset({0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F})
# limits flags a memory or table may carry here: max present, shared, 64-bit
_LIMIT_FLAGS = 0x07
# fuel (mut i64 = 0), trap flag (mut i32 = 0)
_NEW_GLOBALS = b"\x7e\x01\x42\x00\x0b" + b"\x7f\x01\x41\x00\x0b"
# the page: a memory of exactly one page (limits flag: max present; min 1, max 1)
_PAGE_LIMITS = b"\x01\x01\x01"


class UnsupportedModule(Exception):  # noqa: N818 - public name the callers use
    """The input is not a core module the rewriter handles, or uses a reserved name; such a
    module must not run on the instrumented engine."""


def _skip_leb(buf: bytes, p: int) -> int:
    while buf[p] & 0x80:
        p += 1
    return p + 1


def _take(buf: bytes, p: int, n: int) -> int:
    """The end of ``n`` bytes at ``p``: slicing past the end would silently shorten them."""
    if p + n > len(buf):
        raise IndexError("truncated")
    return p + n


def _done(buf: bytes, p: int, what: str) -> None:
    if p != len(buf):
        raise UnsupportedModule(f"malformed {what} section")


# ---------------------------------------------------------------- module-level parsing


def _skip_valtype(buf: bytes, p: int) -> int:
    b = buf[p]
    if b in _VALTYPE_BYTES:
        return p + 1
    if b in (0x63, 0x64):  # (ref null? heaptype)
        return _skip_leb(buf, p + 1)
    raise UnsupportedModule(f"value type 0x{b:02x}")


def _skip_limits(buf: bytes, p: int) -> int:
    flags = buf[p]
    if flags & ~_LIMIT_FLAGS:
        raise UnsupportedModule(f"limits flags 0x{flags:02x}")
    p = _skip_leb(buf, p + 1)
    if flags & 1:
        p = _skip_leb(buf, p)
    return p


def _parse_types(payload: bytes) -> list[int]:
    """Parameter count of each function type."""
    n, p = read_uleb(payload, 0)
    params = []
    for _ in range(n):
        if payload[p] != 0x60:
            raise UnsupportedModule("GC / rec-group types")
        p += 1
        np_, p = read_uleb(payload, p)
        for _ in range(np_):
            p = _skip_valtype(payload, p)
        nr, p = read_uleb(payload, p)
        for _ in range(nr):
            p = _skip_valtype(payload, p)
        params.append(np_)
    _done(payload, p, "type")
    return params


def _parse_imports(payload: bytes) -> tuple[int, int]:
    """(imported globals, imported memories): the new globals and the page go after them."""
    n, p = read_uleb(payload, 0)
    globals_ = mems = 0
    for _ in range(n):
        ln, p = read_uleb(payload, p)
        q = _take(payload, p, ln)
        mod = payload[p:q].decode()
        ln, p = read_uleb(payload, q)
        p = _take(payload, p, ln)
        if mod == _RESERVED:
            raise UnsupportedModule(f"imports from reserved module {_RESERVED!r}")
        kind = payload[p]
        p += 1
        if kind == 0:
            p = _skip_leb(payload, p)
        elif kind == 1:
            p = _skip_limits(payload, _skip_valtype(payload, p))
        elif kind == 2:
            p = _skip_limits(payload, p)
            mems += 1
        elif kind == 3:
            p = _skip_valtype(payload, p) + 1
            globals_ += 1
        else:
            raise UnsupportedModule(f"import kind {kind}")
    _done(payload, p, "import")
    return globals_, mems


def _count_vec(payload: bytes) -> int:
    return read_uleb(payload, 0)[0] if payload else 0


def _skip_const_expr(buf: bytes, p: int) -> int:
    while True:
        op = buf[p]
        p += 1
        if op == 0x0B:
            return p
        if op in (0x41, 0x42, 0x23, 0xD2, 0xD0):
            p = _skip_leb(buf, p)
        elif op == 0x43:
            p += 4
        elif op == 0x44:
            p += 8
        elif op in (0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E):
            pass
        elif op == 0xFD and buf[p] == 0x0C:
            p += 17
        else:
            raise UnsupportedModule(f"constant expression op 0x{op:02x}")


# ---------------------------------------------------------------- function bodies

# Operator classes of the one-byte opcode space: the main loop dispatches on these.
(
    _K_BAD,
    _K_PLAIN,
    _K_FREE,
    _K_IDX,
    _K_MEM,
    _K_MEMIDX,
    _K_F32,
    _K_F64,
    _K_CTRL,
    _K_PREFIX,
    _K_SELT,
    _K_HEAP,
) = range(12)


def _kinds() -> list[int]:
    kind = [_K_BAD] * 256
    for op in range(0x45, 0xC5):
        kind[op] = _K_PLAIN
    for op in (0x1B, 0xD1, 0xD3):
        kind[op] = _K_PLAIN
    for op in (0x01, 0x1A):  # nop, drop: cost 0
        kind[op] = _K_FREE
    for op in (0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x41, 0x42, 0xD2):
        kind[op] = _K_IDX  # one LEB immediate, skipped
    for op in range(0x28, 0x3F):
        kind[op] = _K_MEM
    kind[0x3F] = kind[0x40] = _K_MEMIDX
    kind[0x43] = _K_F32
    kind[0x44] = _K_F64
    kind[0x1C] = _K_SELT
    kind[0xD0] = _K_HEAP
    for op in (0x00, 0x02, 0x03, 0x04, 0x05, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F):
        kind[op] = _K_CTRL
    for op in (0x10, 0x11, 0x12, 0x13, 0x14, 0x15):
        kind[op] = _K_CTRL
    for op in (0xFC, 0xFD, 0xFE):
        kind[op] = _K_PREFIX
    return kind


_KIND = _kinds()
_SIMD_MEM = frozenset(range(0, 12)) | {92, 93}
_SIMD_LANE = frozenset(range(21, 35))
_SIMD_MEMLANE = frozenset(range(84, 92))
_SIMD_LAST = 0x113  # the last relaxed-SIMD opcode
_ATOMIC_LAST = 0x4E
# 0xFC bulk ops whose wasmtime 50 fuel is 1 + the i32 on top of the stack:
# memory.init/copy/fill, table.init/copy/fill
_DYN_FC = frozenset({8, 10, 11, 12, 14, 17})
_TABLE_GROW = 15  # like memory.grow: 1 + the delta, but only if the grow succeeded
_STATIC_GROW_MAX = 128  # memory.grow by a constant up to this: charged even if it fails


def _skip_blocktype(code: bytes, p: int) -> int:
    b = code[p]
    if b == 0x40 or b in _VALTYPE_BYTES:
        return p + 1
    if b in (0x63, 0x64):
        return _skip_leb(code, p + 1)
    return _skip_leb(code, p)  # s33 type index


class _Module(NamedTuple):
    """What every function body's instrumentation needs from the module."""

    g_fuel: bytes  # LEB of the fuel global's index
    g_trap: bytes
    page: int  # memory index of the interrupt page (after every guest memory)


class _Snippets(NamedTuple):
    """Instruction bytes emitted into one function body."""

    save: bytes  # local -> global
    load: bytes  # global -> local
    check: bytes  # if fuel < floor: slow path
    dyn: bytes  # charge the i32 on top of the stack (bulk ops), then check
    subpre: bytes  # subpre + sleb(k) + subpost: fuel -= k
    subpost: bytes
    grow_pre: bytes  # before memory/table.grow: keep the delta
    grow_post: bytes  # after: charge the delta if the grow did not fail (-1)


def _snippets(nlocals: int, mod: _Module) -> _Snippets:
    f = write_uleb(nlocals)
    tmp = write_uleb(nlocals + 1)
    save = b"\x20" + f + b"\x24" + mod.g_fuel
    load = b"\x23" + mod.g_fuel + b"\x21" + f
    cold = save + b"\x41\x01\x24" + mod.g_trap + b"\x00"  # i32.const 1; global.set; unreachable
    page = write_uleb(mod.page)
    # local.get f; i32.const 0; i64.atomic.load (memidx page) 0; i64.lt_s; if ... end
    # (<, not <=: a check right after the last charge must let an exact budget finish)
    check = b"".join(
        [b"\x20", f, b"\x41\x00\xfe\x11\x43", page, b"\x00\x53\x04\x40", cold, b"\x0b"]
    )
    # local.set tmp; local.get f; local.get tmp; i64.extend_i32_u; i64.sub; local.set f;
    # check; local.get tmp
    dyn = b"".join(
        [b"\x21", tmp, b"\x20", f, b"\x20", tmp, b"\xad\x7d\x21", f, check, b"\x20", tmp]
    )
    # local.tee tmp2; i32.const -1; i32.ne; if; local.get f; local.get tmp; i64.extend_i32_u;
    # i64.sub; local.set f; end; local.get tmp2  (a failed grow must not cost its delta:
    # malloc's probe with a huge size would run out of fuel instead of getting NULL)
    tmp2 = write_uleb(nlocals + 2)
    grow_post = b"".join(
        [b"\x22", tmp2, b"\x41\x7f\x47\x04\x40\x20", f, b"\x20", tmp, b"\xad\x7d\x21", f,
         b"\x0b\x20", tmp2]
    )
    return _Snippets(
        save, load, check, dyn, b"\x20" + f + b"\x42", b"\x7d\x21" + f, b"\x22" + tmp, grow_post
    )


def _static_grow(small_grow: tuple[int, int], p: int) -> bool:
    """Whether the grow at ``p`` has a constant delta wasmtime charges even if it fails."""
    end, delta = small_grow
    return end == p and 0 <= delta <= _STATIC_GROW_MAX


def _skip_memarg(code: bytes, q: int) -> int:
    """Past the memarg at ``q``: alignment (bit 6: a memory index follows), offset."""
    a, q = read_uleb(code, q)
    if a & 0x40:
        q = _skip_leb(code, q)
    return _skip_leb(code, q)


def _instrument_body(code: bytes, nparams: int, mod: _Module) -> bytes:
    """One function body. ``out`` collects unchanged slices of ``code`` (from ``last``) and
    inserted snippets; a segment's charge goes into a placeholder at its start, filled in
    once its end (the next flush point) is reached."""
    n, p = read_uleb(code, 0)
    locals_start = p
    nlocals = nparams
    for _ in range(n):
        c, p = read_uleb(code, p)
        nlocals += c
        p = _skip_valtype(code, p)
    decl_end = p
    save, load, check, dyn, subpre, subpost, grow_pre, grow_post = _snippets(nlocals, mod)
    sleb = write_sleb
    uleb = write_uleb
    skip_leb = _skip_leb

    # new locals: fuel i64, two i32 temporaries; at entry: load the fuel, check it
    out = [uleb(n + 2), code[locals_start:decl_end], b"\x01\x7e\x02\x7f", load, check]
    live = True  # a segment is open (not in dead code after br / return / unreachable)
    acc = 1  # wasmtime 50 charges 1 per function invocation
    last = decl_end
    dead = False
    small_grow = (-1, 0)  # (end, value) of an i32.const right before a memory.grow
    frames = [False]  # per open frame: opened in dead code
    # Deferred charges. A block's first segment, when it ends with a branch to that block,
    # is charged where the block ends (on the path out of it) instead, if nothing in the
    # block escapes past its end: every pass through the segment then reaches that end
    # exactly once. Saves Cranelift keeping `fuel - k` live on both sides of the branch.
    kinds = [0]  # per open frame: 0 function, 1 block, 2 loop, 3 if
    opened = [0]  # per open frame: the flush count when it opened
    flushes = 0
    pending: dict[int, tuple[int, int]] = {}  # frame -> (index in out, deferred charge)
    active: list[int] = []  # frames with a pending charge no escape has hit, ascending
    escaped: set[int] = set()
    end = len(code)
    kind = _KIND

    while True:
        op = code[p]
        k = kind[op]
        if k == _K_PLAIN:
            p += 1
            acc += 1
            continue
        if k == _K_IDX:
            at = p
            p += 2
            if code[p - 1] & 0x80:
                p = skip_leb(code, p)
            if op == 0x41 and (code[p : p + 1] == b"\x40" or code[p : p + 2] == b"\xfc\x0f"):
                small_grow = (p, read_sleb(code, at + 1)[0])  # i32.const c; memory/table.grow
            acc += 1
            continue
        if k == _K_MEM:
            acc += 1
            p = _skip_memarg(code, p + 1)
            continue
        if k == _K_FREE:
            p += 1
            continue
        if k == _K_CTRL:
            # every control op but `block` ends the current segment (fill in its charge)
            seg_flushes = flushes
            if op != 0x02:
                flushes += 1
            if op == 0x0B:  # end
                if live:
                    if acc:
                        out.append(code[last:p])
                        out.append(subpre + sleb(acc) + subpost)
                        last = p
                    live = False
                was_dead_frame = frames.pop()
                here = len(frames)
                kinds.pop()
                opened.pop()
                carry = 0
                if here in pending:
                    at, amount = pending.pop(here)
                    if here in escaped:
                        escaped.discard(here)
                        out[at] = subpre + sleb(amount) + subpost
                    else:
                        active.pop()  # it is the innermost one: frames nest
                        carry = amount
                if not frames:  # the function's end
                    if not dead:
                        out.append(code[last:p])
                        out.append(save)
                        last = p
                    p += 1
                    break
                p += 1
                dead = was_dead_frame
                if not dead:
                    out.append(code[last:p])
                    last = p
                    live = True
                acc = carry
                continue
            if op == 0x0D or op == 0x0C:  # br_if / br
                lbl, q = read_uleb(code, p + 1)
                target = len(frames) - 1 - lbl
                while active and active[-1] > target:
                    escaped.add(active.pop())
                if not dead:
                    acc += 1
                    out.append(code[last:p])
                    if kinds[target] == 1 and opened[target] == seg_flushes:
                        pending[target] = (len(out), acc)  # charged at its end (above)
                        active.append(target)
                        out.append(b"")
                    else:
                        out.append(subpre + sleb(acc) + subpost)
                    last = p
                    if lbl == len(frames) - 1:  # to the function's label: an exit
                        out.append(save)
                    if op == 0x0C:
                        dead = True
                        live = False
                    else:
                        out.append(code[last:q])
                        last = q
                        live = True
                acc = 0
                p = q
                continue
            if op == 0x03:  # loop
                q = _skip_blocktype(code, p + 1)
                kinds.append(2)
                opened.append(flushes)
                if dead:
                    frames.append(True)
                else:
                    if acc:
                        out.append(code[last:p])
                        out.append(subpre + sleb(acc) + subpost)
                        last = p
                    out.append(code[last:q])
                    live = True
                    out.append(check)
                    last = q
                    frames.append(False)
                acc = 0
                p = q
                continue
            if op == 0x02:  # block: not a segment end
                frames.append(dead)
                kinds.append(1)
                opened.append(flushes)
                p = _skip_blocktype(code, p + 1)
                continue
            if op == 0x04:  # if
                q = _skip_blocktype(code, p + 1)
                if not dead:
                    acc += 1
                    out.append(code[last:p])
                    out.append(subpre + sleb(acc) + subpost)
                    last = p
                    out.append(code[last:q])
                    last = q
                    live = True
                frames.append(dead)
                kinds.append(3)
                opened.append(flushes)
                acc = 0
                p = q
                continue
            if op == 0x05:  # else
                if len(frames) < 2:
                    raise UnsupportedModule("else outside if")
                if live and acc:
                    out.append(code[last:p])
                    out.append(subpre + sleb(acc) + subpost)
                    last = p
                p += 1
                dead = frames[-1]
                if dead:
                    live = False
                else:
                    out.append(code[last:p])
                    last = p
                    live = True
                acc = 0
                continue
            if op == 0x10 or op == 0x11 or op == 0x14:  # call, call_indirect, call_ref
                q = skip_leb(code, p + 1)
                if op == 0x11:
                    q = skip_leb(code, q)
                if not dead:
                    acc += 1
                    out.append(code[last:p])
                    out.append(subpre + sleb(acc) + subpost)
                    last = p
                    out.append(save)
                    out.append(code[p:q])
                    out.append(load)
                    out.append(check)  # a chain of returns is checked at every frame
                    last = q
                    live = True
                acc = 0
                p = q
                continue
            if op == 0x0E:  # br_table
                cnt, q = read_uleb(code, p + 1)
                hit_fn = False
                depth_fn = len(frames) - 1
                lowest = len(frames)
                for _ in range(cnt + 1):
                    lbl, q = read_uleb(code, q)
                    if lbl == depth_fn:
                        hit_fn = True
                    lowest = min(lowest, len(frames) - 1 - lbl)
                while active and active[-1] > lowest:
                    escaped.add(active.pop())
                if not dead:
                    acc += 1
                    out.append(code[last:p])
                    out.append(subpre + sleb(acc) + subpost)
                    last = p
                    if hit_fn:
                        out.append(save)
                    dead = True
                    live = False
                acc = 0
                p = q
                continue
            # the frame is left here: return, unreachable (both cost 0), return_call,
            # return_call_indirect, return_call_ref (1)
            escaped.update(active)
            active.clear()
            if op == 0x0F or op == 0x00:
                q = p + 1
            else:
                acc += 1
                q = skip_leb(code, p + 1)
                if op == 0x13:
                    q = skip_leb(code, q)
            if not dead:
                out.append(code[last:p])
                if acc:
                    out.append(subpre + sleb(acc) + subpost)
                out.append(save)
                last = p
                dead = True
                live = False
            acc = 0
            p = q
            continue
        if k == _K_MEMIDX:  # memory.size / memory.grow
            acc += 1
            grow = op == 0x40 and not dead  # + delta pages if it succeeds
            if grow and _static_grow(small_grow, p):
                acc += small_grow[1]  # wasmtime 50 charges a small constant delta, always
                grow = False
            if grow:
                out.append(code[last:p])
                out.append(grow_pre)
                last = p
            q = skip_leb(code, p + 1)  # the memory index
            if grow:
                out.append(code[last:q])
                out.append(grow_post)
                last = q
            p = q
            continue
        if k == _K_PREFIX:
            sub, q = read_uleb(code, p + 1)
            acc += 1
            table_grow = False
            if op == 0xFC:
                if sub in _DYN_FC and not dead:
                    out.append(code[last:p])
                    out.append(dyn)
                    last = p
                table_grow = sub == _TABLE_GROW and not dead
                if table_grow and _static_grow(small_grow, p):
                    acc += small_grow[1]
                    table_grow = False
                if table_grow:
                    out.append(code[last:p])
                    out.append(grow_pre)
                    last = p
                if sub <= 7:  # saturating truncations
                    pass
                elif sub in (8, 9, 11, 13, 15, 16, 17):  # memory.init/fill, data.drop, ...
                    q = skip_leb(code, q)
                    if sub == 8:  # memory.init: data index, then memory index
                        q = skip_leb(code, q)
                elif sub in (10, 12, 14):  # memory.copy, table.init, table.copy
                    q = skip_leb(code, skip_leb(code, q))
                else:
                    raise UnsupportedModule(f"opcode 0xfc {sub}")
            elif op == 0xFD:
                if sub in _SIMD_MEM or sub in _SIMD_MEMLANE:
                    q = _skip_memarg(code, q)
                    if sub in _SIMD_MEMLANE:
                        q += 1
                elif sub == 12 or sub == 13:  # v128.const, i8x16.shuffle
                    q += 16
                elif sub in _SIMD_LANE:
                    q += 1
                elif sub > _SIMD_LAST:
                    raise UnsupportedModule(f"opcode 0xfd {sub}")
            else:  # 0xFE atomics
                if sub == 3:  # atomic.fence
                    q += 1
                elif sub > _ATOMIC_LAST:
                    raise UnsupportedModule(f"opcode 0xfe {sub}")
                else:
                    q = _skip_memarg(code, q)
            if op == 0xFC and table_grow:
                out.append(code[last:q])
                out.append(grow_post)
                last = q
            p = q
            continue
        if k == _K_F32:
            p += 5
            acc += 1
            continue
        if k == _K_F64:
            p += 9
            acc += 1
            continue
        if k == _K_SELT:
            cnt, p = read_uleb(code, p + 1)
            for _ in range(cnt):
                p = _skip_valtype(code, p)
            acc += 1
            continue
        if k == _K_HEAP:
            p = skip_leb(code, p + 1)
            acc += 1
            continue
        raise UnsupportedModule(f"opcode 0x{op:02x}")
    if p != end:
        raise UnsupportedModule("bytes after a function's end")
    out.append(code[last:])
    return b"".join(out)


# ---------------------------------------------------------------- whole module


def _sections(wasm: bytes) -> list[tuple[int, bytes]]:
    secs = split_sections(wasm)
    if secs is None:
        raise UnsupportedModule("not a core wasm module (version 1)")
    # split_sections slices a truncated last section short without saying so
    p = len(CORE_HEADER)
    for _sid, payload in secs:
        size, p = read_uleb(wasm, p + 1)
        if len(payload) != size:
            raise UnsupportedModule("truncated section")
        p += size
    return secs


def _instrument(wasm: bytes) -> bytes:
    secs = _sections(wasm)
    by_id: dict[int, bytes] = {}
    for sid, payload in secs:
        if sid == 0:
            continue
        if sid not in _SECTION_ORDER:
            raise UnsupportedModule(f"unknown section {sid}")
        if sid in by_id:
            raise UnsupportedModule(f"duplicate section {sid}")
        by_id[sid] = payload
    if 13 in by_id:
        raise UnsupportedModule("exception handling (tag section)")
    type_params = _parse_types(by_id[1]) if 1 in by_id else []
    imp_globals, imp_mems = _parse_imports(by_id[2]) if 2 in by_id else (0, 0)
    func_types = []
    if 3 in by_id:
        n, p = read_uleb(by_id[3], 0)
        for _ in range(n):
            t, p = read_uleb(by_id[3], p)
            func_types.append(t)
        _done(by_id[3], p, "function")
    g_fuel = imp_globals + _count_vec(by_id.get(6, b""))
    g_trap = g_fuel + 1
    new: dict[int, bytes] = {}

    # globals: fuel i64, trap flag i32 (both mutable, after every guest global)
    old = by_id.get(6, b"\x00")
    n, p = read_uleb(old, 0)
    new[6] = write_uleb(n + 2) + old[p:] + _NEW_GLOBALS

    # the page: one more memory, exactly one page, after every guest memory (the guest's
    # original was validated without multi-memory, so none of its code can name it)
    page = imp_mems + _count_vec(by_id.get(5, b""))
    old = by_id.get(5, b"\x00")
    n, p = read_uleb(old, 0)
    new[5] = write_uleb(n + 1) + old[p:] + _PAGE_LIMITS

    # exports: reserved names refused, ours appended
    old = by_id.get(7, b"\x00")
    n, q = read_uleb(old, 0)
    entries = []
    for _ in range(n):
        ln, q2 = read_uleb(old, q)
        q3 = _take(old, q2, ln)
        if old[q2:q3].decode().startswith(_RESERVED):
            raise UnsupportedModule(f"reserved export name {old[q2:q3].decode()!r}")
        q4 = _skip_leb(old, q3 + 1)  # kind, index
        entries.append(old[q:q4])
        q = q4
    _done(old, q, "export")
    entries += [
        write_name(FUEL_GLOBAL) + b"\x03" + write_uleb(g_fuel),
        write_name(TRAP_GLOBAL) + b"\x03" + write_uleb(g_trap),
        write_name(INTERRUPT_EXPORT) + b"\x02" + write_uleb(page),
    ]
    if 8 in by_id:  # the host calls the start function itself, after setting the fuel
        start_idx, p = read_uleb(by_id[8], 0)
        _done(by_id[8], p, "start")
        entries.append(write_name(START_EXPORT) + b"\x00" + write_uleb(start_idx))
    new[7] = write_uleb(len(entries)) + b"".join(entries)

    mod = _Module(write_uleb(g_fuel), write_uleb(g_trap), page)
    old = by_id.get(10, b"\x00")
    n, p = read_uleb(old, 0)
    if n != len(func_types):
        raise UnsupportedModule("function and code section counts differ")
    bodies = []
    for i in range(n):
        size, p = read_uleb(old, p)
        q = _take(old, p, size)
        body = _instrument_body(old[p:q], type_params[func_types[i]], mod)
        bodies.append(write_uleb(len(body)) + body)
        p = q
    _done(old, p, "code")
    new[10] = write_uleb(n) + b"".join(bodies)

    # reassemble in canonical order, custom sections kept where they were; no start section
    out = [wasm[:8]]
    present = [sid for sid, _ in secs if sid != 0]
    wanted = (set(present) | set(new)) - {8}
    emitted: set[int] = set()

    def emit(sid: int) -> None:
        payload = new[sid] if sid in new else by_id[sid]
        out.append(bytes([sid]) + write_uleb(len(payload)) + payload)
        emitted.add(sid)

    for sid, payload in secs:
        if sid == 0:
            out.append(b"\x00" + write_uleb(len(payload)) + payload)
            continue
        for s in _SECTION_ORDER:  # new sections that must precede this one
            if s == sid:
                break
            if s in wanted and s not in emitted and s not in present:
                emit(s)
        if sid in wanted:
            emit(sid)
    for s in _SECTION_ORDER:
        if s in wanted and s not in emitted:
            emit(s)
    return b"".join(out)


def instrument(wasm: bytes) -> bytes:
    """``wasm`` with fuel accounting and the interrupt check added (see the module doc).

    The input must already have passed ``wasmtime.Module.validate`` on an engine without
    threads or multi-memory; the output needs both (atomics, a second memory).
    """
    try:
        return _instrument(wasm)
    except UnsupportedModule:
        raise
    except (IndexError, KeyError, ValueError, OverflowError) as e:  # ValueError: bad UTF-8
        raise UnsupportedModule(f"malformed module: {e}") from e
