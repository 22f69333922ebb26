"""No run holds a lane past its wall limit plus the backstop grace, whatever it submits.

Core modules check their fuel and interrupt word at every function entry, loop header and
call return (the fuel rewriter), so they stop at the deadline. Components are metered by
wasmtime, whose checks miss code between them and blocking host calls; they run in
executor processes that are killed at wall limit + ``backstop_grace_s`` (docs: README,
security). These tests are the reviewed attacks: long straight-line tails after returns,
and sleeps in ``wasi:io/poll`` from a component built by a real toolchain (zig +
wasm-tools + the preview1 adapter: tests/fixtures/components/build.sh).
"""

from __future__ import annotations

import threading
import time

import pytest

from sandboxes.runtime.control import CancelToken
from sandboxes.runtime.sandbox import Sandbox
from sandboxes.schema import Limits, RunStatus
from tests import wat_modules as W
from tests.conftest import fixture_bytes

SLEEP = fixture_bytes("components/sleep.wasm")  # prints "sleeping", then sleep(60)
HELLO = fixture_bytes("components/hello.wasm")
# Slack for process scheduling and result transfer on a loaded 2-core machine.
MARGIN_S = 2.0


def tails_component(depth: int, tail: int) -> str:
    """A component that recurses ``depth`` deep and runs ``tail`` dependent multiply-adds
    after each call returns: code no epoch or fuel check of wasmtime's sees (a function
    entry and no loop), ~depth x tail steps in all."""
    step = "(local.set $x (i32.add (i32.mul (local.get $x) (i32.const 31)) (local.get $d)))\n"
    return f"""(component
  (core module $m
    (memory (export "memory") 1)
    (global $g (mut i32) (i32.const 0))
    (func $down (param $d i32) (local $x i32)
      (if (i32.eqz (local.get $d)) (then (return)))
      (call $down (i32.sub (local.get $d) (i32.const 1)))
      (local.set $x (global.get $g))
      {step * tail}
      (global.set $g (local.get $x)))
    (func (export "run") (result i32) (call $down (i32.const {depth})) (i32.const 0)))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $run-instance (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $run-instance)))"""


# ~6 s of unchecked work on this machine (2.5 s for 15,000 steps in-process): far past
# the limit + grace + margin, so only the backstop can make the test pass.
TAILS = tails_component(150_000, 40_000)
TAILS_LIMITS = Limits(wall_time_s=0.5, stack_bytes="64MiB", fuel=10**12)


def grace(sandbox: Sandbox) -> float:
    return sandbox.settings.backstop_grace_s


def test_unchecked_tails_in_a_component_stop_at_the_backstop(sandbox: Sandbox) -> None:
    sandbox.prepare(TAILS, TAILS_LIMITS)  # compile first: compile time is not run time
    kills = sandbox.executors.kills if sandbox.executors else 0
    started = time.monotonic()
    result = sandbox.run(TAILS, TAILS_LIMITS)
    elapsed = time.monotonic() - started
    assert result.status is RunStatus.WALL_TIMEOUT, result
    assert elapsed < TAILS_LIMITS.wall_time_s + grace(sandbox) + MARGIN_S, elapsed
    assert sandbox.executors is not None and sandbox.executors.kills == kills + 1


def test_a_sleep_in_wasi_io_poll_ends_at_the_wall_limit_with_its_output(
        sandbox: Sandbox) -> None:
    sandbox.prepare(SLEEP, Limits())
    started = time.monotonic()
    result = sandbox.run(SLEEP, Limits(wall_time_s=1))
    elapsed = time.monotonic() - started
    assert result.status is RunStatus.WALL_TIMEOUT, result
    assert result.stdout == b"sleeping\n"  # written before the sleep, kept
    assert elapsed < 1 + grace(sandbox) + MARGIN_S, elapsed


def test_a_cancel_ends_a_sleeping_component(sandbox: Sandbox) -> None:
    sandbox.prepare(SLEEP, Limits())
    token = CancelToken()
    timer = threading.Timer(0.3, token.cancel)
    timer.start()
    started = time.monotonic()
    result = sandbox.run(SLEEP, Limits(wall_time_s=60), cancel=token)
    elapsed = time.monotonic() - started
    timer.join()
    assert result.status is RunStatus.CANCELLED, result
    assert elapsed < 0.3 + grace(sandbox) + MARGIN_S, elapsed


def test_a_component_that_ends_in_time_is_not_killed(sandbox: Sandbox) -> None:
    assert sandbox.executors is not None
    kills = sandbox.executors.kills
    short = tails_component(1000, 100)
    result = sandbox.run(short, TAILS_LIMITS)
    assert result.status is RunStatus.OK, result
    assert sandbox.executors.kills == kills


def test_other_runs_are_untouched_when_the_backstop_fires(sandbox: Sandbox) -> None:
    """While one lane's component is killed, the other lanes' runs (components in their
    own executors, core modules in process) each finish once, correctly."""
    sandbox.prepare(SLEEP, Limits())
    hostile: dict[str, RunStatus] = {}

    def attack() -> None:
        hostile["status"] = sandbox.run(SLEEP, Limits(wall_time_s=1)).status

    thread = threading.Thread(target=attack)
    thread.start()
    others = []
    deadline = time.monotonic() + 1 + grace(sandbox) + 0.5  # past the kill
    while time.monotonic() < deadline or len(others) < 4:
        others.append(sandbox.run(HELLO))
        others.append(sandbox.run(W.HELLO))
    thread.join()
    assert hostile["status"] is RunStatus.WALL_TIMEOUT
    assert {r.status for r in others} == {RunStatus.OK}
    assert {r.stdout for r in others} == {b"hello from a component\n", b"hello\n"}


@pytest.mark.parametrize("wall", [0.3, 1.0])
def test_core_modules_stop_at_the_deadline_without_a_backstop(sandbox: Sandbox,
                                                              wall: float) -> None:
    """The same unchecked-tail shape as a core module: the rewriter's checks after every
    call return stop it at the deadline itself."""
    core = TAILS.split("(core module $m", 1)[1].split("(core instance", 1)[0]
    core = "(module" + core.replace('(func (export "run") (result i32)', '(func (export "_start")')
    core = core.replace("(i32.const 0)))\n  ", "))\n  ", 1).rstrip()
    result = sandbox.run(core, TAILS_LIMITS.model_copy(update={"wall_time_s": wall}))
    assert result.status is RunStatus.WALL_TIMEOUT, result
    assert result.wall_time_s < wall + 0.5, result.wall_time_s
