"""Write helm/warden/files/jail-seccomp.json: the jail worker pool's seccomp profile.

RuntimeDefault refuses unshare(CLONE_NEWUSER), mount and pivot_root to a container without
CAP_SYS_ADMIN, so bwrap (the native compile jail for Rust and Zig) cannot start under it.
This profile is the narrowest change that lets it: unknown syscalls are refused
(defaultAction ERRNO, so a syscall added to the kernel later is refused too); every syscall
of the kernel's table is allowed except those RuntimeDefault refuses an unprivileged
container (kernel modules, kexec, bpf, perf, the keyring, ptrace, clocks, swap, reboot,
quotas, handles, io_uring, ...); and the ones bwrap needs inside its user namespace are
allowed: the kernel still grants them only there, to a process with no capability on the
host. Run: ``python scripts/jail_seccomp.py [unistd_64.h]``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "helm" / "warden" / "files" / "jail-seccomp.json"
HEADER = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")

# What bwrap calls to build its jail (namespaces, its own mounts, the new root).
JAIL_NEEDS = frozenset({"unshare", "clone", "clone3", "setns", "mount", "umount2",
                        "pivot_root"})

REFUSED = frozenset({
    # the kernel itself: modules, kexec, reboot, swap, accounting, quotas, sysfs
    "create_module", "init_module", "finit_module", "delete_module", "get_kernel_syms",
    "query_module", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "acct",
    "quotactl", "quotactl_fd", "sysfs", "_sysctl", "uselib", "ustat", "nfsservctl",
    "syslog", "vhangup", "lookup_dcookie",
    # observing or steering other processes, and kernel-wide facilities
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "perf_event_open", "bpf",
    "userfaultfd", "fanotify_init", "add_key", "request_key", "keyctl",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # clocks, hardware, host names
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "ioperm", "iopl",
    "sethostname", "setdomainname", "personality",
    # file handles (open any inode by number) and the new mount API (bwrap uses mount(2))
    "open_by_handle_at", "name_to_handle_at", "fsopen", "fsconfig", "fsmount", "fspick",
    "move_mount", "open_tree", "mount_setattr",
    # NUMA policy of other processes
    "move_pages", "migrate_pages", "mbind", "set_mempolicy", "get_mempolicy",
    "set_mempolicy_home_node",
})


def syscalls(header: Path) -> list[str]:
    return sorted(set(re.findall(r"#define __NR_(\w+)\s+\d+", header.read_text())))


def profile(names: list[str]) -> dict[str, object]:
    allowed = sorted((set(names) | JAIL_NEEDS) - REFUSED)
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                          "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}],
    }


def main(argv: list[str]) -> int:
    header = Path(argv[0]) if argv else HEADER
    OUT.write_text(json.dumps(profile(syscalls(header)), indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
