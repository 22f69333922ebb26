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


class CompilerProcess:
    """One helper process; compiles are serialised through it."""

    def __init__(self, timeout_s: float, memory_cap: int) -> None:
        self._timeout_s = timeout_s
        self._memory_cap = memory_cap
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen[bytes]:
        cap = self._memory_cap

        def limit() -> None:  # runs in the child before exec
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

        return subprocess.Popen(
            [sys.executable, "-m", "sandboxes.compilation.compile_child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            preexec_fn=limit,
            env={"PYTHONPATH": ":".join(p for p in sys.path if p)},
        )

    def _start_ready(self) -> subprocess.Popen[bytes]:
        """A fresh helper that has finished importing: its start-up (Python, wasmtime) must
        not count against the next tenant's compile time limit."""
        proc = self._start()
        try:
            ready = self._read(proc, 1, time.monotonic() + _STARTUP_S)
        except (TimeoutError, EOFError, OSError):
            ready = b""
        if ready != READY:
            self._proc = proc
            self._kill()
            raise SandboxError(RunStatus.INTERNAL_ERROR, "the module compiler could not start")
        return proc

    def close(self) -> None:
        with self._lock:
            self._kill()

    def _kill(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(OSError):
                self._proc.kill()
            self._proc.wait()
            for stream in (self._proc.stdin, self._proc.stdout):
                if stream is not None:
                    stream.close()
            self._proc = None

    def compile(
        self, module: ModuleBytes, spec: EngineSpec, timeout_s: float | None = None
    ) -> bytes:
        """Serialized code for ``module`` under ``spec``, or SandboxError(invalid_module).

        ``timeout_s`` overrides the cap for trusted modules (interpreters), which may be
        far bigger than anything a tenant is allowed to upload.
        """
        timeout_s = timeout_s or self._timeout_s
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._kill()
                self._proc = self._start_ready()
            proc = self._proc
            assert proc.stdin is not None and proc.stdout is not None
            header = json.dumps(
                {"kind": module.kind.value, "stack_bytes": spec.stack_bytes,
                 "instrumented": spec.instrumented, "size": len(module.wasm)}
            ).encode()
            deadline = time.monotonic() + timeout_s
            try:
                proc.stdin.write(struct.pack("<I", len(header)) + header + module.wasm)
                proc.stdin.flush()
                status, length = struct.unpack("<BQ", self._read(proc, 9, deadline))
                payload = self._read(proc, length, deadline)
            except TimeoutError:
                self._kill()
                raise SandboxError(
                    RunStatus.INVALID_MODULE,
                    f"compiling the module took longer than {timeout_s:g}s "
                    "(compile time limit)",
                ) from None
            except (EOFError, OSError):
                self._kill()
                raise SandboxError(
                    RunStatus.INVALID_MODULE,
                    "the compiler ran out of memory or died compiling this module "
                    "(module too large or complex)",
                ) from None
        if status != 1:
            raise SandboxError(
                RunStatus.INVALID_MODULE, f"invalid module: {payload.decode(errors='replace')}"
            )
        return payload

    @staticmethod
    def _read(proc: subprocess.Popen[bytes], n: int, deadline: float) -> bytes:
        assert proc.stdout is not None
        return read_exact(proc.stdout.fileno(), n, deadline)
