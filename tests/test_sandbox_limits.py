"""Limits at their edges: the schema's bounds, caps on compiling, the stack, scratch
quotas, output on wasmtime's own write path, cleanup that never follows a guest's symlink,
and an internal error that stays a result. Real wasmtime throughout."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pydantic
import pytest

from sandboxes.compilation.modules import MAX_WAT_BYTES
from sandboxes.runtime.sandbox import Sandbox
from sandboxes.schema import (
    LIMIT_BOUNDS,
    MAX_ARGS,
    MAX_ENV,
    MAX_FILES,
    MAX_SCRATCH_BYTES,
    Grants,
    Limits,
    MiB,
    RunStatus,
    ScratchGrant,
    TrapKind,
)
from sandboxes.settings import Settings
from tests import wat_modules as W
from tests.test_sandbox_hostile import _many_functions, assert_healthy

_FD_WRITE = (
    '(import "wasi_snapshot_preview1" "fd_write" '
    "(func $fd_write (param i32 i32 i32 i32) (result i32)))"
)


# -- the schema's bounds --------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(LIMIT_BOUNDS))
def test_every_limit_has_a_default_and_a_hard_maximum(name: str) -> None:
    bound = LIMIT_BOUNDS[name]
    assert getattr(Limits(), name) == bound.default
    assert bound.minimum <= bound.default <= bound.maximum
    assert getattr(Limits.model_validate({name: bound.maximum}), name) == bound.maximum
    with pytest.raises(pydantic.ValidationError):
        Limits.model_validate({name: bound.maximum * 2 + 1})
    with pytest.raises(pydantic.ValidationError):
        Limits.model_validate({name: -1})


def test_limits_forbid_unknown_fields() -> None:
    with pytest.raises(pydantic.ValidationError):
        Limits.model_validate({"fuell": 10})


def test_grant_caps() -> None:
    with pytest.raises(pydantic.ValidationError):
        Grants(args=["a"] * (MAX_ARGS + 1))
    with pytest.raises(pydantic.ValidationError):
        Grants(env={f"V{i}": "x" for i in range(MAX_ENV + 1)})
    with pytest.raises(pydantic.ValidationError):
        Grants(files={f"f{i}": b"" for i in range(MAX_FILES + 1)})
    with pytest.raises(pydantic.ValidationError):
        ScratchGrant(quota_bytes=MAX_SCRATCH_BYTES + 1)
    for bad in ("../x", "/etc/passwd", ".hidden", "a//b", "a/../b"):
        with pytest.raises(pydantic.ValidationError):
            Grants(files={bad: b""})
    with pytest.raises(pydantic.ValidationError):
        Grants(env={"A B": "x"})
    with pytest.raises(pydantic.ValidationError):
        Grants(args=["a\0b"])


# -- compiling is bounded -------------------------------------------------------------------
def test_compile_time_cap_is_enforced(tmp_path: Path) -> None:
    sandbox = Sandbox(Settings(data_dir=tmp_path, compile_timeout_s=0.05))
    try:
        started = time.monotonic()
        result = sandbox.run(_many_functions(1_000_000))
        assert result.status is RunStatus.INVALID_MODULE, result.status
        assert result.message is not None and "compile time limit" in result.message
        assert time.monotonic() - started < 10
        assert_healthy(sandbox)  # the helper was replaced; small modules still compile
        # The same module again is refused at once, without tying up the compiler.
        started = time.monotonic()
        again = sandbox.run(_many_functions(1_000_000))
        assert again.status is RunStatus.INVALID_MODULE and again.message == result.message
        assert time.monotonic() - started < 1.0
    finally:
        sandbox.compiler.close()


def test_compile_memory_cap_is_enforced(tmp_path: Path) -> None:
    sandbox = Sandbox(Settings(data_dir=tmp_path, compile_timeout_s=30,
                               compile_memory_bytes=600 * MiB))
    try:
        result = sandbox.run(_many_functions(1_000_000))
        assert result.status is RunStatus.INVALID_MODULE, result.status
        assert result.message is not None and "compil" in result.message
        assert_healthy(sandbox)
    finally:
        sandbox.compiler.close()


def test_wat_text_is_capped_before_parsing(sandbox: Sandbox) -> None:
    huge = "(module " + " " * MAX_WAT_BYTES + ")"
    started = time.monotonic()
    result = sandbox.run(huge)
    assert result.status is RunStatus.INVALID_MODULE
    assert result.message is not None and "binary wasm" in result.message
    assert time.monotonic() - started < 1.0


# -- the stack ------------------------------------------------------------------------------
@pytest.mark.parametrize("stack", ["minimum", "default", "maximum"])
def test_deep_recursion_at_every_stack_size_and_on_a_thread(sandbox: Sandbox,
                                                            stack: str) -> None:
    size = int(getattr(LIMIT_BOUNDS["stack_bytes"], stack))
    results = []

    def recurse() -> None:
        results.append(sandbox.run(W.RECURSE, Limits(stack_bytes=size)))

    recurse()
    worker = threading.Thread(target=recurse)  # workers run guests on lane threads
    worker.start()
    worker.join()
    for result in results:
        assert (result.status, result.trap_kind) == (RunStatus.TRAP, TrapKind.STACK_OVERFLOW)
    assert_healthy(sandbox)


# -- memory: what is and is not blamed on the limit ------------------------------------------
NEAR_LIMIT_THEN_DIV_ZERO = """(module (memory (export "memory") 1)
  (func (export "_start")
    (drop (memory.grow (i32.const 60)))
    (drop (i32.div_s (i32.const 1) (i32.sub (memory.size) (i32.const 61))))))"""


def test_a_real_trap_near_the_memory_limit_stays_a_trap(sandbox: Sandbox) -> None:
    result = sandbox.run(NEAR_LIMIT_THEN_DIV_ZERO, Limits(memory_bytes=64 * 65536))
    assert result.memory_peak_bytes == 61 * 65536  # within the last quarter of the limit
    assert (result.status, result.trap_kind) == (
        RunStatus.TRAP, TrapKind.INTEGER_DIVISION_BY_ZERO)


def test_refused_growth_is_a_memory_limit(sandbox: Sandbox) -> None:
    result = sandbox.run(W.GROW_PAGE_BY_PAGE, Limits(memory_bytes=64 * 65536))
    assert result.status is RunStatus.MEMORY_LIMIT
    assert result.memory_peak_bytes == 64 * 65536


# -- output with a scratch dir granted --------------------------------------------------------
def test_one_huge_write_with_scratch_is_capped(sandbox: Sandbox) -> None:
    result = sandbox.run(W.HUGE_WRITE, Limits(stdout_bytes=1 * MiB),
                         Grants(scratch=ScratchGrant()))
    assert result.status is RunStatus.OUTPUT_LIMIT
    assert len(result.stdout) == 1 * MiB and result.stdout_truncated


def recurse_to(depth: int) -> str:
    return f"""(module
  (func $f (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
      (else (i32.add (i32.const 1) (call $f (i32.sub (local.get 0) (i32.const 1)))))))
  (func (export "_start") (drop (call $f (i32.const {depth})))))"""


@pytest.mark.parametrize(("depth", "stack", "status"), [
    (100_000, None, RunStatus.OK),  # the default stack: what a judge's DFS needs
    (1_000_000, int(LIMIT_BOUNDS["stack_bytes"].maximum), RunStatus.OK),
    (3_000_000, int(LIMIT_BOUNDS["stack_bytes"].maximum), RunStatus.TRAP),
])
def test_recursion_depth_the_stack_limits_allow(sandbox: Sandbox, depth: int,
                                                stack: int | None, status: RunStatus) -> None:
    limits = Limits() if stack is None else Limits(stack_bytes=stack)
    results = []

    def go() -> None:
        results.append(sandbox.run(recurse_to(depth), limits))

    go()  # pytest's main thread
    plain = threading.Thread(target=go)  # a thread with the default (small) stack: hops
    plain.start()
    plain.join()
    for result in results:
        assert result.status is status, (result.status, result.message)
        if status is RunStatus.TRAP:
            assert result.trap_kind is TrapKind.STACK_OVERFLOW
    assert_healthy(sandbox)


# -- the compile helper lives as long as its process, not as the thread that started it ---
def test_compile_helper_outlives_the_thread_that_started_it(tmp_path: Path) -> None:
    sandbox = Sandbox(Settings(data_dir=tmp_path))
    try:
        starter = threading.Thread(target=lambda: sandbox.run(W.hello("first\n")))
        starter.start()
        starter.join()  # the thread that spawned the helper is gone
        assert len(sandbox.compiler._idle) == 1
        helper = sandbox.compiler._idle[0].proc
        time.sleep(1.0)
        assert helper.poll() is None, "the helper died with its starting thread"
        assert sandbox.run(W.hello("second\n")).stdout == b"second\n"
        assert [h.proc for h in sandbox.compiler._idle] == [helper]  # it did the second too
    finally:
        sandbox.compiler.close()


def test_compile_helper_exits_when_its_process_dies(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from sandboxes.runtime.sandbox import Sandbox\n"
        "from sandboxes.settings import Settings\n"
        f"sb = Sandbox(Settings(data_dir=Path({str(tmp_path)!r})))\n"
        "sb.run('(module (func (export \"_start\")))')\n"
        "print(sb.compiler._idle[0].proc.pid, flush=True)\n"
        "os._exit(0)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True, cwd=Path(__file__).resolve().parents[1])
    helper = int(out.stdout.split()[-1])
    deadline = time.monotonic() + 5
    while Path(f"/proc/{helper}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{helper}").exists() or (
        Path(f"/proc/{helper}/stat").read_text().split()[2] == "Z"
    ), "the compile helper outlived its process"
