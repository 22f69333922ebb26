"""WASI P2 command components: check what they import, instantiate, call ``wasi:cli/run``.

wasmtime-py 50's ``component.Linker.add_wasip2()`` links all of WASI 0.2 (cli, clocks,
filesystem, io, random *and sockets*); ``Store.set_wasi`` configures P2 as well as P1, so
argv, env, stdin, preopens and the capped stdout/stderr sinks apply unchanged.

``wasi:sockets/*`` is refused before anything is instantiated: Warden never grants
network. wasmtime's default WASI context denies socket creation (probed:
``create-tcp-socket`` returns ``access-denied``, no ``socket`` syscall is made), but
wasmtime-py has no switch that *pins* that denial, so a component asking for sockets is a
LINK_ERROR instead of a run that depends on an upstream default.

``wasi:io/poll`` is linked: ``poll`` / ``pollable.block`` block inside wasmtime's host code,
where epoch interruption cannot reach (a 60 s sleep ran past a 2 s deadline), but every
component runs in an executor process that is killed at its wall limit plus a grace
(``sandboxes.runtime.executor``), so a sleep or a poll ends there, or at a cancel.

Errors from component calls come back as plain ``WasmtimeError`` (the C API returns no trap
object for components); ``as_trap`` turns them back into ``wasmtime.Trap`` with the right
code so ``sandboxes.runtime.outcome.classify`` treats both kinds of module alike.
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass

import wasmtime
import wasmtime.component
from wasmtime import _bindings as ffi

from sandboxes.compilation.entry import NO_RUN
from sandboxes.errors import SandboxError
from sandboxes.schema import RunStatus

# Interfaces (without version) that wasmtime 50's add_wasip2() defines, all as 0.2.x.
PROVIDED: frozenset[str] = frozenset(
    {
        "wasi:cli/environment",
        "wasi:cli/exit",
        "wasi:cli/stdin",
        "wasi:cli/stdout",
        "wasi:cli/stderr",
        "wasi:cli/terminal-input",
        "wasi:cli/terminal-output",
        "wasi:cli/terminal-stdin",
        "wasi:cli/terminal-stdout",
        "wasi:cli/terminal-stderr",
        "wasi:clocks/monotonic-clock",
        "wasi:clocks/wall-clock",
        "wasi:filesystem/types",
        "wasi:filesystem/preopens",
        "wasi:io/error",
        "wasi:io/poll",
        "wasi:io/streams",
        "wasi:random/random",
        "wasi:random/insecure",
        "wasi:random/insecure-seed",
        "wasi:sockets/network",
        "wasi:sockets/instance-network",
        "wasi:sockets/tcp",
        "wasi:sockets/tcp-create-socket",
        "wasi:sockets/udp",
        "wasi:sockets/udp-create-socket",
        "wasi:sockets/ip-name-lookup",
    }
)
# Linked, but refused: (interface prefix, status, why).
REFUSED: tuple[tuple[str, RunStatus, str], ...] = (
    ("wasi:sockets/", RunStatus.LINK_ERROR, "network access is never granted"),
)
# wasmtime's memory limit applies to each linear memory, so a store with N memories could
# hold N times ``Limits.memory_bytes``. Components built from one core module (wasi-sdk,
# Rust, the preview1 adapter) have exactly one; composed ones with more are refused.
MAX_MEMORIES = 1
_MEMORY_COUNT = "memory count too high"
_STOPPED = "warden: run stopped"  # prefix of RunControl.check's trap message
_NOT_IN_LINKER = "matching implementation was not found in the linker"
WASI_VERSION = re.compile(r"^0\.2\.\d+$")
RUN_INTERFACE = "wasi:cli/run"
_NAME = re.compile(r"^(?P<iface>[a-z0-9-]+:[a-z0-9-]+/[a-z0-9-]+)(?:@(?P<version>[^@]+))?$")
_SHOWN = 8


@dataclass(frozen=True)
class CommandInfo:
    """What a checked command component exports: the exact ``wasi:cli/run@...`` name."""

    run_export: str


def build_linker(engine: wasmtime.Engine) -> wasmtime.component.Linker:
    """The component linker shared by every run on ``engine``: WASI P2 only, no wasi:http."""
    linker = wasmtime.component.Linker(engine)
    linker.add_wasip2()
    return linker


def check_component(
    component: wasmtime.component.Component, engine: wasmtime.Engine
) -> CommandInfo | SandboxError:
    """Refuse, before instantiating, what cannot run: named imports and missing exports."""
    ctype = component.type
    refused: dict[RunStatus, list[str]] = {}
    reasons: dict[RunStatus, str] = {}
    missing: list[str] = []
    for name in ctype.imports(engine):
        parsed = _NAME.match(name)
        iface = parsed.group("iface") if parsed else name
        version = parsed.group("version") if parsed else None
        rule = next((r for r in REFUSED if iface.startswith(r[0])), None)
        if rule is not None:
            refused.setdefault(rule[1], []).append(name)
            reasons[rule[1]] = rule[2]
        elif iface not in PROVIDED or version is None or not WASI_VERSION.match(version):
            missing.append(name)
    for status in (RunStatus.LINK_ERROR, RunStatus.UNSUPPORTED):
        if status in refused:
            return SandboxError(
                status, f"component imports {_list(refused[status])}: {reasons[status]}"
            )
    if missing:
        return SandboxError(
            RunStatus.UNSUPPORTED,
            f"component imports {_list(missing)}, which Warden does not provide "
            "(only WASI 0.2 cli, clocks, filesystem, io and random interfaces are available)",
        )
    runs = [
        name
        for name in ctype.exports(engine)
        if (m := _NAME.match(name)) and m.group("iface") == RUN_INTERFACE
        and WASI_VERSION.match(m.group("version") or "")
    ]
    if not runs:
        return SandboxError(RunStatus.UNSUPPORTED, NO_RUN)
    return CommandInfo(runs[0])


_checked: weakref.WeakKeyDictionary[wasmtime.component.Component, CommandInfo] = (
    weakref.WeakKeyDictionary()
)


def link(
    component: wasmtime.component.Component, engine: wasmtime.Engine
) -> SandboxError | None:
    """Check once per compiled component (the artifact cache keeps the result)."""
    checked = check_component(component, engine)
    if isinstance(checked, SandboxError):
        return checked
    _checked[component] = checked
    return None


def run_command(
    linker: wasmtime.component.Linker,
    store: wasmtime.Store,
    component: wasmtime.component.Component,
) -> BaseException | None:
    """Instantiate and call ``run``. None when it returned ok; the error otherwise.

    Raises ``wasmtime.WasmtimeError`` only if instantiation fails (start functions run
    then; the caller maps it to a run, link or memory outcome). ``run`` returning ``err``
    becomes ``ExitTrap`` code 1, which is what wasmtime reports for
    ``wasi:cli/exit.exit(err)`` (only the unstable ``exit-with-code`` carries a code).
    """
    info = _checked.get(component)
    if info is None:  # never linked through ``link``: refuse rather than run unchecked
        return SandboxError(RunStatus.INTERNAL_ERROR, "component was not checked before running")
    instance = linker.instantiate(store, component)
    iface = instance.get_export_index(store, info.run_export)
    index = instance.get_export_index(store, "run", iface) if iface is not None else None
    func = instance.get_func(store, index) if index is not None else None
    if func is None:
        return SandboxError(RunStatus.INTERNAL_ERROR, f"{info.run_export}#run not found")
    try:
        result = func(store)
    except wasmtime.ExitTrap as exc:
        return exc
    except wasmtime.WasmtimeError as exc:
        return as_trap(exc)
    tag = getattr(result, "tag", None)
    if tag == "ok":
        return None
    err = wasmtime.ExitTrap(f"{info.run_export}#run returned {tag}")
    err.code = 1
    return err


def instantiate_refusal(exc: wasmtime.WasmtimeError) -> tuple[RunStatus, None, None, str] | None:
    """Outcome fields when instantiation failed on something Warden does not offer.

    The import check runs first, so a missing import here means a version or type that the
    name check let through (e.g. an interface function newer than wasmtime 50's WASI).
    """
    text = str(exc)
    if _MEMORY_COUNT in text:
        return (
            RunStatus.UNSUPPORTED,
            None,
            None,
            f"component creates more than {MAX_MEMORIES} linear memory ({text}); Warden's "
            "memory limit is per memory, so only single-memory components run",
        )
    if _NOT_IN_LINKER in text:
        return (RunStatus.UNSUPPORTED, None, None, f"cannot link component: {text.strip()}")
    return None


def stopped_by_control(exc: wasmtime.WasmtimeError) -> bool:
    """True when the epoch deadline callback ended the call (``RunControl.check``'s text)."""
    return _STOPPED in str(exc)


def _trap_messages() -> list[tuple[str, wasmtime.TrapCode]]:
    """wasmtime's own text for each trap code (longest first, so prefixes don't shadow)."""
    found: list[tuple[str, wasmtime.TrapCode]] = []
    for code in wasmtime.TrapCode:
        trap = wasmtime.Trap._from_ptr(ffi.wasmtime_trap_new_code(code.value))
        found.append((trap.message, code))
    return sorted(found, key=lambda item: -len(item[0]))


_TRAP_MESSAGES = _trap_messages()


def as_trap(exc: wasmtime.WasmtimeError) -> wasmtime.WasmtimeError | wasmtime.Trap:
    """A component call's error as the ``wasmtime.Trap`` it stands for, if it is one."""
    cause = str(exc).rstrip().rsplit("\n", 1)[-1].strip()
    for message, code in _TRAP_MESSAGES:
        if cause == message:
            return wasmtime.Trap._from_ptr(ffi.wasmtime_trap_new_code(code.value))
    return exc


def _list(names: list[str]) -> str:
    return ", ".join(names[:_SHOWN]) + (" …" if len(names) > _SHOWN else "")
