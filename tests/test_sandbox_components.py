"""WASI P2 command components: limits, grants and statuses match core modules'.

Fixtures are real components (tests/fixtures/components/build.sh): C built with zig cc and
adapted to P2 with the preview1 command adapter, plus a few written in component text.
"""

from __future__ import annotations

import threading

import pytest
import wasmtime
import wasmtime.component

from sandboxes.runtime import components
from sandboxes.runtime.control import CancelToken
from sandboxes.runtime.engine import EngineSpec
from sandboxes.runtime.sandbox import Sandbox
from sandboxes.schema import Grants, Limits, MiB, RunResult, RunStatus, ScratchGrant, TrapKind
from tests.conftest import fixture_bytes


def component(name: str) -> bytes:
    return fixture_bytes(f"components/{name}.wasm")


HELLO = component("hello")


def assert_healthy(sandbox: Sandbox) -> None:
    """The next ordinary component run after a hostile one must succeed."""
    result = sandbox.run(HELLO)
    assert result.status is RunStatus.OK, result
    assert result.stdout == b"hello from a component\n"


def run_hostile(sandbox: Sandbox, name: str, **limits: object) -> RunResult:
    result = sandbox.run(component(name), Limits.model_validate(limits))
    assert_healthy(sandbox)
    return result


def test_hello(sandbox: Sandbox) -> None:
    result = sandbox.run(HELLO)
    assert result.status is RunStatus.OK, result
    assert result.exit_code == 0
    assert result.stdout == b"hello from a component\n"
    assert result.stderr == b""
    assert result.fuel_used > 0


def test_stdin_is_echoed(sandbox: Sandbox) -> None:
    data = bytes(range(256)) * 40
    result = sandbox.run(component("echo"), grants=Grants(stdin=data))
    assert result.status is RunStatus.OK, result
    assert result.stdout == data
    assert result.stderr == f"echoed {len(data)} bytes\n".encode()


def test_nonzero_exit_is_reported_as_one(sandbox: Sandbox) -> None:
    # main returns 3, but the preview1 adapter turns any non-zero proc_exit into exit(err).
    result = sandbox.run(component("exit3"))
    assert result.status is RunStatus.NONZERO_EXIT, result
    assert result.exit_code == 1
    assert result.stdout == b"about to fail\n"


def test_exit_with_code_keeps_the_code(sandbox: Sandbox) -> None:
    result = sandbox.run(component("exit_with_code"))
    assert result.status is RunStatus.NONZERO_EXIT, result
    assert result.exit_code == 3


def test_run_returning_err_is_nonzero_exit(sandbox: Sandbox) -> None:
    result = sandbox.run(component("run_err"))
    assert result.status is RunStatus.NONZERO_EXIT, result
    assert result.exit_code == 1


def test_infinite_loop_exhausts_fuel(sandbox: Sandbox) -> None:
    result = run_hostile(sandbox, "spin", fuel=50_000_000)
    assert result.status is RunStatus.FUEL_EXHAUSTED, result
    assert result.fuel_used == 50_000_000


def test_infinite_loop_hits_wall_time(sandbox: Sandbox) -> None:
    result = run_hostile(sandbox, "spin", fuel=10**12, wall_time_s=0.3)
    assert result.status is RunStatus.WALL_TIMEOUT, result
    assert 0.3 <= result.wall_time_s < 1.0


def test_loop_during_instantiation_is_a_run_limit_not_a_link_error(sandbox: Sandbox) -> None:
    result = run_hostile(sandbox, "start_loop", fuel=10_000_000)
    assert result.status is RunStatus.FUEL_EXHAUSTED, result
    result = run_hostile(sandbox, "start_loop", fuel=10**12, wall_time_s=0.3)
    assert result.status is RunStatus.WALL_TIMEOUT, result
    assert result.wall_time_s < 1.0


def test_cancel_stops_a_spinning_component(sandbox: Sandbox) -> None:
    token = CancelToken()
    timer = threading.Timer(0.2, token.cancel)
    timer.start()
    result = sandbox.run(component("spin"), Limits(fuel=10**12, wall_time_s=10), cancel=token)
    timer.join()
    assert result.status is RunStatus.CANCELLED, result
    assert result.wall_time_s < 1.0


def test_memory_bomb_is_held_at_the_limit(sandbox: Sandbox) -> None:
    result = run_hostile(sandbox, "malloc_bomb", fuel=10**12, memory_bytes=48 * MiB)
    # Peak memory is not observable for components (no exported memory), so the abort after
    # a refused allocation stays a trap; the limit itself held: malloc failed below 48 MiB.
    assert result.status is RunStatus.TRAP, result
    assert result.trap_kind is TrapKind.UNREACHABLE
    assert result.stderr.startswith(b"malloc failed after ")
    allocated_mib = int(result.stderr.split()[3])
    assert 1 <= allocated_mib < 48
    assert result.wall_time_s < 2.0


def test_initial_memory_over_the_limit_fails_to_start(sandbox: Sandbox) -> None:
    result = sandbox.run(HELLO, Limits(memory_bytes=8 * MiB))  # the module starts at 16 MiB
    assert result.status is RunStatus.MEMORY_LIMIT, result
    assert result.stdout == b""


def test_second_linear_memory_is_refused(sandbox: Sandbox) -> None:
    result = sandbox.run(component("two_memories"))
    assert result.status is RunStatus.UNSUPPORTED, result
    assert "linear memory" in (result.message or "")


def test_output_cap(sandbox: Sandbox) -> None:
    data = b"x" * 200_000
    result = sandbox.run(component("echo"), Limits(stdout_bytes=1000), Grants(stdin=data))
    assert result.status is RunStatus.OUTPUT_LIMIT, result
    assert result.stdout == b"x" * 1000
    assert result.stdout_truncated


def test_only_granted_files_are_visible(sandbox: Sandbox) -> None:
    result = sandbox.run(component("files"), grants=Grants(files={"input.txt": b"granted"}))
    assert result.status is RunStatus.OK, result
    out = result.stdout.decode()
    assert "READ /input.txt: granted" in out
    assert "root:" not in out
    assert "DENIED /etc/passwd" in out
    assert "DENIED /../etc/passwd" in out
    assert "DENIED ../../../../etc/passwd" in out
    assert "DENIED write /input.txt" in out  # granted files are read-only
    assert "DENIED write /tmp/out.txt" in out  # no scratch dir unless granted


def test_a_scratch_dir_is_refused_to_components(sandbox: Sandbox) -> None:
    """A component's writes go through wasmtime's own filesystem, where the quota cannot be
    enforced exactly: the grant is refused rather than given unbounded."""
    grants = Grants(files={"input.txt": b"granted"}, scratch=ScratchGrant())
    result = sandbox.run(component("files"), grants=grants)
    assert result.status is RunStatus.UNSUPPORTED, result
    assert result.message is not None and "core modules only" in result.message
    assert not sandbox.settings.scratch_root.exists()
    files_only = sandbox.run(component("files"), grants=Grants(files={"input.txt": b"granted"}))
    assert files_only.status is RunStatus.OK, files_only
    assert "DENIED write /input.txt" in files_only.stdout.decode()
    assert "DENIED write /tmp/out.txt" in files_only.stdout.decode()


def test_args_and_env_exactly_as_granted(sandbox: Sandbox) -> None:
    grants = Grants(args=["x", "two words"], env={"GREETING": "hi"})
    result = sandbox.run(component("env"), grants=grants)
    assert result.status is RunStatus.OK, result
    assert result.stdout.decode().splitlines() == [
        "ARG 0 main.wasm",
        "ARG 1 x",
        "ARG 2 two words",
        "ENV GREETING=hi",
    ]


def test_sockets_are_refused_at_link_time(sandbox: Sandbox) -> None:
    for _ in range(2):  # the second answer comes from the cached link result
        result = sandbox.run(component("net_probe"))
        assert result.status is RunStatus.LINK_ERROR, result
        assert "wasi:sockets/tcp-create-socket@0.2.0" in (result.message or "")
        assert "network" in (result.message or "")


def test_wasmtime_default_also_denies_sockets() -> None:
    """Pins the upstream default behind the refusal: no socket, even if linked."""
    engine = EngineSpec(1 << 20).build()
    linker = components.build_linker(engine)
    store = wasmtime.Store(engine)
    store.set_fuel(10**8)
    store.set_epoch_deadline(1 << 30)
    store.set_wasi(wasmtime.WasiConfig())
    probe = wasmtime.component.Component(engine, component("net_probe"))
    instance = linker.instantiate(store, probe)
    func = instance.get_func(store, "probe")
    assert func is not None
    # tcp result + 1000 * udp result; 1 is wasi:sockets error-code access-denied.
    assert func(store) == 1001


def test_unknown_import_is_unsupported(sandbox: Sandbox) -> None:
    result = sandbox.run(component("needs_magic"))
    assert result.status is RunStatus.UNSUPPORTED, result
    assert "acme:tools/magic@1.0.0" in (result.message or "")


def test_component_without_run_is_unsupported(sandbox: Sandbox) -> None:
    result = sandbox.run(component("no_run"))
    assert result.status is RunStatus.UNSUPPORTED, result
    assert "wasi:cli/run" in (result.message or "")


@pytest.mark.parametrize(
    ("cause", "code"),
    [
        ("wasm trap: call stack exhausted", wasmtime.TrapCode.STACK_OVERFLOW),
        ("wasm trap: all fuel consumed by WebAssembly", wasmtime.TrapCode.OUT_OF_FUEL),
        ("wasm trap: integer divide by zero", wasmtime.TrapCode.INTEGER_DIVISION_BY_ZERO),
    ],
)
def test_component_errors_become_traps(cause: str, code: wasmtime.TrapCode) -> None:
    text = f"error while executing at wasm backtrace:\n 0: x\n\nCaused by:\n    {cause}\n"
    error = wasmtime.WasmtimeError(text)
    trap = components.as_trap(error)
    assert isinstance(trap, wasmtime.Trap)
    assert trap.trap_code == code


def test_other_errors_stay_errors() -> None:
    error = wasmtime.WasmtimeError("Caused by:\n    something else entirely")
    assert components.as_trap(error) is error


def test_link_failure_past_the_name_check_is_unsupported() -> None:
    """If an import got past the name check, wasmtime's own link error still names it."""
    engine = EngineSpec(1 << 20).build()
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    magic = wasmtime.component.Component(engine, component("needs_magic"))
    with pytest.raises(wasmtime.WasmtimeError) as caught:
        components.build_linker(engine).instantiate(store, magic)
    refusal = components.instantiate_refusal(caught.value)
    assert refusal is not None
    assert refusal[0] is RunStatus.UNSUPPORTED
    assert "acme:tools/magic@1.0.0" in refusal[3]
