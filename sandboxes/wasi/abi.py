"""WASI preview1 as the guest sees it: errno values, flags, rights and struct layouts.

Numbers are those of ``wasi_snapshot_preview1.witx``; layouts are little-endian with the
witx alignment (wasmtime traps on a misaligned or out-of-bounds pointer, so Warden does too).
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Final


class Errno(IntEnum):
    """The errno values Warden's WASI functions return (a subset of witx ``errno``)."""

    SUCCESS = 0
    ACCES = 2
    BADF = 8
    BUSY = 10
    DQUOT = 19
    EXIST = 20
    FAULT = 21
    FBIG = 22
    ILSEQ = 25
    INVAL = 28
    IO = 29
    ISDIR = 31
    LOOP = 32
    MFILE = 33
    NAMETOOLONG = 37
    NOENT = 44
    NOSPC = 51
    NOSYS = 52
    NOTDIR = 54
    NOTEMPTY = 55
    NOTSOCK = 57
    NOTSUP = 58
    OVERFLOW = 61
    PERM = 63
    ROFS = 69
    SPIPE = 70
    XDEV = 75


class Filetype(IntEnum):
    UNKNOWN = 0
    CHARACTER_DEVICE = 2
    DIRECTORY = 3
    REGULAR_FILE = 4
    SYMBOLIC_LINK = 7


# oflags (u16)
O_CREAT: Final = 1
O_DIRECTORY: Final = 2
O_EXCL: Final = 4
O_TRUNC: Final = 8
OFLAGS_ALL: Final = 0xF

# fdflags (u16)
FDFLAG_APPEND: Final = 1
FDFLAG_DSYNC: Final = 2
FDFLAG_NONBLOCK: Final = 4
FDFLAG_RSYNC: Final = 8
FDFLAG_SYNC: Final = 16
FDFLAGS_ALL: Final = 0x1F

LOOKUP_SYMLINK_FOLLOW: Final = 1

# fstflags (u16)
FST_ATIM: Final = 1
FST_ATIM_NOW: Final = 2
FST_MTIM: Final = 4
FST_MTIM_NOW: Final = 8
FSTFLAGS_ALL: Final = 0xF

WHENCE_SET: Final = 0
WHENCE_CUR: Final = 1
WHENCE_END: Final = 2

ADVICE_MAX: Final = 5  # normal .. noreuse

# rights (u64): one bit per operation, 30 of them.
RIGHT_FD_DATASYNC: Final = 1 << 0
RIGHT_FD_READ: Final = 1 << 1
RIGHT_FD_SEEK: Final = 1 << 2
RIGHT_FD_FDSTAT_SET_FLAGS: Final = 1 << 3
RIGHT_FD_SYNC: Final = 1 << 4
RIGHT_FD_TELL: Final = 1 << 5
RIGHT_FD_WRITE: Final = 1 << 6
RIGHT_FD_ADVISE: Final = 1 << 7
RIGHT_FD_ALLOCATE: Final = 1 << 8
RIGHT_PATH_CREATE_DIRECTORY: Final = 1 << 9
RIGHT_PATH_CREATE_FILE: Final = 1 << 10
RIGHT_PATH_LINK_SOURCE: Final = 1 << 11
RIGHT_PATH_LINK_TARGET: Final = 1 << 12
RIGHT_PATH_OPEN: Final = 1 << 13
RIGHT_FD_READDIR: Final = 1 << 14
RIGHT_PATH_READLINK: Final = 1 << 15
RIGHT_PATH_RENAME_SOURCE: Final = 1 << 16
RIGHT_PATH_RENAME_TARGET: Final = 1 << 17
RIGHT_PATH_FILESTAT_GET: Final = 1 << 18
RIGHT_PATH_FILESTAT_SET_SIZE: Final = 1 << 19
RIGHT_PATH_FILESTAT_SET_TIMES: Final = 1 << 20
RIGHT_FD_FILESTAT_GET: Final = 1 << 21
RIGHT_FD_FILESTAT_SET_SIZE: Final = 1 << 22
RIGHT_FD_FILESTAT_SET_TIMES: Final = 1 << 23
RIGHT_PATH_SYMLINK: Final = 1 << 24
RIGHT_PATH_REMOVE_DIRECTORY: Final = 1 << 25
RIGHT_PATH_UNLINK_FILE: Final = 1 << 26
RIGHT_POLL_FD_READWRITE: Final = 1 << 27
RIGHT_SOCK_SHUTDOWN: Final = 1 << 28
RIGHT_SOCK_ACCEPT: Final = 1 << 29
RIGHTS_ALL: Final = (1 << 30) - 1

# What a preopened directory reports (wasmtime's fixed set, which userlands expect).
PREOPEN_RIGHTS_BASE: Final = (
    RIGHT_PATH_CREATE_DIRECTORY | RIGHT_PATH_CREATE_FILE | RIGHT_PATH_LINK_SOURCE
    | RIGHT_PATH_LINK_TARGET | RIGHT_PATH_OPEN | RIGHT_FD_READDIR | RIGHT_PATH_READLINK
    | RIGHT_PATH_RENAME_SOURCE | RIGHT_PATH_RENAME_TARGET | RIGHT_PATH_SYMLINK
    | RIGHT_PATH_REMOVE_DIRECTORY | RIGHT_PATH_UNLINK_FILE | RIGHT_PATH_FILESTAT_GET
    | RIGHT_PATH_FILESTAT_SET_TIMES | RIGHT_FD_FILESTAT_GET | RIGHT_FD_FILESTAT_SET_TIMES
)
PREOPEN_RIGHTS_INHERITING: Final = PREOPEN_RIGHTS_BASE | (
    RIGHT_FD_DATASYNC | RIGHT_FD_READ | RIGHT_FD_SEEK | RIGHT_FD_FDSTAT_SET_FLAGS
    | RIGHT_FD_SYNC | RIGHT_FD_TELL | RIGHT_FD_WRITE | RIGHT_FD_ADVISE | RIGHT_FD_ALLOCATE
    | RIGHT_FD_FILESTAT_GET | RIGHT_FD_FILESTAT_SET_SIZE | RIGHT_FD_FILESTAT_SET_TIMES
    | RIGHT_POLL_FD_READWRITE
)

EVENTTYPE_CLOCK: Final = 0
EVENTTYPE_FD_READ: Final = 1
EVENTTYPE_FD_WRITE: Final = 2
SUBCLOCK_ABSTIME: Final = 1
CLOCK_REALTIME: Final = 0
CLOCK_MONOTONIC: Final = 1

# Layouts: struct, alignment.
FDSTAT: Final = struct.Struct("<BxH4xQQ")  # filetype, flags, rights base, inheriting: 24
FDSTAT_ALIGN: Final = 8
FILESTAT: Final = struct.Struct("<QQB7xQQQQQ")  # dev ino type nlink size atim mtim ctim: 64
FILESTAT_ALIGN: Final = 8
PRESTAT: Final = struct.Struct("<B3xI")  # tag (0: dir), name length: 8
PRESTAT_ALIGN: Final = 4
DIRENT: Final = struct.Struct("<QQIB3x")  # d_next, d_ino, d_namlen, d_type: 24
IOVEC: Final = struct.Struct("<II")  # buf, buf_len: 8
IOVEC_ALIGN: Final = 4
SUBSCRIPTION: Final = struct.Struct("<QB7xIxxxxQQH6x")  # userdata tag clock-id timeout ...: 48
SUBSCRIPTION_FD: Final = struct.Struct("<QB7xI")  # userdata, tag, fd (the fd_readwrite arm)
EVENT: Final = struct.Struct("<QHBxxxxxQH6x")  # userdata errno type nbytes flags: 32
EVENT_ALIGN: Final = 8
