"""The artifact cache: hits, disk reuse, and corrupt or foreign files are never loaded."""

from __future__ import annotations

from pathlib import Path

from sandboxes.runtime.sandbox import Sandbox
from sandboxes.schema import RunStatus
from sandboxes.settings import Settings
from tests import wat_modules as W


def make(tmp_path: Path) -> Sandbox:
    return Sandbox(Settings(data_dir=tmp_path))


def test_memory_then_disk_hits(tmp_path: Path) -> None:
    first = make(tmp_path)
    assert first.run(W.hello("cache\n")).stdout == b"cache\n"
    assert (first.cache.misses, first.cache.hits) == (1, 0)
    first.run(W.hello("cache\n"))
    assert first.cache.hits == 1
    first.compiler.close()
    second = make(tmp_path)  # a new process would see the same disk cache
    assert second.run(W.hello("cache\n")).stdout == b"cache\n"
    assert (second.cache.misses, second.cache.disk_hits) == (0, 1)


def test_corrupted_artifact_is_recompiled(tmp_path: Path) -> None:
    first = make(tmp_path)
    first.run(W.hello("x\n"))
    files = list(first.settings.cache_dir.glob("*.cwasm"))
    assert len(files) == 1
    data = bytearray(files[0].read_bytes())
    data[-100] ^= 0xFF  # flip a byte in the machine code
    files[0].write_bytes(bytes(data))
    second = make(tmp_path)
    result = second.run(W.hello("x\n"))
    assert result.status is RunStatus.OK and result.stdout == b"x\n"
    assert (second.cache.disk_hits, second.cache.misses) == (0, 1)


def test_foreign_artifact_is_recompiled(tmp_path: Path) -> None:
    first = make(tmp_path)
    first.run(W.hello("a\n"))
    first.run(W.hello("b\n"))
    a, b = sorted(first.settings.cache_dir.glob("*.cwasm"), key=lambda p: p.stat().st_mtime)
    a.write_bytes(b.read_bytes())  # valid artifact, wrong key: must not run b's code for a
    second = make(tmp_path)
    result = second.run(W.hello("a\n"))
    assert result.stdout == b"a\n"
    assert second.cache.misses == 1


def test_truncated_and_garbage_files(tmp_path: Path) -> None:
    first = make(tmp_path)
    first.run(W.hello("t\n"))
    (path,) = first.settings.cache_dir.glob("*.cwasm")
    for junk in (b"", b"WARDEN-ARTIFACT-1\n", path.read_bytes()[:50], b"\x7fELF" * 100):
        path.write_bytes(junk)
        fresh = make(tmp_path)
        assert fresh.run(W.hello("t\n")).stdout == b"t\n"
        assert fresh.cache.misses == 1


def test_cache_key_includes_engine_config(tmp_path: Path) -> None:
    sandbox = make(tmp_path)
    from sandboxes.schema import Limits

    sandbox.run(W.HELLO, Limits(stack_bytes="256KiB"))
    sandbox.run(W.HELLO, Limits(stack_bytes="2MiB"))
    keys = {p.name.rsplit("-", 1)[1] for p in sandbox.settings.cache_dir.glob("*.cwasm")}
    assert len(keys) == 2  # two engine fingerprints, two artifacts


def test_memory_entries_are_bounded_lru(tmp_path: Path) -> None:
    sb = Sandbox(Settings(data_dir=tmp_path, memory_cache_entries=2, disk_cache_bytes=0))
    for text in ("a\n", "b\n", "a\n", "c\n"):  # a is used again before c evicts b
        assert sb.run(W.hello(text)).stdout == text.encode()
    assert (sb.cache.misses, sb.cache.hits) == (3, 1)
    sb.run(W.hello("a\n"))
    assert sb.cache.hits == 2  # a survived
    sb.run(W.hello("b\n"))
    assert sb.cache.misses == 4  # b was evicted (and nothing on disk: disk cache off)
    assert not list(sb.settings.cache_dir.glob("*.cwasm"))


def test_disk_cache_is_bounded(tmp_path: Path) -> None:
    probe = make(tmp_path / "probe")
    probe.run(W.hello("size\n"))
    one = next(probe.settings.cache_dir.glob("*.cwasm")).stat().st_size
    sb = Sandbox(Settings(data_dir=tmp_path / "bounded", disk_cache_bytes=int(one * 2.5)))
    for i in range(6):
        assert sb.run(W.hello(f"{i}xxx\n")).status is RunStatus.OK
    files = list(sb.settings.cache_dir.glob("*.cwasm"))
    assert 1 <= len(files) <= 2
    assert sum(f.stat().st_size for f in files) <= one * 2.5


def test_a_failed_compile_leaves_no_lock_behind(tmp_path: Path) -> None:
    sb = make(tmp_path)
    for _ in range(3):
        assert sb.run(W.WAT_SYNTAX_ERROR).status is RunStatus.INVALID_MODULE
        assert sb.run(b"\0asm\x01\0\0\0\x01\xff").status is RunStatus.INVALID_MODULE
    assert not sb.cache._key_locks
