"""WASI P2 components run in executor processes, where a run that ignores the wall clock
can be killed without touching any other.

wasmtime meters components with its own fuel and epochs, which check only at function
entries and loop headers, and a component blocked in ``wasi:io/poll`` sits in wasmtime's
host code, where no check runs at all. So each component run goes to a helper process
(``sandboxes.runtime.executor_child``) that runs it exactly as the worker would (same
engine, limits, epoch deadline), and the worker waits for the answer only until the run's
wall limit plus ``backstop_grace_s`` (after a cancel: the grace alone). Past that the
helper is killed: the run ends ``wall_timeout`` (or ``cancelled``) with the output it had
written, which the helper streams into memfds the worker reads, and a fresh helper is
started in the background. One helper runs one component at a time; a worker keeps one per
lane that ran a component, so killing one never loses or repeats another tenant's run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import struct
import subprocess
import sys
import threading
import time
from typing import Final

from sandboxes.runtime.control import CancelToken
from sandboxes.runtime.pipes import read_exact
from sandboxes.schema import Grants, Limits, RunResult, RunStatus
from sandboxes.settings import Settings

log = logging.getLogger(__name__)

READY: Final = b"R"
NEED_ARTIFACT: Final = b"N"
DONE: Final = b"D"
_STARTUP_S: Final = 60.0  # a cold Python + wasmtime import on a loaded machine
_REPLY: Final = struct.Struct("<cQ")
_SEQ: Final = struct.Struct("<Q")


class _Helper:
    """One executor process with its output memfds and cancel pipe."""

    def __init__(self, settings: Settings) -> None:
        self.stdout_fd = os.memfd_create("warden-stdout", os.MFD_CLOEXEC)
        self.stderr_fd = os.memfd_create("warden-stderr", os.MFD_CLOEXEC)
        cancel_r, self.cancel_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sandboxes.runtime.executor_child",
                 settings.model_dump_json(), str(self.stdout_fd), str(self.stderr_fd),
                 str(cancel_r)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                pass_fds=(self.stdout_fd, self.stderr_fd, cancel_r),
                env={"PYTHONPATH": ":".join(p for p in sys.path if p)},
            )
        finally:
            os.close(cancel_r)
        self.loaded: set[str] = set()
        assert self.proc.stdout is not None
        self.reply_fd = self.proc.stdout.fileno()
        if read_exact(self.reply_fd, 1, time.monotonic() + _STARTUP_S) != READY:
            self.kill()
            raise RuntimeError("the component executor did not start")

    def send(self, header: dict[str, object], *parts: bytes) -> None:
        assert self.proc.stdin is not None
        raw = json.dumps(header).encode()
        self.proc.stdin.write(struct.pack("<I", len(raw)) + raw)
        for part in parts:
            self.proc.stdin.write(part)
        self.proc.stdin.flush()

    def reset_output(self) -> None:
        for fd in (self.stdout_fd, self.stderr_fd):
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)

    def output(self, fd: int) -> bytes:
        return os.pread(fd, os.fstat(fd).st_size, 0)

    def cancel(self, seq: int) -> None:
        with contextlib.suppress(OSError):
            os.write(self.cancel_w, _SEQ.pack(seq))

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        for fd in (self.stdout_fd, self.stderr_fd, self.cancel_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class ComponentExecutors:
    """Executor processes of one Sandbox: idle ones are reused, a killed one is replaced."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._grace_s = settings.backstop_grace_s
        self._max_idle = max(settings.worker_lanes, 1)
        self._idle: list[_Helper] = []
        self._starting = 0  # replacements being started in the background
        self._changed = threading.Condition(threading.Lock())
        self._seq = 0
        self.kills = 0  # runs ended by the backstop (tests and metrics read it)

    def warm(self) -> None:
        """Have one helper ready, so the first component run does not wait for a start."""
        helper = self._take()
        self._give_back(helper)

    def close(self) -> None:
        with self._changed:
            idle, self._idle = self._idle, []
        for helper in idle:
            helper.kill()

    def _take(self) -> _Helper:
        """An idle helper; or, while a replacement is starting, that one (a run never
        starts a helper of its own next to one already on its way); or a new one."""
        with self._changed:
            while True:
                while self._idle:
                    helper = self._idle.pop()
                    if helper.proc.poll() is None:
                        return helper
                    helper.kill()
                if not self._starting:
                    break
                self._changed.wait()
        return _Helper(self._settings)

    def _give_back(self, helper: _Helper) -> None:
        """Keep it idle, up to one per lane (more are never needed at once)."""
        with self._changed:
            keep = len(self._idle) < self._max_idle
            if keep:
                self._idle.append(helper)
                self._changed.notify()
        if not keep:
            helper.kill()

    def _replace_later(self) -> None:
        """Start a helper in the background for the next run, in place of a killed one."""
        with self._changed:
            if len(self._idle) + self._starting >= self._max_idle:
                return
            self._starting += 1

        def start() -> None:
            helper = None
            try:
                helper = _Helper(self._settings)
            except Exception:  # the next run starts its own and reports what fails
                log.exception("could not start a component executor")
            with self._changed:
                self._starting -= 1
                if helper is not None and len(self._idle) < self._max_idle:
                    self._idle.append(helper)
                    helper = None
                self._changed.notify_all()
            if helper is not None:
                helper.kill()

        threading.Thread(target=start, name="warden-executor-start", daemon=True).start()

    def run(
        self,
        key: str,
        artifact: bytes,
        stack_bytes: int,
        limits: Limits,
        grants: Grants,
        files_dir: str | None,
        cancel: CancelToken | None,
        argv0: str,
    ) -> RunResult:
        """Run the component ``artifact`` (serialized, ``key`` names it) in a helper."""
        helper = self._take()
        with self._changed:
            self._seq += 1
            seq = self._seq
        wake_r, wake_w = os.pipe()
        cancelled = threading.Event()
        live = [True]  # the fds below are closed (and their numbers reused) after the run
        live_lock = threading.Lock()

        def on_cancel() -> None:
            with live_lock:
                if not live[0]:
                    return
                cancelled.set()
                helper.cancel(seq)
                with contextlib.suppress(OSError):
                    os.write(wake_w, b"c")

        header: dict[str, object] = {
            "seq": seq, "key": key, "stack_bytes": stack_bytes,
            "limits": limits.model_dump(mode="json"), "args": list(grants.args),
            "env": dict(grants.env), "argv0": argv0, "files_dir": files_dir,
            "stdin_len": len(grants.stdin), "artifact_len": 0,
        }
        started = time.monotonic()
        deadline = started + limits.wall_time_s + self._grace_s
        try:
            helper.reset_output()
            if key in helper.loaded:
                helper.send(header, grants.stdin)
            else:
                helper.send(header | {"artifact_len": len(artifact)}, artifact, grants.stdin)
            if cancel is not None:
                cancel.subscribe(on_cancel)
            reply = self._wait(helper, wake_r, cancelled, deadline)
            if reply is None:  # the backstop: the guest outran every check
                self.kills += 1
                return self._killed(helper, cancelled.is_set(), started, limits)
            kind, payload = reply
            if kind == NEED_ARTIFACT:  # it had dropped the artifact: send it once more
                helper.loaded.discard(key)
                helper.send(header | {"artifact_len": len(artifact)}, artifact, grants.stdin)
                reply = self._wait(helper, wake_r, cancelled, deadline)
                if reply is None:
                    self.kills += 1
                    return self._killed(helper, cancelled.is_set(), started, limits)
                kind, payload = reply
            helper.loaded.add(key)
            result = RunResult.model_validate_json(payload)
            result.stdout = helper.output(helper.stdout_fd)
            result.stderr = helper.output(helper.stderr_fd)
            self._give_back(helper)
            return result
        except (EOFError, OSError, ValueError):
            log.exception("component executor failed")
            helper.kill()
            self._replace_later()
            return RunResult(status=RunStatus.INTERNAL_ERROR,
                             message="the component executor failed (logged on the worker)",
                             wall_time_s=time.monotonic() - started)
        finally:
            with live_lock:
                live[0] = False
                os.close(wake_r)
                os.close(wake_w)

    def _wait(self, helper: _Helper, wake_r: int, cancelled: threading.Event,
              deadline: float) -> tuple[bytes, bytes] | None:
        """The helper's next reply, or None once the backstop deadline has passed."""
        cancel_deadline: float | None = None
        while True:
            now = time.monotonic()
            if cancelled.is_set() and cancel_deadline is None:
                cancel_deadline = now + self._grace_s
            limit = deadline if cancel_deadline is None else min(deadline, cancel_deadline)
            if now >= limit:
                return None
            ready, _, _ = select.select([helper.reply_fd, wake_r], [], [], limit - now)
            if wake_r in ready:
                os.read(wake_r, 64)
            if helper.reply_fd in ready:
                try:
                    kind, length = _REPLY.unpack(
                        read_exact(helper.reply_fd, _REPLY.size, limit + self._grace_s))
                    return kind, read_exact(helper.reply_fd, length, limit + self._grace_s)
                except TimeoutError:  # a reply begun and never finished: as good as stuck
                    return None

    def _killed(self, helper: _Helper, cancelled: bool, started: float,
                limits: Limits) -> RunResult:
        """What a killed run did: its output so far (fuel is unknown: reported as 0)."""
        stdout = helper.output(helper.stdout_fd)
        stderr = helper.output(helper.stderr_fd)
        helper.kill()
        self._replace_later()
        if cancelled:
            status, message = RunStatus.CANCELLED, "cancelled (the run was killed)"
        else:
            status, message = RunStatus.WALL_TIMEOUT, (
                "wall-clock time limit exceeded: the component ran on where no check could "
                "stop it (code between checks, or a blocking host call such as a "
                "wasi:io/poll wait), so its executor process was killed"
            )
        return RunResult(status=status, stdout=stdout, stderr=stderr, message=message,
                         stdout_truncated=len(stdout) >= limits.stdout_bytes > 0,
                         stderr_truncated=len(stderr) >= limits.stderr_bytes > 0,
                         wall_time_s=time.monotonic() - started)

