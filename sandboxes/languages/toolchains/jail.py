"""The compile jail: runs a toolchain on untrusted source inside ``bwrap --unshare-all``.

Why a jail: a native compiler reads whatever path the source names (``#include
"/etc/passwd"``, ``#embed``, ``.incbin``, ``include_str!``). Inside the jail the only files
are the toolchain (read-only), the job's own directory and a small empty /tmp; no network,
no host environment, no procfs, a fresh PID namespace. On top: an address-space cap, a
per-file size cap, a wall-time cap (the whole process group is killed) and a cap on the
output kept.

Fail closed: if ``bwrap`` is missing or cannot create namespaces, :func:`check_jail` says
why, and callers refuse to compile rather than run a compiler unjailed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BWRAP = "bwrap"
JOB_GUEST_DIR = "/work"
# The jail's /tmp is RAM (tmpfs), which RLIMIT_AS does not count: cap it (zig's private
# caches for one compile take a few MB).
TMP_BYTES = 256 * 1024 * 1024


class JailUnavailableError(RuntimeError):
    """The jail cannot run here; source jobs must fail, never compile unjailed."""


@dataclass(frozen=True)
class Bind:
    """One read-only path from the host at ``guest`` (same path when ``guest`` is None)."""

    host: Path
    guest: str | None = None

    def args(self) -> list[str]:
        return ["--ro-bind", str(self.host), self.guest or str(self.host)]


@dataclass(frozen=True)
class JailLimits:
    wall_s: float
    memory_bytes: int
    output_bytes: int
    file_bytes: int


@dataclass
class JailResult:
    returncode: int
    output: bytes  # stdout and stderr interleaved, at most ``output_bytes``
    output_truncated: bool
    timed_out: bool
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


@dataclass(frozen=True)
class Jail:
    """A fixed set of read-only binds plus environment; each run gets a fresh job dir."""

    binds: Sequence[Bind]
    env: Mapping[str, str] = field(default_factory=dict)
    symlinks: Mapping[str, str] = field(default_factory=dict)  # guest path -> target
    # No procfs: /proc/self/mountinfo names the host path behind every bind, and /proc
    # shows the host's kernel, CPUs and memory. Toolchains that find their own files via
    # /proc/self/exe (zig, rustc) get just that, as a symlink to their binary.
    self_exe: str | None = None

    def command(self, argv: Sequence[str], job_dir: Path) -> list[str]:
        cmd = [
            BWRAP, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
            "--cap-drop", "ALL",
        ]
        for bind in self.binds:
            cmd += bind.args()
        for guest, target in self.symlinks.items():
            cmd += ["--symlink", target, guest]
        cmd += ["--bind", str(job_dir), JOB_GUEST_DIR, "--size", str(TMP_BYTES), "--tmpfs", "/tmp",
                "--dev", "/dev"]
        if self.self_exe is not None:
            cmd += ["--dir", "/proc/self", "--symlink", self.self_exe, "/proc/self/exe"]
        cmd += ["--chdir", JOB_GUEST_DIR]
        for key, value in {"PATH": "/usr/bin:/bin", "HOME": "/tmp", **self.env}.items():
            cmd += ["--setenv", key, value]
        return [*cmd, "--", *argv]

    def run(self, argv: Sequence[str], job_dir: Path, limits: JailLimits) -> JailResult:
        return run_capped(self.command(argv, job_dir), limits)


def run_capped(cmd: Sequence[str], limits: JailLimits) -> JailResult:
    """Run ``cmd`` in its own session under rlimits; kill the group at the deadline."""

    def set_limits() -> None:  # in the child, before exec
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    started = time.monotonic()
    deadline = started + limits.wall_s
    proc = subprocess.Popen(
        list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=set_limits, start_new_session=True,
    )
    assert proc.stdout is not None
    kept = bytearray()
    truncated = timed_out = False
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            if not sel.select(remaining):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            room = limits.output_bytes - len(kept)
            kept += chunk[: max(room, 0)]
            if len(chunk) > room:
                truncated = True  # 10^6 error messages: stop the compiler, keep the head
                break
    if timed_out or truncated:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.stdout.close()
    try:
        returncode = proc.wait(timeout=max(deadline - time.monotonic(), 0) + 1)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        returncode = proc.wait()
    return JailResult(returncode, bytes(kept), truncated, timed_out, time.monotonic() - started)


@contextlib.contextmanager
def job_directory(root: Path) -> Iterator[Path]:
    """A private directory for one compile, removed without following planted symlinks."""
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = Path(tempfile.mkdtemp(prefix="compile-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def read_output(job_dir: Path, name: str, max_bytes: int) -> bytes | None:
    """Read a file the compiler wrote, refusing symlinks and anything but a regular file."""
    dir_fd = os.open(job_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError:
        return None
    finally:
        os.close(dir_fd)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
            return None
        return f.read(max_bytes + 1)[:max_bytes]


def elf_closure(binary: Path) -> list[Path]:
    """The binary and every shared library it loads (via ldd), as host paths."""
    out = subprocess.run(
        ["ldd", str(binary)], capture_output=True, text=True, check=False, timeout=30
    ).stdout
    paths = [binary]
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                paths.append(Path(target))
        elif parts and parts[0].startswith("/"):
            paths.append(Path(parts[0]))
    return paths


@functools.lru_cache(maxsize=1)
def check_jail() -> str | None:
    """None when the jail works here, else why not (cached per process)."""
    if shutil.which(BWRAP) is None:
        return "bubblewrap (bwrap) is not installed; source jobs are disabled"
    with tempfile.TemporaryDirectory() as tmp:
        jail = Jail(binds=[])
        try:
            proc = subprocess.run(
                jail.command(["/nonexistent-probe"], Path(tmp)),
                capture_output=True, text=True, timeout=10, check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bwrap cannot run: {exc}"
    # The probe command does not exist: bwrap reaching execvp proves namespaces work.
    if "execvp" in proc.stderr:
        return None
    return f"bwrap cannot create namespaces: {proc.stderr.strip()[:300]}"


def require_jail() -> None:
    problem = check_jail()
    if problem is not None:
        raise JailUnavailableError(problem)
