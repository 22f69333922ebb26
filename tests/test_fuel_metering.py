"""Core modules metered by Warden's fuel rewriter: same counts and statuses as wasmtime's
fuel, stops through the interrupt page, and the fall-back to wasmtime's metering."""

from __future__ import annotations

import ctypes
import threading
import time

import pytest

from sandboxes.metering.fuel_rewriter import TRIPPED
from sandboxes.metering.interrupts import Interrupt
from sandboxes.runtime.control import CancelToken
from sandboxes.runtime.sandbox import Sandbox
from sandboxes.schema import Grants, Limits, RunResult, RunStatus, TrapKind
from tests import wat_modules as W
from tests.conftest import fixture_bytes


@pytest.fixture
def metered(metered_sandbox: Sandbox) -> Sandbox:
    """The comparison: wasmtime's fuel and epochs."""
    return metered_sandbox


def call_tree(depth: int) -> str:
    """2**depth calls, no loops: only the function-entry checks can stop it."""
    return f"""(module (func $f (param i32) (result i32)
        (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
          (else (i32.add (call $f (i32.sub (local.get 0) (i32.const 1)))
                         (call $f (i32.sub (local.get 0) (i32.const 1)))))))
      (func (export "_start") (drop (call $f (i32.const {depth})))))"""


# hello, printed by a start function; ``_start`` itself does nothing
START_SECTION = (
    W.hello("from start\n").replace('(func (export "_start")', "(func $init", 1)[:-1]
    + ' (start $init) (func (export "_start")))'
)


def test_core_modules_run_instrumented_and_components_do_not(sandbox: Sandbox) -> None:
    core = sandbox.prepare(W.HELLO, Limits())
    assert core.instrumented
    component = sandbox.prepare(fixture_bytes("components/hello.wasm"), Limits())
    assert not component.instrumented
    assert sandbox.run(fixture_bytes("components/hello.wasm")).status is RunStatus.OK


@pytest.mark.parametrize(
    ("source", "args"),
    [
        (fixture_bytes("hello.wasm"), ()),
        (fixture_bytes("sieve.wasm"), ("200000", "2")),
        (fixture_bytes("env_args.wasm"), ("a", "bb")),
        (call_tree(12), ()),
        (W.HELLO, ()),
    ],
    ids=["hello.wasm", "sieve", "env_args", "call-tree", "wat-hello"],
)
def test_fuel_and_output_equal_to_wasmtime(
    sandbox: Sandbox, metered: Sandbox, source: bytes | str, args: tuple[str, ...]
) -> None:
    grants = Grants(args=list(args), env={"K": "v"})
    mine = sandbox.run(source, Limits(), grants)
    theirs = metered.run(source, Limits(), grants)
    assert sandbox.prepare(source, Limits()).instrumented
    assert (mine.status, mine.trap_kind, mine.exit_code) == (
        theirs.status, theirs.trap_kind, theirs.exit_code
    )
    assert mine.stdout == theirs.stdout
    assert mine.fuel_used == theirs.fuel_used > 0


def test_out_of_fuel_reports_the_budget(sandbox: Sandbox, metered: Sandbox) -> None:
    for sb in (sandbox, metered):
        result = sb.run(W.LOOP, Limits(fuel=1_000_000))
        assert result.status is RunStatus.FUEL_EXHAUSTED
        assert result.fuel_used == 1_000_000


def test_a_budget_is_enough_exactly_when_it_covers_the_count(sandbox: Sandbox) -> None:
    """Code past the last check is charged but not checked; a run that ends there with the
    counter below zero is out of fuel all the same, so the boundary is exact."""
    source = call_tree(8)
    need = sandbox.run(source).fuel_used
    for budget in range(need - 30, need + 2):
        result = sandbox.run(source, Limits(fuel=budget))
        expected = RunStatus.OK if budget >= need else RunStatus.FUEL_EXHAUSTED
        assert result.status is expected, budget
        assert result.fuel_used == min(need, budget)


def test_fuel_runs_out_inside_a_call_tree(sandbox: Sandbox) -> None:
    result = sandbox.run(call_tree(40), Limits(fuel=5_000_000))
    assert result.status is RunStatus.FUEL_EXHAUSTED
    assert result.fuel_used == 5_000_000


def test_wall_time_stops_a_loop_without_calls(sandbox: Sandbox) -> None:
    started = time.monotonic()
    result = sandbox.run(W.LOOP, Limits(fuel=10**12, wall_time_s=0.2))
    assert result.status is RunStatus.WALL_TIMEOUT
    assert time.monotonic() - started < 1.5
    assert 0 < result.fuel_used < 10**12


def test_cancel_stops_only_its_own_run(sandbox: Sandbox) -> None:
    """Two loops at once on one engine, each reading its own page: the cancel of one
    leaves the other running until its own deadline."""
    token = CancelToken()
    results: dict[str, RunResult] = {}

    def run(name: str, cancel: CancelToken | None, wall: float) -> None:
        results[name] = sandbox.run(W.LOOP, Limits(fuel=10**12, wall_time_s=wall), cancel=cancel)

    threads = [
        threading.Thread(target=run, args=("cancelled", token, 30.0)),
        threading.Thread(target=run, args=("timed", None, 1.0)),
    ]
    for t in threads:
        t.start()
    time.sleep(0.3)
    token.cancel()
    threads[0].join(timeout=2)
    assert not threads[0].is_alive()
    assert threads[1].is_alive()  # still running: the cancel did not trip its page
    threads[1].join(timeout=5)
    cancelled, timed = results["cancelled"], results["timed"]
    assert cancelled.status is RunStatus.CANCELLED
    assert timed.status is RunStatus.WALL_TIMEOUT


def test_an_interrupt_writes_only_while_its_instance_lives() -> None:
    """A stop before the instance exists waits for it; after ``detach`` (the store is about
    to go) nothing is written, so a late cancel cannot touch freed or reused memory."""
    early, word = Interrupt(), ctypes.c_int64(0)
    early.trip()
    assert word.value == 0
    early.attach(ctypes.addressof(word))
    assert word.value == TRIPPED and early.tripped
    late, other = Interrupt(), ctypes.c_int64(0)
    late.attach(ctypes.addressof(other))
    late.detach()
    late.trip()
    assert other.value == 0


def test_stop_before_the_run_starts_trips_at_once(sandbox: Sandbox) -> None:
    token = CancelToken()
    token.cancel()
    result = sandbox.run(W.LOOP, Limits(fuel=10**12), cancel=token)
    assert result.status is RunStatus.CANCELLED
    assert result.fuel_used < 1000


def test_output_cap_stops_a_flood_at_once(sandbox: Sandbox) -> None:
    result = sandbox.run(W.flood(1), Limits(stdout_bytes=1000, fuel=10**12, wall_time_s=10))
    assert result.status is RunStatus.OUTPUT_LIMIT
    assert result.wall_time_s < 1.0


def test_start_section_runs_before_start(sandbox: Sandbox, metered: Sandbox) -> None:
    mine, theirs = sandbox.run(START_SECTION), metered.run(START_SECTION)
    assert sandbox.prepare(START_SECTION, Limits()).has_start_export
    assert mine.status is RunStatus.OK
    assert mine.stdout == theirs.stdout == b"from start\n"
    assert mine.fuel_used == theirs.fuel_used


def test_a_module_the_rewriter_refuses_is_refused_clearly(sandbox: Sandbox) -> None:
    """A guest exporting a name the rewriter reserves, or importing from its module, is
    refused; it does not get wasmtime's metering instead (which checks no returns)."""
    reserved = W.HELLO[:-1] + ' (global (export "__warden_fuel") i64 (i64.const 0)))'
    imports = '(module (import "__warden" "interrupt" (memory 1)) (func (export "_start")))'
    for source in (reserved, imports):
        result = sandbox.run(source)
        assert result.status is RunStatus.INVALID_MODULE
        assert "Warden cannot meter this module" in (result.message or ""), result.message
    shared = '(module (import "__warden" "interrupt" (memory 1 1 shared)) (func (export "_start")))'
    assert sandbox.run(shared).status is RunStatus.INVALID_MODULE  # no threads for guests


def test_guest_features_stay_off_on_the_instrumented_engine(sandbox: Sandbox) -> None:
    """Threads and multi-memory are on in that engine only for the rewriter's own page."""
    two_memories = '(module (memory 1) (memory 1) (func (export "_start")))'
    atomics = """(module (memory 1 1 shared) (func (export "_start")
        (drop (i32.atomic.load (i32.const 0)))))"""
    for source in (two_memories, atomics):
        result = sandbox.run(source)
        assert result.status is RunStatus.INVALID_MODULE, result


def test_store_memory_limit_still_applies(sandbox: Sandbox) -> None:
    result = sandbox.run(W.GROW_PAGE_BY_PAGE, Limits(memory_bytes="16MiB"))
    assert result.status is RunStatus.MEMORY_LIMIT
    assert result.memory_peak_bytes <= 16 * 1024**2


def test_trap_kinds_survive_instrumentation(sandbox: Sandbox) -> None:
    assert sandbox.run(W.DIV_ZERO).trap_kind is TrapKind.INTEGER_DIVISION_BY_ZERO
    result = sandbox.run(W.UNREACHABLE)
    assert (result.status, result.trap_kind) == (RunStatus.TRAP, TrapKind.UNREACHABLE)


def test_scratch_runs_use_their_own_linker(sandbox: Sandbox, metered: Sandbox) -> None:
    grants = Grants(scratch={"quota_bytes": 1024**2})
    mine = sandbox.run(W.HELLO, Limits(), grants)
    theirs = metered.run(W.HELLO, Limits(), grants)
    assert mine.status is RunStatus.OK and mine.stdout == b"hello\n"
    assert mine.fuel_used == theirs.fuel_used
