"""The compile helper process: reads requests on stdin, writes serialized artifacts to stdout.

Protocol (binary): one ``R`` byte once started; then, one request at a time: request =
4-byte little-endian JSON length, JSON ``{"kind", "stack_bytes", "instrumented", "size"}``,
then ``size`` wasm bytes. Response = 1 status byte
(1 ok, 0 error), 8-byte length, then the artifact or a UTF-8 error message.

For an instrumented engine the module is validated as it came (on the metered engine's
feature set: no threads, no multiple memories), then rewritten by
``sandboxes.metering.fuel_rewriter``, then compiled: all of it untrusted work, so all of it here,
under the helper's time and memory caps. A valid module the rewriter cannot meter is
refused, not run under wasmtime's own fuel and epochs instead: those check only at
function entries and loop headers, so a chain of returns with long tails could outrun
both limits (and any guest could choose that path by using what the rewriter refuses).
"""

from __future__ import annotations

import functools
import json
import struct
import sys
from typing import BinaryIO

import wasmtime
import wasmtime.component

from sandboxes.metering.fuel_rewriter import UnsupportedModule, instrument
from sandboxes.runtime.engine import EngineSpec
from sandboxes.runtime.pipes import exit_with_parent

READY = b"R"


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = stream.read(n)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


@functools.cache
def _engine(spec: EngineSpec) -> wasmtime.Engine:
    """One engine per spec for the helper's life: building one per compile is start-up
    work repeated (an instrumented compile needs two: the strict one validates)."""
    return spec.build()


def _compile(spec: EngineSpec, kind: str, wasm: bytes) -> bytes:
    if kind == "component":
        return bytes(wasmtime.component.Component(_engine(spec), wasm).serialize())
    if not spec.instrumented:
        return bytes(wasmtime.Module(_engine(spec), wasm).serialize())
    wasmtime.Module.validate(_engine(spec.strict()), wasm)
    try:
        rewritten = instrument(wasm)
    except UnsupportedModule as exc:
        raise ValueError(f"Warden cannot meter this module: {exc}") from None
    try:
        return bytes(wasmtime.Module(_engine(spec), rewritten).serialize())
    except wasmtime.WasmtimeError as exc:  # e.g. a function at wasmparser's size limit
        raise ValueError(f"the module is too large to meter: {exc}") from None


def main() -> None:
    exit_with_parent()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(READY)  # imports done: the parent starts a module's clock only now
    stdout.flush()
    while True:
        try:
            (hlen,) = struct.unpack("<I", _read_exact(stdin, 4))
            request = json.loads(_read_exact(stdin, hlen))
            wasm = _read_exact(stdin, int(request["size"]))
        except EOFError:
            return
        try:
            spec = EngineSpec(int(request["stack_bytes"]), bool(request["instrumented"]))
            payload, ok = _compile(spec, request["kind"], wasm), 1
        except MemoryError:
            payload, ok = b"compiling the module ran out of memory (compile memory cap)", 0
        except Exception as exc:
            payload, ok = str(exc).encode(), 0
        stdout.write(struct.pack("<BQ", ok, len(payload)))
        stdout.write(payload)
        stdout.flush()


if __name__ == "__main__":
    main()
