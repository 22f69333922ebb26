"""Recognise what the tenant sent: core module, component, or WAT text; bound its size."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

import wasmtime

from sandboxes.errors import SandboxError
from sandboxes.schema import RunStatus

_MAGIC = b"\0asm"
_CORE_VERSION = b"\x01\x00\x00\x00"
_COMPONENT_VERSION = b"\x0d\x00\x01\x00"
# WAT text is larger than the binary it encodes; allow this factor before the binary check,
# up to an absolute cap: wat2wasm runs in this process, unbounded by the compile helper's
# caps (measured: 20 MiB of text took 1.2 s and 415 MiB of memory). Big modules come as
# binaries.
_WAT_EXPANSION = 8
MAX_WAT_BYTES = 8 * 1024 * 1024

NOT_A_MODULE = "neither a WebAssembly binary (no \\0asm magic) nor UTF-8 WAT text"


class ModuleKind(StrEnum):
    CORE = "core"
    COMPONENT = "component"


@dataclass(frozen=True)
class ModuleBytes:
    """A decoded, size-checked binary and the content hash that keys every cache."""

    kind: ModuleKind
    wasm: bytes
    sha256: str


def decode_module(source: bytes | str, max_bytes: int) -> ModuleBytes:
    """Binary wasm or WAT text (core or component) → binary, or SandboxError(invalid_module)."""
    if isinstance(source, bytes) and source.startswith(_MAGIC):
        wasm = source
    else:
        wasm = _wat_to_wasm(source, max_bytes)
    if len(wasm) > max_bytes:
        raise SandboxError(
            RunStatus.INVALID_MODULE,
            f"module is {len(wasm)} bytes, over the {max_bytes}-byte module size limit",
        )
    if len(wasm) < 8 or not wasm.startswith(_MAGIC):
        raise SandboxError(RunStatus.INVALID_MODULE, "not a WebAssembly binary (bad magic)")
    version = wasm[4:8]
    if version == _CORE_VERSION:
        kind = ModuleKind.CORE
    elif version == _COMPONENT_VERSION:
        kind = ModuleKind.COMPONENT
    else:
        raise SandboxError(
            RunStatus.INVALID_MODULE, f"unknown WebAssembly binary version {version.hex()}"
        )
    return ModuleBytes(kind, wasm, hashlib.sha256(wasm).hexdigest())


def _wat_to_wasm(source: bytes | str, max_bytes: int) -> bytes:
    cap = min(max_bytes * _WAT_EXPANSION, MAX_WAT_BYTES)
    if len(source) > cap:
        raise SandboxError(
            RunStatus.INVALID_MODULE,
            f"WAT text is {len(source)} bytes, over {cap} bytes (send larger modules as"
            " binary wasm)",
        )
    if isinstance(source, bytes):
        try:
            text = source.decode("utf-8")
        except UnicodeDecodeError:
            raise SandboxError(RunStatus.INVALID_MODULE, NOT_A_MODULE) from None
    else:
        text = source
    try:
        return bytes(wasmtime.wat2wasm(text))
    except wasmtime.WasmtimeError as exc:
        raise SandboxError(RunStatus.INVALID_MODULE, f"WAT syntax error: {exc}") from None
