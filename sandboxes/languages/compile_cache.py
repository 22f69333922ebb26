"""Content-addressed cache of compiled source: the same program is compiled once.

Key: sha256 over (language id, toolchain version, allowed flags, source). It reuses the
artifact cache's machinery (bounded memory LRU, bounded disk, checksummed files, one
compile per key even when requests race). Compile *errors* are cached too: they are as
deterministic as successes. Timeouts and transient failures (the jail could not start, the
compiler was killed by a signal) are not: they depend on the machine, not the source.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from sandboxes.compilation.artifacts import ArtifactCache
from sandboxes.languages.toolchains.base import CompileOutcome

_OK: Final = b"K"
_ERROR: Final = b"E"


def compile_key(language: str, toolchain_version: str, flags: Sequence[str], source: bytes) -> str:
    h = hashlib.sha256()
    for part in (language.encode(), toolchain_version.encode(), "\0".join(flags).encode()):
        h.update(len(part).to_bytes(8, "little") + part)
    h.update(source)
    return "src-" + h.hexdigest()


class _NotCacheableError(Exception):
    def __init__(self, outcome: CompileOutcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


class CompileCache:
    def __init__(self, directory: Path | None, max_entries: int, max_disk_bytes: int) -> None:
        self._cache: ArtifactCache[CompileOutcome] = ArtifactCache(
            directory, max_entries, max_disk_bytes
        )

    def get(self, key: str, compile_: Callable[[], CompileOutcome],
            wait_s: float | None = None) -> tuple[CompileOutcome, bool]:
        """The outcome for ``key`` and whether it came from the cache; waiting for another
        job's compile of the same key at most ``wait_s`` (then: a timed-out outcome)."""
        compiled: list[CompileOutcome] = []

        def build() -> bytes:
            outcome = compile_()
            if outcome.timed_out or outcome.transient:
                raise _NotCacheableError(outcome)
            compiled.append(outcome)
            return _encode(outcome)

        try:
            outcome = self._cache.get(key, build, _decode, wait_s)
        except _NotCacheableError as exc:
            return exc.outcome, False
        except TimeoutError:
            return CompileOutcome(None, "[compile time limit exceeded while waiting for the "
                                  "same compile by another job]", timed_out=True), False
        if compiled:
            return compiled[0], False
        return outcome, True


def _encode(outcome: CompileOutcome) -> bytes:
    if outcome.wasm is not None:
        return _OK + outcome.wasm
    return _ERROR + outcome.message.encode()


def _decode(blob: bytes) -> CompileOutcome:
    if blob[:1] == _OK:
        return CompileOutcome(blob[1:], "")
    if blob[:1] == _ERROR:
        return CompileOutcome(None, blob[1:].decode("utf-8", "replace"))
    raise ValueError("unknown compile-cache entry")
