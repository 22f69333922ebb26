"""The scratch directory cannot be used to fill the worker's disk or memory, starve its
descriptors, or break clean-up: the attacks of the hardening review, each as a module.

Scratch lives in memory (``sandboxes.wasi.memfs``): every byte and entry is charged before
it is written, so the quota is exact, and nothing exists on the host to leave behind.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from sandboxes.runtime.sandbox import Sandbox
from sandboxes.schema import MAX_SCRATCH_ENTRIES, Grants, Limits, RunStatus, ScratchGrant
from sandboxes.wasi.descriptors import MAX_OPEN_FDS, RunFiles
from tests import wat_modules as W

KiB = 1024
MiB = 1024 * KiB
LIMITS = Limits(fuel=10**10, wall_time_s=30, memory_bytes="128MiB")


def scratch_module(body: str, data: str = "") -> str:
    """A module with helpers over the scratch preopen (fd 3): names live at 1024+, the
    write buffer at 65536 (64 KiB of 'x'), the returned fd at 16."""
    return f"""(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory"
    (func $mkdir (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file"
    (func $unlink (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size"
    (func $truncate (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 3)
  (data (i32.const 1024) "{"a" * 255}")
  (data (i32.const 1536) "f")
  (data (i32.const 1540) "g")
  (data (i32.const 1544) "d")
  (data (i32.const 1548) ".")
  (data (i32.const 1552) "done\\n")
  {data}
  ;; open (fd, name ptr, len, oflags) with read+write rights: the new fd, or -errno
  (func $open (param $fd i32) (param $p i32) (param $n i32) (param $o i32) (result i32)
    (local $e i32) (local $r i64)
    ;; all rights, but no fd_write on a directory (EISDIR, as Linux)
    (local.set $r (select (i64.const 0x3fffffbf) (i64.const 0x3fffffff)
      (i32.and (local.get $o) (i32.const 2))))
    (local.set $e (call $path_open (local.get $fd) (i32.const 0) (local.get $p) (local.get $n)
      (local.get $o) (local.get $r) (local.get $r) (i32.const 0)
      (i32.const 16)))
    (if (result i32) (local.get $e) (then (i32.sub (i32.const 0) (local.get $e)))
      (else (i32.load (i32.const 16)))))
  ;; write n bytes of 'x' to fd: the errno
  (func $write (param $fd i32) (param $n i32) (result i32)
    (i32.store (i32.const 0) (i32.const 65536)) (i32.store (i32.const 4) (local.get $n))
    (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8)))
  (func $say_done (i32.store (i32.const 0) (i32.const 1552)) (i32.store (i32.const 4) (i32.const 5))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func $fill (memory.fill (i32.const 65536) (i32.const 120) (i32.const 65536)))
  (func (export "_start") (local $fd i32) (local $i i32) (local $e i32) (local $prev i32)
    (call $fill)
    {body}))"""


def no_scratch_on_host(sandbox: Sandbox) -> None:
    assert not sandbox.settings.scratch_root.exists()
    leftovers = [p for p in sandbox.settings.data_dir.rglob("*")
                 if "artifacts" not in p.parts and "compiled" not in p.parts]
    assert [p for p in leftovers if p.is_file() and "files" not in p.parts] == []


# 17 directories of 255-byte names, each opened from the one above, then 1 GiB written in
# 64 KiB blocks at the bottom: once 1 GiB under a 1 MiB quota, status ok.
DEEP_PATH_WRITER = scratch_module("""
    (local.set $fd (i32.const 3))
    (loop $down
      (drop (call $mkdir (local.get $fd) (i32.const 1024) (i32.const 255)))
      (local.set $fd (call $open (local.get $fd) (i32.const 1024) (i32.const 255) (i32.const 2)))
      (if (i32.lt_s (local.get $fd) (i32.const 0)) (then (call $exit (i32.const 90))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $down (i32.lt_u (local.get $i) (i32.const 17))))
    (local.set $fd (call $open (local.get $fd) (i32.const 1536) (i32.const 1) (i32.const 1)))
    (local.set $i (i32.const 0))
    (loop $fill
      (drop (call $write (local.get $fd) (i32.const 65536)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 16384))))
    (call $say_done)""")


def test_deep_paths_cannot_hide_bytes_from_the_quota(sandbox: Sandbox) -> None:
    result = sandbox.run(DEEP_PATH_WRITER, LIMITS, Grants(scratch=ScratchGrant(quota_bytes=MiB)))
    assert result.status is RunStatus.SCRATCH_LIMIT, result
    assert result.stdout == b""  # stopped at the first write past the quota
    no_scratch_on_host(sandbox)


# Opens the scratch dir until refused; exits with (opened * 100 + errno).
FD_HOG = scratch_module("""
    (loop $more
      (local.set $fd (call $open (i32.const 3) (i32.const 1548) (i32.const 1) (i32.const 2)))
      (if (i32.ge_s (local.get $fd) (i32.const 0)) (then
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $more (i32.lt_u (local.get $i) (i32.const 20000))))))
    (call $exit (i32.add (i32.mul (local.get $i) (i32.const 100))
                         (i32.sub (i32.const 0) (local.get $fd))))""")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_guest_cannot_exhaust_descriptors(sandbox: Sandbox) -> None:
    before = open_fds()
    result = sandbox.run(FD_HOG, LIMITS, Grants(scratch=ScratchGrant()))
    assert result.status is RunStatus.NONZERO_EXIT, result
    opened, errno = divmod(result.exit_code or 0, 100)
    assert opened == MAX_OPEN_FDS - 4  # stdio and the preopen are 4 of the table's slots
    assert errno == 33  # EMFILE
    assert open_fds() <= before + 2  # no host descriptor per guest descriptor
    # and the next runs are unaffected, in this process and its other lanes
    ok = sandbox.run(W.HELLO)
    assert ok.status is RunStatus.OK and ok.stdout == b"hello\n"


def test_descriptors_are_per_run_while_runs_overlap(sandbox: Sandbox) -> None:
    """Two lanes at once: one hogs descriptors, the other opens files normally."""
    results: dict[str, RunStatus] = {}

    def hog() -> None:
        results["hog"] = sandbox.run(FD_HOG, LIMITS, Grants(scratch=ScratchGrant())).status

    thread = threading.Thread(target=hog)
    thread.start()
    normal = sandbox.run(DEEP_TREE(20), LIMITS, Grants(scratch=ScratchGrant()))
    thread.join()
    assert results["hog"] is RunStatus.NONZERO_EXIT
    assert normal.status is RunStatus.OK and normal.stdout == b"done\n", normal


def DEEP_TREE(depth: int) -> str:  # noqa: N802 - a module, named like the others
    """Makes a chain of ``depth`` directories "d/d/d/...", closing each fd it leaves."""
    return scratch_module(f"""
    (local.set $fd (i32.const 3))
    (loop $down
      (local.set $e (call $mkdir (local.get $fd) (i32.const 1544) (i32.const 1)))
      (if (local.get $e) (then (call $exit (i32.add (i32.const 1000) (local.get $e)))))
      (local.set $prev (local.get $fd))
      (local.set $fd (call $open (local.get $fd) (i32.const 1544) (i32.const 1) (i32.const 2)))
      (if (i32.lt_s (local.get $fd) (i32.const 0)) (then (call $exit (i32.const 91))))
      (if (i32.ne (local.get $prev) (i32.const 3)) (then (drop (call $close (local.get $prev)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $down (i32.lt_u (local.get $i) (i32.const {depth}))))
    (call $say_done)""")


def test_a_deep_tree_is_cleaned_up_and_keeps_its_output(sandbox: Sandbox) -> None:
    result = sandbox.run(DEEP_TREE(1500), LIMITS, Grants(scratch=ScratchGrant()))
    assert result.status is RunStatus.OK, result
    assert result.stdout == b"done\n"
    no_scratch_on_host(sandbox)


def test_entries_past_the_bound_stop_the_run(sandbox: Sandbox) -> None:
    result = sandbox.run(DEEP_TREE(MAX_SCRATCH_ENTRIES + 5), LIMITS,
                         Grants(scratch=ScratchGrant()))
    assert result.status is RunStatus.SCRATCH_LIMIT, result
    assert result.exit_code is None


def writes(total: int, block: int) -> str:
    """Create /tmp/f and write ``total`` bytes in ``block``-byte writes; exit with the errno
    of the first failing write (0 when all succeeded)."""
    return scratch_module(f"""
    (local.set $fd (call $open (i32.const 3) (i32.const 1536) (i32.const 1) (i32.const 1)))
    (loop $more
      (if (i32.lt_u (local.get $i) (i32.const {total})) (then
        (local.set $e (call $write (local.get $fd) (i32.const {block})))
        (if (local.get $e) (then (call $exit (local.get $e))))
        (local.set $i (i32.add (local.get $i) (i32.const {block})))
        (br $more))))
    (call $exit (i32.const 0))""")


@pytest.mark.parametrize("block", [1, 4096, 65536])
def test_the_quota_is_exact(sandbox: Sandbox, block: int) -> None:
    quota = 64 * KiB
    fits = sandbox.run(writes(quota, min(block, quota)), LIMITS,
                       Grants(scratch=ScratchGrant(quota_bytes=quota)))
    assert fits.status is RunStatus.OK, fits
    over = sandbox.run(writes(quota + block, block), LIMITS,
                       Grants(scratch=ScratchGrant(quota_bytes=quota)))
    assert over.status is RunStatus.SCRATCH_LIMIT, over


HUGE_TRUNCATE = scratch_module("""
    (local.set $fd (call $open (i32.const 3) (i32.const 1536) (i32.const 1) (i32.const 1)))
    (call $exit (call $truncate (local.get $fd) (i64.const 0x7fffffffffff)))""")


def test_a_huge_sparse_file_is_refused_before_any_allocation(sandbox: Sandbox) -> None:
    result = sandbox.run(HUGE_TRUNCATE, LIMITS, Grants(scratch=ScratchGrant()))
    assert result.status is RunStatus.SCRATCH_LIMIT, result


# Writes a full quota to f, keeps it open, unlinks it, then writes 1 byte to g.
UNLINKED_BUT_OPEN = scratch_module("""
    (local.set $fd (call $open (i32.const 3) (i32.const 1536) (i32.const 1) (i32.const 1)))
    (drop (call $write (local.get $fd) (i32.const 65536)))
    (drop (call $unlink (i32.const 3) (i32.const 1536) (i32.const 1)))
    (local.set $prev (call $open (i32.const 3) (i32.const 1540) (i32.const 1) (i32.const 1)))
    (call $exit (call $write (local.get $prev) (i32.const 1)))""")


def test_an_unlinked_open_file_still_counts(sandbox: Sandbox) -> None:
    result = sandbox.run(UNLINKED_BUT_OPEN, LIMITS,
                         Grants(scratch=ScratchGrant(quota_bytes=64 * KiB)))
    assert result.status is RunStatus.SCRATCH_LIMIT, result
    closed_first = UNLINKED_BUT_OPEN.replace(
        "(drop (call $unlink", "(drop (call $close (local.get $fd))) (drop (call $unlink"
    )
    result = sandbox.run(closed_first, LIMITS, Grants(scratch=ScratchGrant(quota_bytes=64 * KiB)))
    assert result.status is RunStatus.OK, result


def test_a_failing_host_call_fails_closed(sandbox: Sandbox,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in a WASI function must stop the run as internal_error, never let it go on
    as if the call had worked (and never raise out of Sandbox.run)."""

    def broken(*_args: object) -> None:
        raise RuntimeError("injected fault")

    monkeypatch.setattr(RunFiles, "path_open", broken)
    result = sandbox.run(writes(10, 10), LIMITS, Grants(scratch=ScratchGrant()))
    assert result.status is RunStatus.INTERNAL_ERROR, result
    monkeypatch.undo()
    assert sandbox.run(W.HELLO).status is RunStatus.OK


def test_stale_scratch_dirs_of_older_workers_are_removed_at_start(tmp_path: Path) -> None:
    from sandboxes.settings import Settings

    stale = tmp_path / "scratch" / "scratch-dead-run"
    (stale / "deep").mkdir(parents=True)
    (stale / "deep" / "big").write_bytes(b"x" * 4096)
    sandbox = Sandbox(Settings(data_dir=tmp_path))
    try:
        assert not (tmp_path / "scratch").exists()
    finally:
        sandbox.compiler.close()
