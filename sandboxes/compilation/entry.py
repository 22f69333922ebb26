"""Whether a module has an entry Warden can run, read from its bytes without compiling it.

The API answers 422 at submit for a module no worker could start (``(module)``: no
``_start``), instead of queueing it to fail later. Only validated modules come here. A core
module needs an exported function ``_start``; a component needs an export named
``wasi:cli/run@0.2.x``, which must appear as a name in its bytes (finer checks, such as
``_start``'s signature and a component's imports, are made when it is linked).
"""

from __future__ import annotations

from typing import Final

from sandboxes.compilation.modules import ModuleBytes, ModuleKind
from sandboxes.languages.toolchains.wasm_bytes import read_uleb

NO_START: Final = "module exports no _start function: only WASI command modules can run"
NO_RUN: Final = (
    "component exports no wasi:cli/run@0.2.x: only WASI P2 command components can run"
)
_EXPORT_SECTION: Final = 7
_FUNC_KIND: Final = 0
_RUN_EXPORT: Final = b"wasi:cli/run@0.2"


def entry_problem(module: ModuleBytes) -> str | None:
    """Why ``module`` cannot be run (no entry), or None."""
    if module.kind is ModuleKind.COMPONENT:
        return None if _RUN_EXPORT in module.wasm else NO_RUN
    return None if _exports_start(module.wasm) else NO_START


def _exports_start(wasm: bytes) -> bool:
    """Whether the export section names a function ``_start`` (walked in place)."""
    pos = 8  # after the header
    while pos < len(wasm):
        section = wasm[pos]
        size, pos = read_uleb(wasm, pos + 1)
        end = pos + size
        if section == _EXPORT_SECTION:
            count, pos = read_uleb(wasm, pos)
            for _ in range(count):
                length, pos = read_uleb(wasm, pos)
                name = wasm[pos:pos + length]
                kind = wasm[pos + length]
                _, pos = read_uleb(wasm, pos + length + 1)
                if name == b"_start" and kind == _FUNC_KIND:
                    return True
            return False
        pos = end
    return False
