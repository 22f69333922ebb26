"""Prototype: deterministic fuel (and a cross-thread interrupt) as wasm instrumentation.

Pure-Python rewriter of a core wasm module. Slow paths are inline `unreachable`, never a
call, so Cranelift has no clobbering call on the hot path.

Modes (rewrite(wasm, mode, exact=True))
  fuel       : fuel only. New exported mutable i64 global (remaining fuel), a per-function
               i64 local cache; checks at function entry and loop headers: `if fuel < 0: trap`.
  floorconst : RECOMMENDED. fuel + interrupt in ONE compare: `if fuel < floor: trap`, floor =
               i64.atomic.load at address 0 of an imported 1-page SharedMemory
               ("__warden" "interrupt", memory index 0; the guest's memories are renumbered
               +1). Host keeps one page (and one InstancePre) per concurrent run slot; the
               timer thread writes INT64_MAX to interrupt, the run resets it to 0.
  floor      : as floorconst but one page per engine, slot address in an exported i32
               global (__warden_slot): one InstancePre, but 4-5 more instructions per check.
  floormem / floorplain : module-defined private page (exported __warden_interrupt), atomic /
               plain load. Host writes through Memory.data_ptr from another thread (a data
               race outside wasmtime's model; use-after-free if the store is gone). plain is
               UNSAFE: Cranelift hoists the load out of store-free loops (never interrupted).
  sep        : fuel check + a separate i32 interrupt-word check (comparison only).
  slice      : interrupt word read only when fuel crosses a 64Ki boundary (comparison only:
               one more live register, spills in the sieve's outer loop).
  fuelrenum  : fuel only, but with the interrupt page imported and the memories renumbered as
               in floorconst (comparison only: isolates the cost of the renumbering).
  exact=False: loop-level upper bound (one charge per function entry / loop iteration of all
               the region's operators): cheapest, but over-charges (sieve 1.2x, CPython 20x).

Fuel accounting (exact=True) reproduces wasmtime 50's count: cost 0 for nop, drop, block,
loop, unreachable, return, else, end; 1 for every other operator; +1 per function
invocation; bulk ops (memory.fill/copy/init, table.fill/copy/init, memory/table.grow) also
cost their length/delta operand. Segments end where wasmtime flushes (loop, if, br, br_if,
br_table, end, else, calls, return, unreachable); each segment's cost is charged at its
START (so a loop header is `fuel -= k; if fuel < floor: trap` with no extra copies). The
local is stored to the global before calls/exits and reloaded after calls. Slow path =
store fuel, set __warden_trap (1 fuel/floor, 2 separate interrupt word), `unreachable`.

Reserved names: exports starting with "__warden" and the import module "__warden" are
refused in input modules (a guest importing the interrupt memory could write the floor).
The input is assumed VALID (validate it first, without threads / multi-memory, as the
bench does); what the rewriter knows it does not handle (GC types, exception handling,
unknown opcodes, reserved names) raises UnsupportedError.

Prototype: not used by the service. See README.md beside this file for figures, design and
risks. Command line: python rewriter.py IN.wasm OUT.wasm [MODE]  (MODE defaults to floor).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import NamedTuple

RESERVED = "__warden"
EXP_FUEL = "__warden_fuel"
EXP_SLOT = "__warden_slot"
EXP_TRAP = "__warden_trap"     # 1: fuel exhausted (cold path), 2: interrupt (sep mode)
EXP_START = "__warden_start"
EXP_INT = "__warden_interrupt"   # private-page modes: the page, for the host
SLICE = 1 << 16    # slice mode: the interrupt word is read once per SLICE fuel units
IMP_MODULE = "__warden"
IMP_MEMORY = "interrupt"

# ---------------------------------------------------------------- LEB128 helpers


def uleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def sleb(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if (v == 0 and not b & 0x40) or (v == -1 and b & 0x40):
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def read_uleb(buf: bytes, p: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[p]
        p += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, p
        shift += 7


def skip_leb(buf: bytes, p: int) -> int:
    while buf[p] & 0x80:
        p += 1
    return p + 1


def name(s: str) -> bytes:
    b = s.encode()
    return uleb(len(b)) + b


def vec(items: list[bytes]) -> bytes:
    return uleb(len(items)) + b"".join(items)


class UnsupportedError(Exception):
    """The module uses something the rewriter does not handle, or a reserved name."""


# ---------------------------------------------------------------- module-level parsing

SECTION_ORDER = [1, 2, 3, 4, 5, 13, 6, 7, 8, 9, 12, 10, 11]
VALTYPE_BYTES = {0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F}


def split_sections(wasm: bytes) -> list[tuple[int, bytes]]:
    if wasm[:8] != b"\0asm\x01\0\0\0":
        raise UnsupportedError("not a core wasm module (version 1)")
    p, out = 8, []
    while p < len(wasm):
        sid = wasm[p]
        size, p = read_uleb(wasm, p + 1)
        out.append((sid, wasm[p:p + size]))
        p += size
    return out


def skip_valtype(buf: bytes, p: int) -> int:
    b = buf[p]
    if b in VALTYPE_BYTES:
        return p + 1
    if b in (0x63, 0x64):          # (ref null? ht)
        return skip_leb(buf, p + 1)
    raise UnsupportedError(f"value type 0x{b:02x}")


def parse_types(payload: bytes) -> list[int]:
    """Parameter counts of each function type."""
    n, p = read_uleb(payload, 0)
    params = []
    for _ in range(n):
        if payload[p] != 0x60:
            raise UnsupportedError("GC / rec-group types")
        p += 1
        np_, p = read_uleb(payload, p)
        for _ in range(np_):
            p = skip_valtype(payload, p)
        nr, p = read_uleb(payload, p)
        for _ in range(nr):
            p = skip_valtype(payload, p)
        params.append(np_)
    return params


def skip_limits(buf: bytes, p: int) -> int:
    flags = buf[p]
    p = skip_leb(buf, p + 1)
    if flags & 1:
        p = skip_leb(buf, p)
    return p


def parse_imports(payload: bytes) -> tuple[int, list[int], int, int]:
    """(import count, type index of each imported function, imported globals, memories)."""
    n, p = read_uleb(payload, 0)
    funcs: list[int] = []
    globals_ = mems = 0
    for _ in range(n):
        ln, p = read_uleb(payload, p)
        mod = payload[p:p + ln].decode()
        p += ln
        ln, p = read_uleb(payload, p)
        p += ln
        if mod == IMP_MODULE:
            raise UnsupportedError(f"module imports from reserved module {IMP_MODULE!r}")
        kind = payload[p]
        p += 1
        if kind == 0:
            t, p = read_uleb(payload, p)
            funcs.append(t)
        elif kind == 1:
            p = skip_valtype(payload, p)
            p = skip_limits(payload, p)
        elif kind == 2:
            p = skip_limits(payload, p)
            mems += 1
        elif kind == 3:
            p = skip_valtype(payload, p)
            p += 1
            globals_ += 1
        else:
            raise UnsupportedError(f"import kind {kind}")
    return n, funcs, globals_, mems


def count_vec(payload: bytes) -> int:
    return read_uleb(payload, 0)[0] if payload else 0


def skip_const_expr(buf: bytes, p: int) -> int:
    while True:
        op = buf[p]
        p += 1
        if op == 0x0B:
            return p
        if op in (0x41, 0x42, 0x23, 0xD2):
            p = skip_leb(buf, p)
        elif op == 0x43:
            p += 4
        elif op == 0x44:
            p += 8
        elif op == 0xD0:
            p = skip_leb(buf, p)
        elif op in (0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E):
            pass
        elif op == 0xFD and buf[p] == 0x0C:
            p += 17
        else:
            raise UnsupportedError(f"const expr op 0x{op:02x}")


# ---------------------------------------------------------------- function bodies

# op kinds for the one-byte opcode space
(K_BAD, K_PLAIN, K_FREE, K_IDX, K_MEM, K_MEMIDX, K_F32, K_F64, K_CTRL, K_PREFIX, K_SELT,
 K_HEAP) = range(12)
KIND = [K_BAD] * 256
for _op in range(0x45, 0xC5):
    KIND[_op] = K_PLAIN
for _op in (0x1B, 0xD1, 0xD3):
    KIND[_op] = K_PLAIN
for _op in (0x01, 0x1A):
    KIND[_op] = K_FREE
for _op in (0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x41, 0x42, 0xD2):
    KIND[_op] = K_IDX           # one LEB immediate (s/u, we only skip it)
for _op in range(0x28, 0x3F):
    KIND[_op] = K_MEM
KIND[0x3F] = KIND[0x40] = K_MEMIDX
KIND[0x43] = K_F32
KIND[0x44] = K_F64
KIND[0x1C] = K_SELT
KIND[0xD0] = K_HEAP
for _op in (0x00, 0x02, 0x03, 0x04, 0x05, 0x0B, 0x0C, 0x0D, 0x0E, 0x0F,
            0x10, 0x11, 0x12, 0x13, 0x14, 0x15):
    KIND[_op] = K_CTRL
for _op in (0xFC, 0xFD, 0xFE):
    KIND[_op] = K_PREFIX

SIMD_MEM = set(range(0, 12)) | {92, 93}
SIMD_LANE = set(range(21, 35))
SIMD_MEMLANE = set(range(84, 92))


def skip_blocktype(code: bytes, p: int) -> int:
    b = code[p]
    if b == 0x40 or b in VALTYPE_BYTES:
        return p + 1
    if b in (0x63, 0x64):
        return skip_leb(code, p + 1)
    return skip_leb(code, p)      # s33 type index


class Ctx:
    """Per-module constants for emission."""

    def __init__(self, mode: str, g_fuel: int, g_slot: int, g_trap: int, mem_int: int,
                 mem_shift_from: int | None):
        self.mode = mode
        self.g_fuel = uleb(g_fuel)
        self.g_slot = uleb(g_slot)
        self.g_trap = uleb(g_trap)
        self.mem_int = uleb(mem_int)
        self.shift = mem_shift_from   # original memidx >= this -> +1 (None: no renumbering)


# bulk ops whose fuel in wasmtime 50 is 1 + (top-of-stack i32 operand): fill/copy/init, grow
DYN_FC = {8, 10, 11, 12, 14, 15, 17}     # memory.init/copy/fill, table.init/copy/grow/fill


class Snippets(NamedTuple):
    """Instruction byte strings emitted into one function body."""

    f: bytes        # the fuel local's index (LEB)
    save: bytes     # local -> global
    load: bytes     # global -> local (slice mode: also recomputes the slice bound)
    check: bytes    # `if fuel < floor: slow path`
    dyn: bytes      # charge the i32 on top of the stack (bulk ops), then check
    subpre: bytes   # subpre + sleb(k) + subpost: fuel -= k
    subpost: bytes


def snippets(nlocals: int, cx: Ctx) -> Snippets:
    """Byte snippets for one function: fuel local f = nlocals, i32 temp, i64 slice bound."""
    f = uleb(nlocals)
    tmp = uleb(nlocals + 1)
    g = cx.g_fuel
    save = b"\x20" + f + b"\x24" + g
    load = b"\x23" + g + b"\x21" + f
    cold = save + b"\x41\x01\x24" + cx.g_trap + b"\x00"
    if cx.mode in ("fuel", "fuelrenum"):
        check = b"\x20" + f + b"\x42\x00\x53\x04\x40" + cold + b"\x0b"
    elif cx.mode in ("floor", "floorconst", "floormem", "floorplain"):
        if cx.mode == "floor":      # imported shared page, slot address from a global
            addr, int_load = b"\x23" + cx.g_slot, b"\xfe\x11\x43" + cx.mem_int + b"\x00"
        elif cx.mode in ("floorconst", "floormem"):
            # floorconst: imported shared page per run slot, address 0;
            # floormem: private page, constant address; both an i64.atomic.load
            addr, int_load = b"\x41\x00", b"\xfe\x11\x43" + cx.mem_int + b"\x00"
        else:                        # private page, constant address, plain load
            addr, int_load = b"\x41\x00", b"\x29\x43" + cx.mem_int + b"\x00"
        check = (b"\x20" + f + addr + int_load + b"\x53\x04\x40" + cold + b"\x0b")
    elif cx.mode == "sep":
        check = (b"\x20" + f + b"\x42\x00\x53\x04\x40" + cold + b"\x0b"
                 + b"\x23" + cx.g_slot + b"\xfe\x10\x42" + cx.mem_int + b"\x00"
                 + b"\x04\x40" + save + b"\x41\x02\x24" + cx.g_trap + b"\x00\x0b")
    elif cx.mode == "slice":
        b = uleb(nlocals + 2)
        negk = sleb(-SLICE)
        load = b"\x23" + g + b"\x22" + f + b"\x42" + negk + b"\x83\x21" + b
        cold = (b"\x23" + cx.g_slot + b"\xfe\x10\x42" + cx.mem_int + b"\x00"
                + b"\x04\x40" + save + b"\x41\x02\x24" + cx.g_trap + b"\x00\x0b"
                + b"\x20" + f + b"\x42\x00\x53\x04\x40" + cold + b"\x0b"
                + b"\x20" + f + b"\x42" + negk + b"\x83\x21" + b)
        check = b"\x20" + f + b"\x20" + b + b"\x53\x04\x40" + cold + b"\x0b"
    else:
        raise ValueError(cx.mode)
    # dynamic charge for bulk ops: stack [..., n:i32] -> same, fuel -= n, checked
    dyn = (b"\x21" + tmp + b"\x20" + f + b"\x20" + tmp + b"\xad\x7d\x21" + f + check
           + b"\x20" + tmp)
    subpre = b"\x20" + f + b"\x42"
    subpost = b"\x7d\x21" + f
    return Snippets(f, save, load, check, dyn, subpre, subpost)


def instrument_body(body: bytes, nparams: int, cx: Ctx) -> bytes:
    """Charge each straight-line segment's static cost at the segment's START (so the loop
    header does `fuel -= k; if fuel < floor: trap` and the back edge carries the result:
    no extra copy); check at function entry and loop headers."""
    code = body
    n, p = read_uleb(code, 0)
    nlocals = nparams
    for _ in range(n):
        c, p = read_uleb(code, p)
        nlocals += c
        p = skip_valtype(code, p)
    decl_end = p
    _f, save, load, check, dyn, subpre, subpost = snippets(nlocals, cx)
    renum = cx.shift is not None
    shift = -1 if cx.shift is None else cx.shift   # only read when renum

    out = [uleb(n + 3), code[uleb_len(code):decl_end], b"\x01\x7e\x01\x7f\x01\x7e", load, b"",
           check]
    seg = 4            # index in `out` of the current segment's charge placeholder, or -1
    acc = 1            # wasmtime 50 charges 1 per function invocation
    last = decl_end
    dead = False
    frames = [False]   # per open frame: opened in dead code
    end = len(code)
    kind = KIND

    def memidx_fix(p: int) -> tuple[bytes, int]:
        m, q = read_uleb(code, p)
        return uleb(m + 1 if m >= shift else m), q

    while p < end:
        op = code[p]
        k = kind[op]
        if k == K_PLAIN:
            p += 1
            acc += 1
            continue
        if k == K_IDX:
            p += 2
            if code[p - 1] & 0x80:
                p = skip_leb(code, p)
            acc += 1
            continue
        if k == K_MEM:
            acc += 1
            if renum:
                a, q = read_uleb(code, p + 1)
                if a & 0x40:
                    m, q2 = read_uleb(code, q)
                    if m >= shift:
                        out.append(code[last:p + 1])
                        out.append(uleb(a) + uleb(m + 1))
                        last = q2
                    p = skip_leb(code, q2)
                else:
                    if shift == 0:
                        out.append(code[last:p + 1])
                        out.append(uleb(a | 0x40) + b"\x01")
                        last = q
                    p = skip_leb(code, q)
            else:
                p = skip_leb(code, skip_leb(code, p + 1))
            continue
        if k == K_FREE:
            p += 1
            continue
        if k == K_CTRL:
            # every control op ends the current segment (fill in its charge)
            if op == 0x0B:                               # end
                if seg >= 0:
                    if acc:
                        out[seg] = subpre + sleb(acc) + subpost
                    seg = -1
                was_dead_frame = frames.pop()
                if not frames:
                    if not dead:                         # function end: save
                        out.append(code[last:p])
                        out.append(save)
                        last = p
                    p += 1
                    continue
                p += 1
                dead = was_dead_frame
                if not dead:
                    out.append(code[last:p])
                    last = p
                    seg = len(out)
                    out.append(b"")
                acc = 0
                continue
            if op == 0x0D or op == 0x0C:                 # br_if / br
                lbl, q = read_uleb(code, p + 1)
                if not dead:
                    acc += 1
                    if acc:
                        out[seg] = subpre + sleb(acc) + subpost
                    if lbl == len(frames) - 1:
                        out.append(code[last:p])
                        out.append(save)
                        last = p
                    if op == 0x0C:
                        dead = True
                        seg = -1
                    else:
                        out.append(code[last:q])
                        last = q
                        seg = len(out)
                        out.append(b"")
                acc = 0
                p = q
                continue
            if op == 0x03:                               # loop
                q = skip_blocktype(code, p + 1)
                if dead:
                    frames.append(True)
                else:
                    if acc:
                        out[seg] = subpre + sleb(acc) + subpost
                    out.append(code[last:q])
                    seg = len(out)
                    out.append(b"")
                    out.append(check)
                    last = q
                    frames.append(False)
                acc = 0
                p = q
                continue
            if op == 0x02:                               # block (not a segment end)
                frames.append(dead)
                p = skip_blocktype(code, p + 1)
                continue
            if op == 0x04:                               # if
                q = skip_blocktype(code, p + 1)
                if not dead:
                    acc += 1
                    out[seg] = subpre + sleb(acc) + subpost
                    out.append(code[last:q])
                    last = q
                    seg = len(out)
                    out.append(b"")
                frames.append(dead)
                acc = 0
                p = q
                continue
            if op == 0x05:                               # else
                if seg >= 0 and acc:
                    out[seg] = subpre + sleb(acc) + subpost
                p += 1
                dead = frames[-1]
                if dead:
                    seg = -1
                else:
                    out.append(code[last:p])
                    last = p
                    seg = len(out)
                    out.append(b"")
                acc = 0
                continue
            if op == 0x10 or op == 0x11 or op == 0x14:   # call, call_indirect, call_ref
                q = skip_leb(code, p + 1)
                if op == 0x11:
                    q = skip_leb(code, q)
                if not dead:
                    acc += 1
                    out[seg] = subpre + sleb(acc) + subpost
                    out.append(code[last:p])
                    out.append(save)
                    out.append(code[p:q])
                    out.append(load)
                    last = q
                    seg = len(out)
                    out.append(b"")
                acc = 0
                p = q
                continue
            if op == 0x0E:                               # br_table
                cnt, q = read_uleb(code, p + 1)
                hit_fn = False
                depth_fn = len(frames) - 1
                for _ in range(cnt + 1):
                    lbl, q = read_uleb(code, q)
                    if lbl == depth_fn:
                        hit_fn = True
                if not dead:
                    acc += 1
                    out[seg] = subpre + sleb(acc) + subpost
                    if hit_fn:
                        out.append(code[last:p])
                        out.append(save)
                        last = p
                    dead = True
                    seg = -1
                acc = 0
                p = q
                continue
            if op == 0x0F or op == 0x00:                 # return / unreachable (cost 0)
                if not dead:
                    if acc:
                        out[seg] = subpre + sleb(acc) + subpost
                    out.append(code[last:p])
                    out.append(save)
                    last = p
                    dead = True
                    seg = -1
                acc = 0
                p += 1
                continue
            if op in (0x12, 0x13, 0x15):                 # return_call*
                q = skip_leb(code, p + 1)
                if op == 0x13:
                    q = skip_leb(code, q)
                if not dead:
                    acc += 1
                    out[seg] = subpre + sleb(acc) + subpost
                    out.append(code[last:p])
                    out.append(save)
                    last = p
                    dead = True
                    seg = -1
                acc = 0
                p = q
                continue
            raise AssertionError(op)
        if k == K_MEMIDX:                                # memory.size / memory.grow
            acc += 1
            if op == 0x40 and not dead:                  # grow: + delta pages
                out.append(code[last:p])
                out.append(dyn)
                last = p
            if renum:
                nb, q = memidx_fix(p + 1)
                out.append(code[last:p + 1])
                out.append(nb)
                last = q
                p = q
            else:
                p = skip_leb(code, p + 1)
            continue
        if k == K_PREFIX:
            sub, q = read_uleb(code, p + 1)
            acc += 1
            if op == 0xFC:
                if sub in DYN_FC and not dead:
                    out.append(code[last:p])
                    out.append(dyn)
                    last = p
                if sub <= 7:
                    pass
                elif sub in (8, 10, 11):                 # memory.init / copy / fill
                    if sub == 8:
                        q = skip_leb(code, q)
                    nmem = 2 if sub == 10 else 1
                    if renum:
                        out.append(code[last:q])
                        for _ in range(nmem):
                            nb, q = memidx_fix(q)
                            out.append(nb)
                        last = q
                    else:
                        for _ in range(nmem):
                            q = skip_leb(code, q)
                elif sub in (9, 13, 15, 16, 17):
                    q = skip_leb(code, q)
                elif sub in (12, 14):
                    q = skip_leb(code, skip_leb(code, q))
                else:
                    raise UnsupportedError(f"0xfc {sub}")
            elif op == 0xFD:
                if sub in SIMD_MEM or sub in SIMD_MEMLANE:
                    if renum:
                        q, last = memarg_fix(code, q, out, last, shift)
                    else:
                        q = skip_leb(code, skip_leb(code, q))
                    if sub in SIMD_MEMLANE:
                        q += 1
                elif sub == 12 or sub == 13:
                    q += 16
                elif sub in SIMD_LANE:
                    q += 1
            else:                                        # 0xFE atomics
                if sub == 3:
                    q += 1
                elif renum:
                    q, last = memarg_fix(code, q, out, last, shift)
                else:
                    q = skip_leb(code, skip_leb(code, q))
            p = q
            continue
        if k == K_F32:
            p += 5
            acc += 1
            continue
        if k == K_F64:
            p += 9
            acc += 1
            continue
        if k == K_SELT:
            cnt, p = read_uleb(code, p + 1)
            for _ in range(cnt):
                p = skip_valtype(code, p)
            acc += 1
            continue
        if k == K_HEAP:
            p = skip_leb(code, p + 1)
            acc += 1
            continue
        raise UnsupportedError(f"opcode 0x{op:02x}")
    if frames:
        raise UnsupportedError("unbalanced body")
    out.append(code[last:])
    return b"".join(out)


def instrument_body_approx(body: bytes, nparams: int, cx: Ctx) -> bytes:
    """Upper-bound accounting, for the cost figure: one charge per function entry and per
    loop iteration, of every operator in that region (the loop body minus nested loops),
    whatever path runs. Same checks as the exact version. Over-charges branchy loops
    (an interpreter's dispatch loop is charged for all its handlers per iteration)."""
    code = body
    n, p = read_uleb(code, 0)
    nlocals = nparams
    for _ in range(n):
        c, p = read_uleb(code, p)
        nlocals += c
        p = skip_valtype(code, p)
    decl_end = p
    _f, save, load, check, dyn, subpre, subpost = snippets(nlocals, cx)
    renum = cx.shift is not None
    shift = -1 if cx.shift is None else cx.shift   # only read when renum
    out = [uleb(n + 3), code[uleb_len(code):decl_end], b"\x01\x7e\x01\x7f\x01\x7e", load, b"",
           check]
    regions = [[4, 1]]        # [placeholder index, cost]; function region first
    frames = [False]          # True: a loop frame (owns a region)
    last = decl_end
    end = len(code)
    kind = KIND
    acc = 0                   # cost accumulated since the last region switch

    def memidx_fix(p: int) -> tuple[bytes, int]:
        m, q = read_uleb(code, p)
        return uleb(m + 1 if m >= shift else m), q

    while p < end:
        op = code[p]
        k = kind[op]
        if k == K_PLAIN:
            p += 1
            acc += 1
            continue
        if k == K_IDX:
            p += 2
            if code[p - 1] & 0x80:
                p = skip_leb(code, p)
            acc += 1
            continue
        if k == K_MEM:
            acc += 1
            if renum:
                q, last = memarg_fix(code, p + 1, out, last, shift)
                p = q
            else:
                p = skip_leb(code, skip_leb(code, p + 1))
            continue
        if k == K_FREE:
            p += 1
            continue
        if k == K_CTRL:
            if op == 0x0B:
                regions[-1][1] += acc
                acc = 0
                is_loop = frames.pop()
                if is_loop:
                    idx, cost = regions.pop()
                    if cost:
                        out[idx] = subpre + sleb(cost) + subpost
                elif not frames:
                    idx, cost = regions.pop()
                    if cost:
                        out[idx] = subpre + sleb(cost) + subpost
                    out.append(code[last:p])
                    out.append(save)
                    last = p
                p += 1
                continue
            if op == 0x03:
                q = skip_blocktype(code, p + 1)
                regions[-1][1] += acc
                acc = 0
                out.append(code[last:q])
                regions.append([len(out), 0])
                out.append(b"")
                out.append(check)
                last = q
                frames.append(True)
                p = q
                continue
            if op == 0x02 or op == 0x04:
                if op == 0x04:
                    acc += 1
                frames.append(False)
                p = skip_blocktype(code, p + 1)
                continue
            if op == 0x05:
                p += 1
                continue
            if op == 0x0C or op == 0x0D:
                lbl, q = read_uleb(code, p + 1)
                acc += 1
                if lbl == len(frames) - 1:
                    out.append(code[last:p])
                    out.append(save)
                    last = p
                p = q
                continue
            if op == 0x0E:
                cnt, q = read_uleb(code, p + 1)
                hit = False
                for _ in range(cnt + 1):
                    lbl, q = read_uleb(code, q)
                    hit |= lbl == len(frames) - 1
                acc += 1
                if hit:
                    out.append(code[last:p])
                    out.append(save)
                    last = p
                p = q
                continue
            if op == 0x10 or op == 0x11 or op == 0x14:
                q = skip_leb(code, p + 1)
                if op == 0x11:
                    q = skip_leb(code, q)
                acc += 1
                out.append(code[last:p])
                out.append(save)
                out.append(code[p:q])
                out.append(load)
                last = q
                p = q
                continue
            if op == 0x0F or op == 0x00:
                out.append(code[last:p])
                out.append(save)
                last = p
                p += 1
                continue
            if op in (0x12, 0x13, 0x15):
                q = skip_leb(code, p + 1)
                if op == 0x13:
                    q = skip_leb(code, q)
                acc += 1
                out.append(code[last:p])
                out.append(save)
                last = p
                p = q
                continue
            raise AssertionError(op)
        if k == K_MEMIDX:
            acc += 1
            if op == 0x40:
                out.append(code[last:p])
                out.append(dyn)
                last = p
            if renum:
                nb, q = memidx_fix(p + 1)
                out.append(code[last:p + 1])
                out.append(nb)
                last = q
                p = q
            else:
                p = skip_leb(code, p + 1)
            continue
        if k == K_PREFIX:
            sub, q = read_uleb(code, p + 1)
            acc += 1
            if op == 0xFC:
                if sub in DYN_FC:
                    out.append(code[last:p])
                    out.append(dyn)
                    last = p
                if sub <= 7:
                    pass
                elif sub in (8, 10, 11):
                    if sub == 8:
                        q = skip_leb(code, q)
                    nmem = 2 if sub == 10 else 1
                    if renum:
                        out.append(code[last:q])
                        for _ in range(nmem):
                            nb, q = memidx_fix(q)
                            out.append(nb)
                        last = q
                    else:
                        for _ in range(nmem):
                            q = skip_leb(code, q)
                elif sub in (9, 13, 15, 16, 17):
                    q = skip_leb(code, q)
                elif sub in (12, 14):
                    q = skip_leb(code, skip_leb(code, q))
                else:
                    raise UnsupportedError(f"0xfc {sub}")
            elif op == 0xFD:
                if sub in SIMD_MEM or sub in SIMD_MEMLANE:
                    if renum:
                        q, last = memarg_fix(code, q, out, last, shift)
                    else:
                        q = skip_leb(code, skip_leb(code, q))
                    if sub in SIMD_MEMLANE:
                        q += 1
                elif sub == 12 or sub == 13:
                    q += 16
                elif sub in SIMD_LANE:
                    q += 1
            else:
                if sub == 3:
                    q += 1
                elif renum:
                    q, last = memarg_fix(code, q, out, last, shift)
                else:
                    q = skip_leb(code, skip_leb(code, q))
            p = q
            continue
        if k == K_F32:
            p += 5
            acc += 1
            continue
        if k == K_F64:
            p += 9
            acc += 1
            continue
        if k == K_SELT:
            cnt, p = read_uleb(code, p + 1)
            for _ in range(cnt):
                p = skip_valtype(code, p)
            acc += 1
            continue
        if k == K_HEAP:
            p = skip_leb(code, p + 1)
            acc += 1
            continue
        raise UnsupportedError(f"opcode 0x{op:02x}")
    if frames:
        raise UnsupportedError("unbalanced body")
    out.append(code[last:])
    return b"".join(out)


def uleb_len(buf: bytes) -> int:
    p = 0
    while buf[p] & 0x80:
        p += 1
    return p + 1


def memarg_fix(code: bytes, q: int, out: list[bytes], last: int,
               shift: int) -> tuple[int, int]:
    """Renumber a memarg at q. Returns (q after memarg, new last)."""
    a, r = read_uleb(code, q)
    if a & 0x40:
        m, r2 = read_uleb(code, r)
        if m >= shift:
            out.append(code[last:q])
            out.append(uleb(a) + uleb(m + 1))
            last = r2
        return skip_leb(code, r2), last
    if shift == 0:
        out.append(code[last:q])
        out.append(uleb(a | 0x40) + b"\x01")
        last = r
    return skip_leb(code, r), last


# ---------------------------------------------------------------- whole module


def rewrite(wasm: bytes, mode: str = "floor", exact: bool = True) -> bytes:
    secs = split_sections(wasm)
    by_id: dict[int, bytes] = {}
    for sid, payload in secs:
        if sid != 0:
            if sid in by_id:
                raise UnsupportedError(f"duplicate section {sid}")
            by_id[sid] = payload
    if 13 in by_id:
        raise UnsupportedError("exception handling (tag section)")
    type_params = parse_types(by_id[1]) if 1 in by_id else []
    _n_imports, _imp_funcs, imp_globals, imp_mems = (
        parse_imports(by_id[2]) if 2 in by_id else (0, [], 0, 0))
    func_types = []
    if 3 in by_id:
        n, p = read_uleb(by_id[3], 0)
        for _ in range(n):
            t, p = read_uleb(by_id[3], p)
            func_types.append(t)
    n_def_globals = count_vec(by_id.get(6, b""))
    g_fuel = imp_globals + n_def_globals
    g_slot, g_trap = g_fuel + 1, g_fuel + 2
    # imported shared interrupt page (the guest's memories are renumbered +1)
    interrupt = mode in ("floor", "floorconst", "sep", "slice", "fuelrenum")
    private = mode in ("floormem", "floorplain")         # module-defined private page
    def_mems = count_vec(by_id.get(5, b""))
    new: dict[int, bytes] = {}
    if private:
        old = by_id.get(5, b"\x00")
        n, p = read_uleb(old, 0)
        new[5] = uleb(n + 1) + old[p:] + b"\x01\x01\x01"

    # globals: fuel i64, slot i32, trap flag i32 (all mutable, after every guest global)
    old = by_id.get(6, b"\x00")
    n, p = read_uleb(old, 0)
    extra = [b"\x7e\x01\x42\x00\x0b", b"\x7f\x01\x41\x00\x0b", b"\x7f\x01\x41\x00\x0b"]
    new[6] = uleb(n + 3) + old[p:] + b"".join(extra)

    # exports
    old = by_id.get(7, b"\x00")
    n, p = read_uleb(old, 0)
    q, entries = p, []
    for _ in range(n):
        ln, q2 = read_uleb(old, q)
        nm = old[q2:q2 + ln].decode()
        if nm.startswith(RESERVED):
            raise UnsupportedError(f"reserved export name {nm!r}")
        q2 += ln
        kind = old[q2]
        idx, q3 = read_uleb(old, q2 + 1)
        if interrupt and kind == 2 and idx >= imp_mems:
            idx += 1
        entries.append(old[q:q2] + bytes([kind]) + uleb(idx))
        q = q3
    entries += [name(EXP_FUEL) + b"\x03" + uleb(g_fuel),
                name(EXP_SLOT) + b"\x03" + uleb(g_slot),
                name(EXP_TRAP) + b"\x03" + uleb(g_trap)]
    if private:
        entries.append(name(EXP_INT) + b"\x02" + uleb(imp_mems + def_mems))
    if 8 in by_id:                         # start function: host calls it after setting fuel
        start_idx, _ = read_uleb(by_id[8], 0)
        entries.append(name(EXP_START) + b"\x00" + uleb(start_idx))
    new[7] = vec(entries)
    drop = {8}

    if interrupt:
        old = by_id.get(2, b"\x00")
        n, p = read_uleb(old, 0)
        imp = name(IMP_MODULE) + name(IMP_MEMORY) + b"\x02\x03\x01\x01"   # shared 1..1 pages
        new[2] = uleb(n + 1) + old[p:] + imp
        # data segments: active segments on memidx >= imp_mems move by one
        if 11 in by_id:
            old = by_id[11]
            n, p = read_uleb(old, 0)
            segs = []
            for _ in range(n):
                flag, q = read_uleb(old, p)
                if flag == 0:
                    e = skip_const_expr(old, q)
                    ln, e2 = read_uleb(old, e)
                    mem = 0
                    segs.append(b"\x02" + uleb(mem + 1 if mem >= imp_mems else mem)
                                + old[q:e2 + ln])
                    p = e2 + ln
                elif flag == 1:
                    ln, e2 = read_uleb(old, q)
                    segs.append(old[p:e2 + ln])
                    p = e2 + ln
                elif flag == 2:
                    mem, q2 = read_uleb(old, q)
                    e = skip_const_expr(old, q2)
                    ln, e2 = read_uleb(old, e)
                    segs.append(b"\x02" + uleb(mem + 1 if mem >= imp_mems else mem)
                                + old[q2:e2 + ln])
                    p = e2 + ln
                else:
                    raise UnsupportedError(f"data flag {flag}")
            new[11] = vec(segs)
    cx = Ctx(mode, g_fuel, g_slot, g_trap, imp_mems + def_mems if private else imp_mems,
             imp_mems if interrupt else None)

    # code
    old = by_id.get(10, b"\x00")
    n, p = read_uleb(old, 0)
    if n != len(func_types):
        raise UnsupportedError("function/code count mismatch")
    bodies = []
    body_fn = instrument_body if exact else instrument_body_approx
    for i in range(n):
        size, p = read_uleb(old, p)
        nb = body_fn(old[p:p + size], type_params[func_types[i]], cx)
        bodies.append(uleb(len(nb)) + nb)
        p += size
    new[10] = uleb(n) + b"".join(bodies)

    # reassemble in canonical order; custom sections kept at their relative place
    out = [wasm[:8]]
    present = [sid for sid, _ in secs if sid != 0]
    wanted = set(present) | set(new)
    wanted -= drop
    emitted = set()

    def emit(sid: int) -> None:
        payload = new[sid] if sid in new else by_id[sid]
        out.append(bytes([sid]) + uleb(len(payload)) + payload)
        emitted.add(sid)

    for sid, payload in secs:
        if sid == 0:
            out.append(bytes([0]) + uleb(len(payload)) + payload)
            continue
        # emit any new sections that must precede this one
        for s in SECTION_ORDER:
            if s == sid:
                break
            if s in wanted and s not in emitted and s not in present:
                emit(s)
        if sid in wanted:
            emit(sid)
    for s in SECTION_ORDER:
        if s in wanted and s not in emitted:
            emit(s)
    return b"".join(out)


def main(argv: list[str]) -> None:
    """python rewriter.py IN.wasm OUT.wasm [MODE]   (MODE defaults to floor)"""
    if len(argv) < 3:
        sys.exit(f"usage: {argv[0]} IN.wasm OUT.wasm [MODE]")
    src = Path(argv[1]).read_bytes()
    mode = argv[3] if len(argv) > 3 else "floor"
    t0 = time.perf_counter()
    res = rewrite(src, mode)
    print(f"{len(src)} -> {len(res)} bytes in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    Path(argv[2]).write_bytes(res)


if __name__ == "__main__":
    main(sys.argv)
