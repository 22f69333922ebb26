"""``python seccomp_exec.py PROFILE DROP argv...``: exec argv under a seccomp profile.

Loads a profile of the chart's shape (defaultAction ERRNO, one allow rule) with libseccomp,
minus the syscall names in DROP (comma-separated), as the container runtime would for a
pod with ``seccompProfile: Localhost``. Names this kernel's libseccomp does not know are
skipped (the runtime skips them too)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import pyseccomp


def main(argv: list[str]) -> None:
    profile = json.loads(Path(argv[0]).read_text())
    drop = set(filter(None, argv[1].split(",")))
    rules = pyseccomp.SyscallFilter(pyseccomp.ERRNO(profile["defaultErrnoRet"]))
    for name in profile["syscalls"][0]["names"]:
        if name not in drop:
            with contextlib.suppress(ValueError, RuntimeError, OSError):  # not on this arch
                rules.add_rule(pyseccomp.ALLOW, name)
    rules.load()
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
