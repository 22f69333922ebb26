"""Property: whatever the limits and the guest's appetite, no run exceeds its limits."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandboxes.runtime.sandbox import Sandbox
from sandboxes.schema import Grants, Limits, RunStatus

# Reads (iterations, pages, chunks) as three u32 from stdin, then: grows memory by `pages`
# one page at a time, writes `chunks` x 1000 bytes to stdout, and spins `iterations` times.
GREEDY = """(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $i i32)
    (i32.store (i32.const 0) (i32.const 32)) (i32.store (i32.const 4) (i32.const 12))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (local.set $i (i32.load (i32.const 36)))
    (block $done (loop $grow
      (br_if $done (i32.eqz (local.get $i)))
      (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))
      (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br $grow)))
    (i32.store (i32.const 16) (i32.const 1024)) (i32.store (i32.const 20) (i32.const 1000))
    (local.set $i (i32.load (i32.const 40)))
    (block $done (loop $out
      (br_if $done (i32.eqz (local.get $i)))
      (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
      (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br $out)))
    (local.set $i (i32.load (i32.const 32)))
    (block $done (loop $spin
      (br_if $done (i32.eqz (local.get $i)))
      (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br $spin)))))"""

PAGE = 65536
# How late a wall-clock stop may land: the 5 ms tick, plus whatever holds the guest's
# thread or the ticker off the CPU or the GIL. On a loaded 2-core CI box, late in a long
# suite, one run stopped 0.52 s after a 0.035 s limit (a full collection of the test
# process's objects inside a host call is one such pause): the margin is for that box.
TICK_SLACK_S = 1.0


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    iterations=st.integers(0, 50_000_000),
    pages=st.integers(0, 400),
    chunks=st.integers(0, 300),
    fuel=st.integers(1_000, 200_000_000),
    memory_pages=st.integers(1, 300),
    stdout_bytes=st.integers(0, 200_000),
    wall_time_s=st.floats(0.01, 0.5),
)
def test_random_limits_are_never_exceeded(
    sandbox: Sandbox,
    iterations: int,
    pages: int,
    chunks: int,
    fuel: int,
    memory_pages: int,
    stdout_bytes: int,
    wall_time_s: float,
) -> None:
    limits = Limits(
        fuel=fuel,
        memory_bytes=memory_pages * PAGE,
        stdout_bytes=stdout_bytes,
        wall_time_s=wall_time_s,
    )
    stdin = struct.pack("<III", iterations, pages, chunks)
    result = sandbox.run(GREEDY, limits, Grants(stdin=stdin))
    assert result.status not in (RunStatus.INTERNAL_ERROR, RunStatus.INVALID_MODULE), result
    assert result.fuel_used <= fuel
    assert result.memory_peak_bytes <= memory_pages * PAGE
    assert len(result.stdout) <= stdout_bytes
    assert result.wall_time_s <= wall_time_s + TICK_SLACK_S
    if result.status is RunStatus.OK:
        assert len(result.stdout) == chunks * 1000
        assert result.memory_peak_bytes == (1 + pages) * PAGE
    if chunks * 1000 > stdout_bytes and result.status is not RunStatus.OUTPUT_LIMIT:
        # It must have been stopped before writing everything.
        assert result.status in (
            RunStatus.FUEL_EXHAUSTED, RunStatus.WALL_TIMEOUT, RunStatus.MEMORY_LIMIT,
            RunStatus.TRAP,
        )


# Writes `chunks` x 1000 bytes to stderr, then grows its table by `rows` one at a time.
GREEDY_STDERR_TABLE = """(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (func (export "_start") (local $i i32)
    (i32.store (i32.const 0) (i32.const 32)) (i32.store (i32.const 4) (i32.const 8))
    (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 16) (i32.const 1024)) (i32.store (i32.const 20) (i32.const 1000))
    (local.set $i (i32.load (i32.const 32)))
    (block $done (loop $out
      (br_if $done (i32.eqz (local.get $i)))
      (drop (call $write (i32.const 2) (i32.const 16) (i32.const 1) (i32.const 24)))
      (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br $out)))
    (local.set $i (i32.load (i32.const 36)))
    (block $done (loop $grow
      (br_if $done (i32.eqz (local.get $i)))
      (if (i32.eq (table.grow $t (ref.null func) (i32.const 1)) (i32.const -1))
        (then unreachable))
      (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br $grow)))))"""


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    chunks=st.integers(0, 300),
    rows=st.integers(0, 3000),
    stderr_bytes=st.integers(0, 200_000),
    table_elements=st.integers(1, 2000),
)
def test_random_stderr_and_table_limits_are_never_exceeded(
    sandbox: Sandbox, chunks: int, rows: int, stderr_bytes: int, table_elements: int
) -> None:
    limits = Limits(stderr_bytes=stderr_bytes, table_elements=table_elements)
    result = sandbox.run(GREEDY_STDERR_TABLE, limits,
                         Grants(stdin=struct.pack("<II", chunks, rows)))
    assert len(result.stderr) <= stderr_bytes
    wants_output = chunks * 1000 > stderr_bytes
    wants_table = 1 + rows > table_elements
    if wants_output:
        assert result.status is RunStatus.OUTPUT_LIMIT and result.stderr_truncated
    elif wants_table:
        assert result.status is RunStatus.TRAP, result  # table.grow refused -> unreachable
    else:
        assert result.status is RunStatus.OK and len(result.stderr) == chunks * 1000
