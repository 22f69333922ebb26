"""The component executor process (``sandboxes.runtime.executor``): runs one WASI P2
component at a time for its worker, and may be killed at any moment.

argv: the Sandbox settings as JSON, then the stdout memfd, the stderr memfd and the read end
of the cancel pipe. Protocol on stdin/stdout: one ``R`` byte once started; then per run a
4-byte little-endian length, a JSON header (``seq``, ``key``, ``stack_bytes``, ``limits``,
``args``, ``env``, ``argv0``, ``files_dir``, ``artifact_len``, ``stdin_len``), the serialized
component (``artifact_len`` bytes: 0 when this process already holds ``key``) and stdin.
Reply: a type byte and an 8-byte length, then the payload: ``N`` (send the artifact) or
``D`` with the RunResult as JSON. The guest's output goes to the memfds as it is written,
so a killed run's output survives it. The cancel pipe carries 8-byte run numbers.
"""

from __future__ import annotations

import functools
import json
import os
import struct
import sys
import threading
from collections import OrderedDict
from typing import BinaryIO

from sandboxes.errors import SandboxError
from sandboxes.runtime.control import CancelToken
from sandboxes.runtime.executor import DONE, NEED_ARTIFACT, READY
from sandboxes.runtime.pipes import exit_with_parent
from sandboxes.runtime.sandbox import Prepared, Sandbox
from sandboxes.schema import Grants, Limits, RunResult
from sandboxes.settings import Settings

_HELD = 32  # components kept deserialized


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    data = stream.read(n) if n else b""
    if len(data) != n:
        raise EOFError
    return data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Current:
    """The run the cancel pipe refers to."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seq = -1
        self.cancel: CancelToken | None = None

    def listen(self, fd: int) -> None:
        while True:
            raw = os.read(fd, 8)
            if len(raw) < 8:
                return
            (seq,) = struct.unpack("<Q", raw)
            with self.lock:
                token = self.cancel if seq == self.seq else None
            if token is not None:
                token.cancel()


def main() -> None:
    exit_with_parent()
    settings = Settings.model_validate_json(sys.argv[1])
    stdout_fd, stderr_fd, cancel_fd = (int(a) for a in sys.argv[2:5])
    sandbox = Sandbox(settings, components_in_process=True)
    current = _Current()
    threading.Thread(target=current.listen, args=(cancel_fd,), daemon=True).start()
    held: OrderedDict[str, Prepared] = OrderedDict()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    stdout.write(READY)
    stdout.flush()

    def reply(kind: bytes, payload: bytes) -> None:
        stdout.write(struct.pack("<cQ", kind, len(payload)) + payload)
        stdout.flush()

    while True:
        try:
            (hlen,) = struct.unpack("<I", _read_exact(stdin, 4))
            header = json.loads(_read_exact(stdin, hlen))
            artifact = _read_exact(stdin, int(header["artifact_len"]))
            data = _read_exact(stdin, int(header["stdin_len"]))
        except EOFError:
            return
        key = str(header["key"])
        limits = Limits.model_validate(header["limits"])
        prepared = held.get(key)
        if prepared is None:
            if not artifact:
                reply(NEED_ARTIFACT, b"")
                continue
            try:
                prepared = sandbox.load_component(artifact, int(header["stack_bytes"]))
            except SandboxError as err:
                result = RunResult(status=err.status, message=err.message)
                reply(DONE, result.model_dump_json().encode())
                continue
            held[key] = prepared
            while len(held) > _HELD:
                held.popitem(last=False)
        held.move_to_end(key)
        token = CancelToken()
        with current.lock:
            current.seq, current.cancel = int(header["seq"]), token
        grants = Grants(args=header["args"], env=header["env"], stdin=data)
        tees = (functools.partial(_write_all, stdout_fd), functools.partial(_write_all, stderr_fd))
        result = sandbox.run_component_here(
            prepared, limits, grants, token, str(header["argv0"]), header["files_dir"], tees
        )
        with current.lock:
            current.cancel = None
        reply(DONE, result.model_copy(update={"stdout": b"", "stderr": b""})
              .model_dump_json().encode())


if __name__ == "__main__":
    main()
