"""Fuel-instrumentation prototype benchmark (figures: README.md beside this file).

Side by side on the C sieve (tests/fixtures/sieve.wasm; native: tests/fixtures/c/sieve.c built
with gcc -O2): native, wasm bare, wasmtime's own fuel + epochs (what Warden uses), and every
mode of rewriter.py (fuel only, the fuel+interrupt variants, the loop-level upper bound).

1. Correctness: stdout identical to native for every variant; fuel used (the rewriter's count
   must equal wasmtime's); a 1,000,000 budget traps with __warden_trap == 1; a cross-thread
   interrupt stops a long sieve and four infinite-loop modules (latency after the write).
   Any failure is an AssertionError.
2. Timing: interleaved rounds, CPU min / median per variant, ratio of mins to native.
3. The rewriter's own speed on CPython-for-WASI (15 MB) if the toolchain cache has it
   (--skip-big to skip, --big PATH for another module).

Usage (from the repo root): python bench/fuel_instrumentation/bench_fuel_rewriter.py
    [--runs N] [--skip-big] [--big PATH]
Needs gcc on PATH. CPU time: time.thread_time() around _start for wasm, the child's rusage for
native. The temporary folder (native binary, rewritten big module) is kept and printed.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import rewriter  # beside this file: sys.path[0] when run as a script
import wasmtime
from wasmtime import _ffi as ffi

ROOT = Path(__file__).resolve().parents[2]
SIEVE_C = ROOT / "tests/fixtures/c/sieve.c"
SIEVE_WASM = ROOT / "tests/fixtures/sieve.wasm"
SIEVE_ARGS = ["10000000", "5"]
BIG = Path.home() / ".cache/warden/toolchains/cpython-3.13.5-e4966871abb3/python.wasm"
INT64_MAX = 2**63 - 1


def _shm_as_extern(self: wasmtime.SharedMemory) -> ffi.wasmtime_extern_t:
    """wasmtime-py 50.0.1 bug: SharedMemory._as_extern wraps self.ptr() (already a
    POINTER(wasmtime_sharedmemory)) in ctypes.pointer() again, so Linker.define(...,
    SharedMemory) raises TypeError "incompatible types, LP_LP_wasmtime_sharedmemory instance
    instead of LP_wasmtime_sharedmemory instance". Pass the pointer itself."""
    return ffi.wasmtime_extern_t(ffi.WASMTIME_EXTERN_SHAREDMEMORY,
                                 ffi.wasmtime_extern_union(sharedmemory=self.ptr()))


wasmtime.SharedMemory._as_extern = _shm_as_extern  # type: ignore[method-assign]


# interrupt page: imported SharedMemory, per-run slot
IMPORTED = ("floor", "floorconst", "sep", "slice", "fuelrenum")
PRIVATE = ("floormem", "floorplain")       # interrupt page: module-defined 1-page memory


def engine(fuel: bool = False, epochs: bool = False, interrupt: bool = False,
           threads: bool | None = None) -> wasmtime.Engine:
    cfg = wasmtime.Config()
    cfg.cranelift_opt_level = "speed"
    cfg.consume_fuel = fuel
    cfg.epoch_interruption = epochs
    if interrupt:   # only for instrumented modules; the ORIGINAL is validated without these
        cfg.wasm_threads = interrupt if threads is None else threads
        cfg.wasm_multi_memory = True
        cfg.shared_memory = interrupt if threads is None else threads
    return wasmtime.Engine(cfg)


class Interrupts:
    """One shared 64 KiB page per engine: 8192 i64 slots, one per concurrent run."""

    def __init__(self, eng: wasmtime.Engine):
        self.mem = wasmtime.SharedMemory(
            eng, wasmtime.MemoryType(wasmtime.Limits(1, 1), shared=True))
        self.words = ctypes.cast(self.mem.data_ptr(), ctypes.POINTER(ctypes.c_int64))

    def trip(self, slot: int) -> None:      # from any thread; x86 aligned store is atomic
        self.words[slot] = INT64_MAX

    def reset(self, slot: int) -> None:
        self.words[slot] = 0


class Variant:
    """One way of running a module: engine config + (optionally) a rewriter mode. mine is a
    rewriter mode, with ":approx" for the loop-level upper bound (exact=False)."""

    def __init__(self, label: str, wasm: bytes, *, fuel: bool = False, epochs: bool = False,
                 mine: str | None = None):
        exact = True
        self.spec = mine
        if mine and mine.endswith(":approx"):
            mine, exact = mine.split(":")[0], False
        self.label, self.fuel, self.epochs, self.mine = label, fuel, epochs, mine
        interrupt = mine in IMPORTED
        self.private = mine in PRIVATE
        self.engine = engine(fuel, epochs, interrupt or self.private,
                             threads=None if not self.private else mine == "floormem")
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        self.interrupts: Interrupts | None = None
        self.per_slot = mine in ("floorconst", "fuelrenum")
        if mine:
            # the guest's module must validate WITHOUT threads / multi-memory
            wasmtime.Module.validate(engine(), wasm)
            wasm = rewriter.rewrite(wasm, mine, exact)
        self.module = wasmtime.Module(self.engine, wasm)
        if interrupt and not self.per_slot:
            # one shared page per engine; the run's slot address is set in a global
            self.interrupts = Interrupts(self.engine)
            linker.define(wasmtime.Store(self.engine), rewriter.IMP_MODULE, rewriter.IMP_MEMORY,
                          self.interrupts.mem)
        self.pre = None if self.per_slot else linker.instantiate_pre(self.module)
        self.slots: dict[int, tuple[Interrupts, wasmtime.InstancePre]] = {}

    def pre_for(self, slot: int) -> wasmtime.InstancePre:
        """floorconst: one shared page and one InstancePre per run slot (address 0)."""
        if not self.per_slot:
            return self.pre
        if slot not in self.slots:
            page = Interrupts(self.engine)
            linker = wasmtime.Linker(self.engine)
            linker.define_wasi()
            linker.define(wasmtime.Store(self.engine), rewriter.IMP_MODULE, rewriter.IMP_MEMORY,
                          page.mem)
            self.slots[slot] = (page, linker.instantiate_pre(self.module))
        return self.slots[slot][1]

    def run(self, args: list[str], budget: int = 10**13, stdout: str = os.devnull,
            slot: int = 0, on_start: Callable[[], None] | None = None,
            ) -> tuple[float, int | None, Exception | None, int]:
        """(cpu s, fuel used, error or None, trap flag)."""
        store = wasmtime.Store(self.engine)
        wasi = wasmtime.WasiConfig()
        wasi.argv = ["sieve", *args]
        wasi.stdout_file = stdout
        store.set_wasi(wasi)
        if self.fuel:
            store.set_fuel(budget)
        if self.epochs:
            store.set_epoch_deadline(10**9)
        inst = self.pre_for(slot).instantiate(store)
        ex = inst.exports(store)
        if self.mine:
            ex[rewriter.EXP_FUEL].set_value(store, wasmtime.Val.i64(budget))
            ex[rewriter.EXP_SLOT].set_value(store, wasmtime.Val.i32(slot * 8))
            self.slot = slot
            if self.interrupts:
                self.interrupts.reset(slot)
            if self.per_slot:
                self.slots[slot][0].reset(0)
            if self.private:   # raw pointer into this store's private page (valid until drop)
                self.words = ctypes.cast(ex[rewriter.EXP_INT].data_ptr(store),
                                         ctypes.POINTER(ctypes.c_int64))
        start = ex["_start"]
        err: Exception | None = None
        if on_start:
            on_start()
        c0 = time.thread_time()
        try:
            start(store)
        except wasmtime.ExitTrap as e:
            if e.code != 0:
                err = e
        except (wasmtime.Trap, wasmtime.WasmtimeError) as e:
            err = e
        cpu = time.thread_time() - c0
        flag = 0
        if self.mine:
            used = budget - ex[rewriter.EXP_FUEL].value(store)
            flag = ex[rewriter.EXP_TRAP].value(store)
        elif self.fuel:
            used = budget - store.get_fuel()
        else:
            used = None
        return cpu, used, err, flag

    def trip(self) -> None:
        """From the timer thread. Private page: must not run after the store is dropped
        (prototype: the test joins the timer before the store goes)."""
        if self.private:
            self.words[0] = INT64_MAX
        elif self.per_slot:
            self.slots[self.slot][0].trip(0)
        else:
            self.interrupts.trip(self.slot)


def run_native(binary: Path, args: list[str]) -> tuple[float, bytes]:
    proc = subprocess.Popen([str(binary), *args], stdout=subprocess.PIPE)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return usage.ru_utime + usage.ru_stime, out


INFINITE = {
    "loop br 0": "(loop $l br $l)",
    "loop of loads": "(loop $l i32.const 64 i32.load drop br $l)",
    "loop with a call": "(loop $l call $nop br $l)",
    "mutual recursion-free call tree": "(loop $l i32.const 3 call $tree br $l)",
}


def infinite_module(body: str) -> bytes:
    return wasmtime.wat2wasm(f"""(module (memory (export "memory") 1)
      (func $nop)
      (func $tree (param i32) (if (local.get 0) (then
          (call $tree (i32.sub (local.get 0) (i32.const 1)))
          (call $tree (i32.sub (local.get 0) (i32.const 1))))))
      (func (export "_start") {body}))""")


def interrupt_latency(variant: Variant, args: list[str], delay: float = 0.05,
                      budget: int = 10**13) -> tuple[float, Exception | None, int, int | None]:
    """Trip the slot from another thread after `delay`; seconds from the write to return."""
    t_write: list[float] = []

    def timer() -> None:
        time.sleep(delay)
        t_write.append(time.perf_counter())
        variant.trip()
    th = threading.Thread(target=timer)
    _, used, err, flag = variant.run(args, budget=budget, slot=3, on_start=th.start)
    t_end = time.perf_counter()
    th.join()
    return t_end - t_write[0], err, flag, used


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="timing rounds (default 7)")
    ap.add_argument("--skip-big", action="store_true", help="skip the rewriter-speed part")
    ap.add_argument("--big", type=Path, default=BIG, help="module for the rewriter-speed part")
    a = ap.parse_args()
    print(f"# {os.cpu_count()} cores, load {load()},"
          f" wasmtime-py {importlib.metadata.version('wasmtime')}")
    work = Path(tempfile.mkdtemp(prefix="fuelproto-"))
    native = work / "sieve"
    subprocess.run(["gcc", "-O2", "-o", str(native), str(SIEVE_C)], check=True)
    wasm = SIEVE_WASM.read_bytes()

    t0 = time.perf_counter()
    variants = [
        Variant("wasm, neither fuel nor epochs", wasm),
        Variant("wasmtime fuel + epochs (Warden)", wasm, fuel=True, epochs=True),
        Variant("mine: fuel only", wasm, mine="fuel"),
        Variant("mine: fuel + interrupt (shared page, slot global)", wasm, mine="floor"),
        Variant("mine: fuel + interrupt (sep, 2 checks)", wasm, mine="sep"),
        Variant("mine: fuel + interrupt (slice, 1 reg cmp)", wasm, mine="slice"),
        Variant("mine: fuel + interrupt (page per slot, const)", wasm, mine="floorconst"),
        Variant("mine: fuel + interrupt (private page, atomic)", wasm, mine="floormem"),
        Variant("mine: fuel + interrupt (private page, plain)", wasm, mine="floorplain"),
        Variant("mine, loop-level upper bound: fuel only", wasm, mine="fuel:approx"),
        Variant("mine, loop-level upper bound: fuel + int (const)", wasm,
                mine="floorconst:approx"),
    ]
    print(f"compiled {len(variants)} variants in {time.perf_counter() - t0:.1f} s")

    # ---- correctness
    _, native_out = run_native(native, SIEVE_ARGS)
    fuel_counts: dict[str, int | None] = {}
    for v in variants:
        outp = work / "out.txt"
        _, used, err, flag = v.run(SIEVE_ARGS, stdout=str(outp))
        got = outp.read_bytes()
        assert err is None, (v.label, err)
        assert got == native_out, (v.label, got, native_out)
        fuel_counts[v.label] = used
    print(f"stdout identical to native ({native_out.strip().decode()}) for all variants")
    for lbl, used in fuel_counts.items():
        if used is not None:
            print(f"  fuel used, {lbl}: {used:,}")
    for v in variants[2:]:
        if v.mine is None:
            continue
        _, used, err, flag = v.run(SIEVE_ARGS, budget=1_000_000)
        ok = isinstance(err, wasmtime.Trap) and flag == 1
        print(f"  budget 1,000,000 under {v.mine}: trapped={ok} flag={flag} used={used:,}"
              f" ({str(err).splitlines()[0] if err else None})")
        assert ok
    for v in variants:
        if v.mine not in IMPORTED + PRIVATE:
            continue
        lats = []
        for _ in range(5):
            lat, err, flag, used = interrupt_latency(v, ["100000000", "1000"], delay=0.1)
            assert isinstance(err, wasmtime.Trap), err
            lats.append(lat)
        lats.sort()
        print(f"  interrupt sieve 10^8 x1000 ({v.label}): stopped {lats[0] * 1e3:.2f} /"
              f" {lats[2] * 1e3:.2f} / {lats[-1] * 1e3:.2f} ms (min/median/max of 5)"
              " after the write")
        for name, body in INFINITE.items():
            iv = Variant(name, infinite_module(body), mine=v.spec)
            lats = []
            for _ in range(5):
                lat, err, flag, used = interrupt_latency(iv, [], delay=0.05, budget=5 * 10**9)
                assert isinstance(err, wasmtime.Trap), err
                lats.append(lat)
            lats.sort()
            verdict = "OK" if lats[-1] < 0.05 else "NOT INTERRUPTED (ran to fuel exhaustion)"
            print(f"    '{name}': {lats[0] * 1e3:.2f} / {lats[2] * 1e3:.2f} /"
                  f" {lats[-1] * 1e3:.2f} ms  {verdict}")

    # ---- timing: interleaved rounds, min per variant
    cpu: dict[str, list[float]] = {v.label: [] for v in variants}
    cpu["native gcc -O2"] = []
    for _ in range(a.runs):
        c, _out = run_native(native, SIEVE_ARGS)
        cpu["native gcc -O2"].append(c)
        for v in variants:
            cpu[v.label].append(v.run(SIEVE_ARGS)[0])
    nat = min(cpu["native gcc -O2"])
    print(f"\nsieve {' '.join(SIEVE_ARGS)}: CPU, min / median of {a.runs}"
          " (ratio of mins to native)")
    for lbl in ["native gcc -O2", *(v.label for v in variants)]:
        s = sorted(cpu[lbl])
        print(f"  {lbl:42s} {s[0] * 1e3:7.1f} ms / {s[len(s) // 2] * 1e3:7.1f} ms"
              f"   {s[0] / nat:5.2f}x")
    print(f"load now {load()}")

    # ---- rewriter speed on a big module
    if not a.skip_big and a.big.exists():
        big = a.big.read_bytes()
        code_mb = sum(len(b) for sid, b in rewriter.split_sections(big) if sid == 10) / 1e6
        for mode in ("fuel", "floor"):
            best = float("inf")
            for _ in range(3):
                c0 = time.thread_time()
                res = rewriter.rewrite(big, mode)
                best = min(best, time.thread_time() - c0)
            (work / f"big.{mode}.wasm").write_bytes(res)
            print(f"rewrite {a.big.name} ({len(big) / 1e6:.1f} MB, code section {code_mb:.1f} MB)"
                  f" mode {mode}: {best:.2f} s CPU (min of 3), output {len(res) / 1e6:.1f} MB")
        print(f"(outputs in {work})")


if __name__ == "__main__":
    main()
