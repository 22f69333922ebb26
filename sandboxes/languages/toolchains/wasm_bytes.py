"""Small byte-level helpers the toolchain builders share: LEB128 and names as the wasm binary
format encodes them, and hashing a (possibly large) file without reading it whole."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path


def read_uleb(data: bytes, pos: int) -> tuple[int, int]:
    """An unsigned LEB128 at ``pos``: (value, position after it)."""
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def read_sleb(data: bytes, pos: int) -> tuple[int, int]:
    """A signed LEB128 at ``pos``: (value, position after it)."""
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if byte & 0x40:
                result -= 1 << shift
            return result, pos


CORE_HEADER = b"\0asm\x01\0\0\0"


def split_sections(module: bytes) -> list[tuple[int, bytes]] | None:
    """A core module's sections as (id, body), in order; None if it is not a core module."""
    if module[:8] != CORE_HEADER:
        return None
    out: list[tuple[int, bytes]] = []
    pos = 8
    while pos < len(module):
        sid = module[pos]
        size, pos = read_uleb(module, pos + 1)
        out.append((sid, module[pos : pos + size]))
        pos += size
    return out


def write_uleb(value: int) -> bytes:
    """``value`` (>= 0) as unsigned LEB128."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def write_sleb(value: int) -> bytes:
    """``value`` as signed LEB128."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def write_name(text: str) -> bytes:
    """A wasm name: its UTF-8 length as LEB128, then the bytes."""
    raw = text.encode()
    return write_uleb(len(raw)) + raw


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@functools.lru_cache(maxsize=16)
def recipe_hash(module_file: str | None) -> str:
    """A short hash of a build module's own code: its flags decide what it builds, so a
    changed recipe must key new builds and cache entries."""
    assert module_file is not None
    return sha256_file(Path(module_file))[:12]
