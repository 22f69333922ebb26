"""Guest input that once ended ``internal_error`` or with the wrong status.

``internal_error`` means a bug in Warden; each case here is something a tenant can submit,
so each must end with the status that names what the guest did. Both meterings are run:
instrumented core modules and wasmtime's fuel (what components get) take different paths
through instantiation.
"""

from __future__ import annotations

import pytest

from sandboxes.runtime.sandbox import Sandbox
from sandboxes.schema import Limits, RunStatus, TrapKind

LIMITS = Limits(fuel=10**8, memory_bytes="64MiB", wall_time_s=5)

OOB_DATA = '(module (memory 1) (data (i32.const 70000) "x") (func (export "_start")))'
OOB_ELEM = '(module (table 1 funcref) (func $f) (elem (i32.const 5) $f) (func (export "_start")))'
START_TRAPS = '(module (func $s unreachable) (start $s) (func (export "_start")))'
START_LOOPS = '(module (func $s (loop br 0)) (start $s) (func (export "_start")))'
FIVE_TABLES = "(module " + "(table 1 funcref) " * 5 + '(func (export "_start")))'


@pytest.fixture(params=["instrumented", "wasmtime-fuel"])
def any_sandbox(request: pytest.FixtureRequest, sandbox: Sandbox,
                metered_sandbox: Sandbox) -> Sandbox:
    return sandbox if request.param == "instrumented" else metered_sandbox


@pytest.mark.parametrize(("wat", "kind"), [
    (OOB_DATA, TrapKind.MEMORY_OUT_OF_BOUNDS),
    (OOB_ELEM, TrapKind.TABLE_OUT_OF_BOUNDS),
    (START_TRAPS, TrapKind.UNREACHABLE),
], ids=["data-segment", "element-segment", "start-function"])
def test_a_trap_while_instantiating_is_the_guests_trap(any_sandbox: Sandbox, wat: str,
                                                       kind: TrapKind) -> None:
    result = any_sandbox.run(wat, LIMITS)
    assert result.status is RunStatus.TRAP, result
    assert result.trap_kind is kind, result


def test_a_start_function_that_never_ends_runs_out_of_fuel(any_sandbox: Sandbox) -> None:
    result = any_sandbox.run(START_LOOPS, LIMITS)
    assert result.status is RunStatus.FUEL_EXHAUSTED, result
    assert result.fuel_used == LIMITS.fuel


@pytest.mark.parametrize("signature", ["(param i32)", "(result i32) i32.const 0",
                                       "(param i64 f32) (result f64) f64.const 1"])
def test_a_start_with_the_wrong_type_is_an_invalid_module(any_sandbox: Sandbox,
                                                          signature: str) -> None:
    result = any_sandbox.run(f'(module (func (export "_start") {signature}))', LIMITS)
    assert result.status is RunStatus.INVALID_MODULE, result
    assert result.message is not None and "_start must take no parameters" in result.message


def test_more_tables_than_allowed_is_unsupported_not_a_memory_limit(any_sandbox: Sandbox) -> None:
    result = any_sandbox.run(FIVE_TABLES, LIMITS)
    assert result.status is RunStatus.UNSUPPORTED, result
    assert result.message is not None and "table count" in result.message
    four = "(module " + "(table 1 funcref) " * 4 + '(func (export "_start")))'
    assert any_sandbox.run(four, LIMITS).status is RunStatus.OK


def high_memory_calls(base: int) -> str:
    """poll_oneoff (a 1 ms sleep) and fd_write with every buffer at ``base``; exits with
    (poll errno * 100 + write errno)."""
    return f"""(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 32770)
  (func (export "_start") (local $p i32) (local $e i32)
    (i64.store (i32.const {base}) (i64.const 7))                    ;; userdata
    (i32.store8 (i32.const {base + 8}) (i32.const 0))                 ;; clock
    (i32.store (i32.const {base + 16}) (i32.const 1))                 ;; monotonic
    (i64.store (i32.const {base + 24}) (i64.const 1000000))           ;; 1 ms
    (local.set $p (call $poll (i32.const {base}) (i32.const {base + 64})
                              (i32.const 1) (i32.const {base + 128})))
    (i32.store (i32.const {base + 256}) (i32.const {base + 512}))
    (i32.store (i32.const {base + 260}) (i32.const 3))
    (i32.store (i32.const {base + 512}) (i32.const 0x0a6968))         ;; "hi\\n"
    (local.set $e (call $w (i32.const 1) (i32.const {base + 256}) (i32.const 1)
                           (i32.const {base + 264})))
    (call $exit (i32.add (i32.mul (local.get $p) (i32.const 100)) (local.get $e)))))"""


def test_host_functions_read_pointers_as_unsigned(sandbox: Sandbox) -> None:
    """Buffers at or above 2 GiB work as buffers below it (they were EFAULT when read as
    signed i32)."""
    limits = Limits(fuel=10**8, memory_bytes="3GiB", wall_time_s=10)
    for base in (4096, 0x80000000, 0x80008000):
        result = sandbox.run(high_memory_calls(base), limits)
        assert result.status is RunStatus.OK, (hex(base), result)
        assert result.stdout == b"hi\n", hex(base)


def test_an_out_of_bounds_pointer_traps_as_in_wasmtime(sandbox: Sandbox) -> None:
    """A subscription array that runs past the end of memory (ptr + len past 2^32 - 1 in
    the last case) is a trap, never a host read out of bounds."""
    for in_ptr, nsubs in ((65536 - 8, 1), (0, 2000), (0xFFFFFFF8, 4000)):
        wat = f"""(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $poll (i32.const {in_ptr}) (i32.const 0) (i32.const {nsubs}) (i32.const 0)))))"""
        result = sandbox.run(wat, LIMITS)
        assert result.status is RunStatus.TRAP, (in_ptr, nsubs, result)
        assert result.message is not None and "outside the guest's memory" in result.message


@pytest.mark.parametrize("wat", [
    "(module " + "(table 1 funcref) " * 65 + '(func (export "_start")))',
    '(module (table 20000000 funcref) (func (export "_start")))',
], ids=["65-tables", "20M-elements"])
def test_a_module_past_the_instance_pool_is_refused_not_an_internal_error(
        any_sandbox: Sandbox, wat: str) -> None:
    """It compiles (the compile helper has no pool) but cannot fit a run engine's slot."""
    result = any_sandbox.run(wat, LIMITS)
    assert result.status in (RunStatus.UNSUPPORTED, RunStatus.MEMORY_LIMIT), result


def test_proc_exit_in_a_start_function_is_the_exit(any_sandbox: Sandbox) -> None:
    wat = """(module (import "wasi_snapshot_preview1" "proc_exit" (func $e (param i32)))
      (func $s (call $e (i32.const 3))) (start $s) (func (export "_start")))"""
    result = any_sandbox.run(wat, LIMITS)
    assert result.status is RunStatus.NONZERO_EXIT and result.exit_code == 3, result
