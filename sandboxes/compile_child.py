"""The compile helper process: reads requests on stdin, writes serialized artifacts to stdout.

Protocol (binary): one ``R`` byte once started; then, one request at a time: request =
4-byte little-endian JSON length, JSON ``{"kind", "stack_bytes", "size"}``, then ``size``
wasm bytes. Response = 1 status byte
(1 ok, 0 error), 8-byte length, then the artifact or a UTF-8 error message.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
import time
from typing import BinaryIO

import wasmtime
import wasmtime.component

from sandboxes.engine import EngineSpec

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


def _compile(kind: str, stack_bytes: int, wasm: bytes) -> bytes:
    engine = EngineSpec(stack_bytes).build()
    if kind == "component":
        return bytes(wasmtime.component.Component(engine, wasm).serialize())
    return bytes(wasmtime.Module(engine, wasm).serialize())


def _exit_with_parent(parent: int) -> None:
    """End this helper when the worker process that started it dies. (Not PR_SET_PDEATHSIG:
    that fires when the parent *thread* that forked us exits, which killed compiles in
    flight whenever the helper had been started from a short-lived thread.)"""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def main() -> None:
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
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
            payload, ok = _compile(request["kind"], int(request["stack_bytes"]), wasm), 1
        except MemoryError:
            payload, ok = b"compiling the module ran out of memory (compile memory cap)", 0
        except Exception as exc:
            payload, ok = str(exc).encode(), 0
        stdout.write(struct.pack("<BQ", ok, len(payload)))
        stdout.write(payload)
        stdout.flush()


if __name__ == "__main__":
    main()
