"""Compile untrusted wasm in a helper process with a wall-time and address-space cap.

Wasmtime treats compile-time blow-ups (a million functions, pathological control flow) as
the embedder's problem. A long-lived helper (``sandboxes.compilation.compile_child``) compiles and
returns the serialized artifact; at the deadline it is killed (and restarted on the next
compile), and RLIMIT_AS turns a memory blow-up into a clean failure instead of an OOM kill
of the worker. The parent only deserializes what its own helper produced.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import struct
import subprocess
import sys
import threading
import time

from sandboxes.compilation.compile_child import READY
from sandboxes.compilation.modules import ModuleBytes
from sandboxes.errors import SandboxError
from sandboxes.runtime.engine import EngineSpec
from sandboxes.runtime.pipes import read_exact
from sandboxes.schema import RunStatus

_STARTUP_S = 60.0  # a cold Python + wasmtime import on a loaded machine
MAX_IDLE = 2  # helpers kept started between compiles (each ~100 MB once it has compiled)
_BACKGROUND_NICE = 19


class _Helper:
    """One compile helper process, started and imported (its start-up is never charged to
    a module's compile time). A background helper runs at the lowest CPU priority (nice
    19, inherited by its compiler threads), so its long compiles yield the cores to the
    compiles jobs wait for."""

    def __init__(self, memory_cap: int, background: bool = False) -> None:
        self.background = background

        def limit() -> None:  # runs in the child before exec
            resource.setrlimit(resource.RLIMIT_AS, (memory_cap, memory_cap))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            if background:
                os.nice(_BACKGROUND_NICE)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sandboxes.compilation.compile_child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            preexec_fn=limit,
            env={"PYTHONPATH": ":".join(p for p in sys.path if p)},
        )
        try:
            ready = self.read(1, time.monotonic() + _STARTUP_S)
        except (TimeoutError, EOFError, OSError):
            ready = b""
        if ready != READY:
            self.kill()
            raise SandboxError(RunStatus.INTERNAL_ERROR, "the module compiler could not start")

    def read(self, n: int, deadline: float) -> bytes:
        assert self.proc.stdout is not None
        return read_exact(self.proc.stdout.fileno(), n, deadline)

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


class CompilerProcess:
    """Compile helpers: one per compile in flight, kept idle for reuse.

    Each compile has a helper of its own, so a tenant's module that takes its whole compile
    time limit delays nobody else's compile (no queue behind one helper); a helper that
    overruns is killed, and the next compile starts a fresh one.
    """

    def __init__(self, timeout_s: float, memory_cap: int) -> None:
        self._timeout_s = timeout_s
        self._memory_cap = memory_cap
        self._idle: list[_Helper] = []
        self._busy: set[_Helper] = set()
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Have one helper started, so the first compile does not wait for its start."""
        self._give_back(self._take())

    def close(self) -> None:
        """Stop every helper, idle or compiling (that compile then fails)."""
        with self._lock:
            helpers, self._idle = [*self._idle, *self._busy], []
            self._busy.clear()
        for helper in helpers:
            helper.kill()

    def _take(self, background: bool = False) -> _Helper:
        with self._lock:
            for helper in [h for h in self._idle if h.background is background]:
                self._idle.remove(helper)
                if helper.proc.poll() is None:
                    self._busy.add(helper)
                    return helper
                helper.kill()
        helper = _Helper(self._memory_cap, background)
        with self._lock:
            self._busy.add(helper)
        return helper

    def _give_back(self, helper: _Helper) -> None:
        """Keep it for the next compile, unless enough are idle already: a burst of
        compiles leaves ``MAX_IDLE`` helpers behind, not one per compile it ran."""
        with self._lock:
            self._busy.discard(helper)
            keep = len(self._idle) < MAX_IDLE
            if keep:
                self._idle.append(helper)
        if not keep:
            helper.kill()

    def _drop(self, helper: _Helper) -> None:
        with self._lock:
            self._busy.discard(helper)
        helper.kill()

    def compile(
        self, module: ModuleBytes, spec: EngineSpec, timeout_s: float | None = None,
        background: bool = False,
    ) -> bytes:
        """Serialized code for ``module`` under ``spec``, or SandboxError(invalid_module).

        ``timeout_s``: this compile's budget (the job's compile time limit, or a longer
        one for trusted modules such as interpreters); at most the configured cap unless
        given larger for a trusted module. ``background``: at the lowest CPU priority
        (warm-up and interpreter compiles, which no job's budget counts).
        """
        timeout_s = timeout_s or self._timeout_s
        helper = self._take(background)
        assert helper.proc.stdin is not None
        header = json.dumps(
            {"kind": module.kind.value, "stack_bytes": spec.stack_bytes,
             "instrumented": spec.instrumented, "size": len(module.wasm)}
        ).encode()
        deadline = time.monotonic() + timeout_s
        try:
            helper.proc.stdin.write(struct.pack("<I", len(header)) + header + module.wasm)
            helper.proc.stdin.flush()
            status, length = struct.unpack("<BQ", helper.read(9, deadline))
            payload = helper.read(length, deadline)
        except TimeoutError:
            self._drop(helper)
            raise CompileTimeoutError(timeout_s) from None
        except (EOFError, OSError, ValueError):  # ValueError: closed meanwhile (close())
            self._drop(helper)
            raise SandboxError(
                RunStatus.INVALID_MODULE,
                "the compiler ran out of memory or died compiling this module "
                "(module too large or complex)",
            ) from None
        self._give_back(helper)
        if status != 1:
            raise SandboxError(
                RunStatus.INVALID_MODULE, f"invalid module: {payload.decode(errors='replace')}"
            )
        return payload


class CompileTimeoutError(SandboxError):
    """The module did not compile within ``budget_s`` (it might within a larger one)."""

    def __init__(self, budget_s: float) -> None:
        super().__init__(
            RunStatus.INVALID_MODULE,
            f"compiling the module took longer than {budget_s:g}s (compile time limit)",
        )
        self.budget_s = budget_s
