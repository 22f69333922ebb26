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
