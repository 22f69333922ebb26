"""The jail pool's seccomp profile (helm/warden/files/jail-seccomp.json) does what the chart
says, on a real kernel: loaded into a process as a container runtime loads a Localhost
profile, the native compile jail (bwrap) compiles and runs Rust under it; without the few
syscalls it adds for the jail, the same job is ``unsupported`` (jail unavailable); and
the calls RuntimeDefault refuses stay refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROFILE = ROOT / "helm" / "warden" / "files" / "jail-seccomp.json"
EXEC = Path(__file__).with_name("seccomp_exec.py")



def _run(tmp_path: Path, drop: str, *argv: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("bwrap") is None:
        pytest.fail("bwrap is not installed: scripts/install.sh installs it (bubblewrap)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARDEN_")}
    env["WARDEN_DATA_DIR"] = str(tmp_path / "data")  # no compile cache from another run
    return subprocess.run([sys.executable, str(EXEC), str(PROFILE), drop, *argv], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def _rust(tmp_path: Path) -> Path:
    word = uuid.uuid4().hex[:8]
    source = tmp_path / f"{word}.rs"
    source.write_text(f'fn main() {{ println!("jailed {word}"); }}\n')
    return source


def test_the_jail_compiles_rust_under_the_profile(tmp_path: Path) -> None:
    source = _rust(tmp_path)
    done = _run(tmp_path, "", sys.executable, "-m", "service.cli", "run", str(source))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"jailed {source.stem}\n"
    assert "status=ok" in done.stderr


def test_without_the_jail_extras_the_job_is_unsupported(tmp_path: Path) -> None:
    source = _rust(tmp_path)
    done = _run(tmp_path, "unshare,mount,umount2,pivot_root", sys.executable, "-m",
                "service.cli", "run", str(source))
    assert "status=unsupported" in done.stderr, done.stderr
    assert "compile jail unavailable" in done.stderr


def test_what_runtime_default_refuses_stays_refused(tmp_path: Path) -> None:
    probe = ("import ctypes, os\n"
             "libc = ctypes.CDLL(None, use_errno=True)\n"
             "for name, number in (('keyctl', 250), ('ptrace', 101), ('bpf', 321),\n"
             "                     ('kexec_load', 246), ('perf_event_open', 298)):\n"
             "    result = libc.syscall(number, 0, 0, 0, 0, 0)\n"
             "    print(name, result, ctypes.get_errno())\n")
    if os.uname().machine != "x86_64":
        pytest.skip("syscall numbers are x86_64's")
    done = _run(tmp_path, "", sys.executable, "-c", probe)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines == [word for name in ("keyctl", "ptrace", "bpf", "kexec_load",
                                       "perf_event_open") for word in (name, "-1", "1")]
