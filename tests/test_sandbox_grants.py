"""Grants: the guest sees exactly what was granted, and no host file through any path."""

from __future__ import annotations

import uuid
from pathlib import Path

from sandboxes.runtime.sandbox import Sandbox
from sandboxes.schema import Grants, Limits, RunStatus, ScratchGrant
from tests.conftest import fixture_bytes

FS_ESCAPE = fixture_bytes("fs_escape.wasm")
ENV_ARGS = fixture_bytes("env_args.wasm")


def lines(out: bytes, prefix: str) -> list[str]:
    return [line for line in out.decode().splitlines() if line.startswith(prefix)]


def test_no_filesystem_at_all_without_grants(sandbox: Sandbox) -> None:
    result = sandbox.run(FS_ESCAPE)
    assert result.status is RunStatus.OK
    assert lines(result.stdout, "OPEN") == []
    assert b"root:" not in result.stdout
    assert lines(result.stdout, "LIST") == []


def test_escapes_denied_with_files_and_scratch(sandbox: Sandbox, tmp_path: Path) -> None:
    sentinel = tmp_path / "HOST_SENTINEL"
    sentinel.write_text("host data")
    grants = Grants(files={"input.txt": b"granted data\n"}, scratch=ScratchGrant())
    result = sandbox.run(FS_ESCAPE, grants=grants)
    assert result.status is RunStatus.OK, result
    out = result.stdout.decode()
    assert "root:" not in out and "host data" not in out
    opened = {line.split()[2] for line in lines(result.stdout, "OPEN read")}
    assert opened == {"/input.txt", "input.txt"}  # only the granted file, by either name
    written = {line.split()[2] for line in lines(result.stdout, "OPEN write")}
    # read-only files stay read-only; no escape by ..; links cannot be made, so the
    # fixture's write "through" its link creates a plain file inside /tmp
    assert written == {"/tmp/ok.txt", "/tmp/rel_link"}
    assert "symlink abs rc=-1 errno=63" in out and "symlink rel rc=-1 errno=63" in out
    assert sorted(x.split()[2] for x in lines(result.stdout, "LIST /")) == [
        ".", "..", "input.txt"
    ]
    assert sentinel.read_text() == "host data"


def test_core_runs_create_nothing_on_the_host(sandbox: Sandbox) -> None:
    """Granted files and the scratch dir of a core module live in memory only."""
    data_dir = sandbox.settings.data_dir
    before = {p for p in data_dir.rglob("*") if "artifacts" not in p.parts}
    result = sandbox.run(FS_ESCAPE, grants=Grants(files={"input.txt": b"x"},
                                                  scratch=ScratchGrant()))
    assert result.status is RunStatus.OK, result
    assert "OPEN write /tmp/ok.txt" in result.stdout.decode()
    after = {p for p in data_dir.rglob("*") if "artifacts" not in p.parts}
    assert after - before == set()


def test_granted_files_stay_intact_and_runs_stay_separate(sandbox: Sandbox) -> None:
    """A guest can change neither its granted files nor what another run sees."""
    data = f"granted data {uuid.uuid4()}\n".encode()
    for _ in range(2):
        result = sandbox.run(FS_ESCAPE, grants=Grants(files={"input.txt": data}))
        assert result.status is RunStatus.OK
        assert lines(result.stdout, "OPEN write") == []  # no writable preopen at all
        assert data.strip() in result.stdout
    other = sandbox.run(FS_ESCAPE, grants=Grants(files={"other.txt": b"o"}))
    listed = sorted(x.split()[2] for x in lines(other.stdout, "LIST /"))
    assert listed == [".", "..", "other.txt"]  # never the first run's input.txt


def test_scratch_quota(sandbox: Sandbox) -> None:
    # Writes 4 KiB blocks to /tmp/big until stopped.
    wat = """(module
      (import "wasi_snapshot_preview1" "path_open"
        (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (data (i32.const 100) "big")
      (func (export "_start")
        ;; preopen fd 3 is /tmp (the only preopen); O_CREAT=1; rights: all defined bits
        (drop (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 3)
                          (i32.const 1) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0)
                          (i32.const 200)))
        (i32.store (i32.const 0) (i32.const 1024)) (i32.store (i32.const 4) (i32.const 4096))
        (loop $l (drop (call $w (i32.load (i32.const 200)) (i32.const 0) (i32.const 1)
                                (i32.const 8)))
                 (br $l))))"""
    result = sandbox.run(
        wat, Limits(wall_time_s=10, fuel=10**12), Grants(scratch=ScratchGrant(quota_bytes=1 << 20))
    )
    assert result.status is RunStatus.SCRATCH_LIMIT, result
    assert result.wall_time_s < 5


def test_args_env_stdin_exactly_as_granted(sandbox: Sandbox) -> None:
    grants = Grants(args=["x", "two words"], env={"ONLY": "this"}, stdin=b"line1\nline2\n")
    result = sandbox.run(ENV_ARGS, grants=grants)
    assert result.status is RunStatus.NONZERO_EXIT and result.exit_code == 7
    out = result.stdout.decode()
    assert lines(result.stdout, "ARG") == ["ARG main.wasm", "ARG x", "ARG two words"]
    assert lines(result.stdout, "ENV") == ["ENV ONLY=this"]
    assert out.endswith("line1\nline2\n")


def test_no_host_environment_leaks(sandbox: Sandbox, monkeypatch: object) -> None:
    result = sandbox.run(ENV_ARGS)
    assert lines(result.stdout, "ENV") == []
    assert result.exit_code == 0
