"""One run's WASI preview1 descriptors and every fd_*/path_* call, over memfs trees.

``RunFiles`` is the guest's whole view of files: fds 0-2 (stdin from memory, stdout and
stderr into the run's capped sinks), one preopen per granted tree, and what the guest
opens, at most ``MAX_OPEN_FDS`` at a time (EMFILE past it: one job cannot hold more than
that, and none of them is a host descriptor). Numbering, rights and errnos follow
wasmtime 50's preview1 (``crates/wasi/src/p1.rs``), so programs behave as they did on it.

Each method takes the call's ``GuestMemory`` and the guest's arguments as unsigned ints,
returns nothing (success) or a value, and raises ``FsError`` (an errno for the guest) or
``GuestFault`` (the call traps). ``sandboxes.wasi.preview1`` binds them to the linker.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Final

from sandboxes.metering.host_costs import ITEM_FUEL, MAX_TRANSFER_BYTES
from sandboxes.runtime.control import RunControl
from sandboxes.runtime.output import CappedSink
from sandboxes.runtime.streams import ByteStream, StreamStoppedError
from sandboxes.wasi import abi
from sandboxes.wasi.abi import Errno, Filetype
from sandboxes.wasi.guest_memory import GuestFault, GuestMemory
from sandboxes.wasi.memfs import (
    DIR_SIZE,
    MAX_PATH_BYTES,
    Dir,
    File,
    FileData,
    FsError,
    Node,
    Quota,
    ReadOnlyData,
    Tree,
    lookup,
    lookup_parent,
)

MAX_OPEN_FDS: Final = 1024  # descriptors one run may hold open (stdio and preopens included)
MAX_IOVS: Final = 1024  # IOV_MAX: a longer iovec array is EINVAL
_U64: Final = 1 << 64


class Kind(Enum):
    STDIN = "stdin"
    STDOUT = "stdout"
    STDERR = "stderr"
    FILE = "file"
    DIR = "dir"


@dataclass(slots=True)
class Descriptor:
    kind: Kind
    node: Node | None = None
    readable: bool = False
    writable: bool = False
    append: bool = False
    nonblock: bool = False
    position: int = 0
    preopen: str | None = None  # the guest path of a preopened directory

    @property
    def file(self) -> File:
        assert isinstance(self.node, File)
        return self.node

    @property
    def dir(self) -> Dir:
        assert isinstance(self.node, Dir)
        return self.node


class RunFiles:
    """The descriptor table and filesystem of one run."""

    def __init__(
        self,
        stdin: bytes | ByteStream,
        stdout: CappedSink,
        stderr: CappedSink,
        files: Mapping[str, bytes] | None = None,
        scratch: tuple[str, Quota] | None = None,
        control: RunControl | None = None,
        system_files: Mapping[str, ReadOnlyData] | None = None,
        scratch_seed: Mapping[str, bytes] | None = None,
    ) -> None:
        self._stdin = stdin
        self._control = control  # a stdin stream's reads wait on it
        self.scratch: Tree | None = None
        self._stdin_pos = 0
        self._sinks = {Kind.STDOUT: stdout, Kind.STDERR: stderr}
        inodes = itertools.count(1)
        self._fds: dict[int, Descriptor] = {
            0: Descriptor(Kind.STDIN, readable=True),
            1: Descriptor(Kind.STDOUT, writable=True),
            2: Descriptor(Kind.STDERR, writable=True),
        }
        self._free: set[int] = set()
        self.trees: list[Tree] = []
        if files or system_files:
            tree = Tree(False, None, inodes)
            for name, data in (system_files or {}).items():
                tree.add_file(name, data)
            for name, data in (files or {}).items():
                tree.add_file(name, data)
            self._preopen(tree, "/")
        if scratch is not None:
            guest_path, quota = scratch
            self.scratch = Tree(True, quota, inodes)
            for name, data in (scratch_seed or {}).items():
                quota.charge_entry()
                quota.charge_bytes(len(data))
                self.scratch.add_file(name, bytearray(data))
            self._preopen(self.scratch, guest_path)

    def _preopen(self, tree: Tree, guest_path: str) -> None:
        self.trees.append(tree)
        self._push(Descriptor(Kind.DIR, tree.root, readable=True, preopen=guest_path))

    def close_all(self) -> None:
        """Drop every descriptor and tree (after the run; nothing on the host to remove)."""
        self._fds.clear()
        for tree in self.trees:
            _dismantle(tree.root)
        self.trees.clear()

    # -- the table -------------------------------------------------------------------------
    def _push(self, desc: Descriptor) -> int:
        if len(self._fds) >= MAX_OPEN_FDS:
            raise FsError(Errno.MFILE)
        if self._free:
            fd = max(self._free)  # wasmtime reuses the highest freed number first
            self._free.discard(fd)
        else:
            fd = max(self._fds, default=-1) + 1
        self._fds[fd] = desc
        if isinstance(desc.node, File):
            desc.node.opened += 1
        return fd

    def _get(self, fd: int) -> Descriptor:
        desc = self._fds.get(fd)
        if desc is None:
            raise FsError(Errno.BADF)
        return desc

    def _file(self, fd: int) -> Descriptor:
        desc = self._get(fd)
        if desc.kind is not Kind.FILE:
            raise FsError(Errno.BADF)
        return desc

    def _seekable(self, fd: int) -> Descriptor:
        desc = self._get(fd)
        if desc.kind in (Kind.STDIN, Kind.STDOUT, Kind.STDERR):
            raise FsError(Errno.SPIPE)
        if desc.kind is not Kind.FILE:
            raise FsError(Errno.BADF)
        return desc

    def _dir(self, fd: int) -> Descriptor:
        desc = self._get(fd)
        if desc.kind is not Kind.DIR:
            raise FsError(Errno.BADF)
        return desc

    def _node(self, fd: int) -> Node:
        """A file or directory descriptor's node (stdio has none: EBADF)."""
        desc = self._get(fd)
        if desc.node is None:
            raise FsError(Errno.BADF)
        return desc.node

    # -- reading and writing ---------------------------------------------------------------
    def fd_read(self, mem: GuestMemory, fd: int, iovs: int, iovs_len: int,
                nread_ptr: int) -> None:
        bufs = _iovecs(mem, iovs, iovs_len)
        desc = self._get(fd)
        if desc.kind is Kind.STDIN and isinstance(self._stdin, ByteStream):
            total = self._read_stream(mem, bufs, self._stdin)
        elif desc.kind is Kind.STDIN:
            data = self._stdin
            assert not isinstance(data, ByteStream)
            total = self._scatter(mem, bufs, data, self._stdin_pos)
            self._stdin_pos += total
        elif desc.kind is Kind.FILE and desc.readable:
            total = self._scatter(mem, bufs, desc.file.data, desc.position)
            desc.position += total
        else:
            raise FsError(Errno.BADF)
        mem.put_u32(nread_ptr, total)

    def _read_stream(self, mem: GuestMemory, bufs: list[tuple[int, int]],
                     stream: ByteStream) -> int:
        ptr, length = bufs[0]
        mem.check(ptr, length)
        if length == 0:
            return 0
        assert self._control is not None
        try:
            data = stream.read(length, self._control)
        except StreamStoppedError:
            raise GuestFault("the run was stopped while waiting for input") from None
        mem.write(ptr, data)
        return len(data)

    def scratch_files(self, max_files: int, max_bytes: int) -> dict[str, bytes]:
        """The regular files at the top of the scratch dir (in Warden's memory), each cut
        to ``max_bytes``: how a checker's feedback dir is read back."""
        if self.scratch is None:
            return {}
        found: dict[str, bytes] = {}
        for name, node in sorted(self.scratch.root.entries.items())[:max_files]:
            if isinstance(node, File):
                found[name] = node.read_at(0, max_bytes)
        return found

    def fd_pread(self, mem: GuestMemory, fd: int, iovs: int, iovs_len: int, offset: int,
                 nread_ptr: int) -> None:
        bufs = _iovecs(mem, iovs, iovs_len)
        desc = self._get(fd)
        if desc.kind is Kind.STDIN:
            raise FsError(Errno.SPIPE)
        if desc.kind is not Kind.FILE or not desc.readable:
            raise FsError(Errno.BADF)
        mem.put_u32(nread_ptr, self._scatter(mem, bufs, desc.file.data, offset))

    @staticmethod
    def _scatter(mem: GuestMemory, bufs: list[tuple[int, int]], data: FileData,
                 offset: int) -> int:
        """Copy ``data[offset:]`` into the guest's buffer (one copy); the count copied."""
        ptr, length = bufs[0]
        count = max(min(length, len(data) - offset), 0)
        with memoryview(data) as source:  # released at once: a bytearray may grow later
            mem.write(ptr, source[offset:offset + count])
        return count

    def fd_write(self, mem: GuestMemory, fd: int, iovs: int, iovs_len: int,
                 nwritten_ptr: int) -> None:
        bufs = _iovecs(mem, iovs, iovs_len)
        desc = self._get(fd)
        if desc.kind in self._sinks:
            sink = self._sinks[desc.kind]
            total = 0
            for ptr, length in bufs:
                mem.check(ptr, length)
                room = sink.room()
                sink.write(mem.read(ptr, min(length, room)), length)  # a full sink drops
                total += length
        elif desc.kind is Kind.FILE and desc.writable:
            ptr, total = bufs[0]
            file = desc.file
            offset = file.size if desc.append else desc.position
            if total:  # an empty write changes nothing, wherever the offset is
                file.write_at(offset, mem.view(ptr, total))  # charged before it is copied
            desc.position = file.size if desc.append else offset + total
        else:
            raise FsError(Errno.BADF)
        mem.put_u32(nwritten_ptr, total)

    def fd_pwrite(self, mem: GuestMemory, fd: int, iovs: int, iovs_len: int, offset: int,
                  nwritten_ptr: int) -> None:
        bufs = _iovecs(mem, iovs, iovs_len)
        desc = self._get(fd)
        if desc.kind in self._sinks:
            raise FsError(Errno.SPIPE)
        if desc.kind is not Kind.FILE or not desc.writable:
            raise FsError(Errno.BADF)
        ptr, total = bufs[0]
        file = desc.file
        if total:  # Linux: append wins over the offset
            file.write_at(file.size if desc.append else offset, mem.view(ptr, total))
        mem.put_u32(nwritten_ptr, total)

    def fd_seek(self, mem: GuestMemory, fd: int, offset: int, whence: int,
                newoffset_ptr: int) -> None:
        if whence > abi.WHENCE_END:
            raise _invalid("whence", whence)
        desc = self._seekable(fd)
        delta = offset - _U64 if offset >= 1 << 63 else offset  # filedelta is signed
        if whence == abi.WHENCE_SET:
            position = delta
        elif whence == abi.WHENCE_CUR:
            position = desc.position + delta
        else:
            position = desc.file.size + delta
        if not 0 <= position < _U64:
            raise FsError(Errno.INVAL)
        desc.position = position
        mem.put_u64(newoffset_ptr, position)

    def fd_tell(self, mem: GuestMemory, fd: int, offset_ptr: int) -> None:
        mem.put_u64(offset_ptr, self._seekable(fd).position)

    # -- descriptor state ------------------------------------------------------------------
    def fd_close(self, mem: GuestMemory, fd: int) -> None:
        desc = self._fds.pop(fd, None)
        if desc is None:
            raise FsError(Errno.BADF)
        self._free.add(fd)
        if isinstance(desc.node, File):
            desc.node.opened -= 1
            desc.node.closed_or_unlinked()

    def fd_renumber(self, mem: GuestMemory, fd: int, to: int) -> None:
        if to not in self._fds or fd not in self._fds:
            raise FsError(Errno.BADF)
        if fd == to:
            return
        replaced = self._fds[to]
        self._fds[to] = self._fds.pop(fd)
        self._free.add(fd)
        if isinstance(replaced.node, File):
            replaced.node.opened -= 1
            replaced.node.closed_or_unlinked()

    def fd_fdstat_get(self, mem: GuestMemory, fd: int, buf: int) -> None:
        desc = self._get(fd)
        if desc.kind is Kind.STDIN:
            values = (Filetype.UNKNOWN, 0, abi.RIGHT_FD_READ, abi.RIGHT_FD_READ)
        elif desc.kind in self._sinks:
            values = (Filetype.UNKNOWN, 0, abi.RIGHT_FD_WRITE, abi.RIGHT_FD_WRITE)
        elif desc.preopen is not None:
            values = (Filetype.DIRECTORY, 0, abi.PREOPEN_RIGHTS_BASE,
                      abi.PREOPEN_RIGHTS_INHERITING)
        else:
            rights = abi.RIGHTS_ALL
            if desc.kind is Kind.DIR:
                rights &= ~(abi.RIGHT_FD_SEEK | abi.RIGHT_FD_FILESTAT_SET_SIZE
                            | abi.RIGHT_PATH_FILESTAT_SET_SIZE)
            if not desc.readable:
                rights &= ~(abi.RIGHT_FD_READ | abi.RIGHT_FD_READDIR)
            if not desc.writable:
                rights &= ~abi.RIGHT_FD_WRITE
            flags = (abi.FDFLAG_APPEND if desc.append else 0) | (
                abi.FDFLAG_NONBLOCK if desc.nonblock else 0)
            assert desc.node is not None
            values = (desc.node.filetype, flags, rights, rights)
        mem.pack(abi.FDSTAT, buf, abi.FDSTAT_ALIGN, *values)

    def fd_fdstat_set_flags(self, mem: GuestMemory, fd: int, flags: int) -> None:
        if flags & ~abi.FDFLAGS_ALL:
            raise _invalid("fdflags", flags)
        desc = self._file(fd)
        if flags & (abi.FDFLAG_DSYNC | abi.FDFLAG_SYNC | abi.FDFLAG_RSYNC):
            raise FsError(Errno.INVAL)
        desc.append = bool(flags & abi.FDFLAG_APPEND)
        desc.nonblock = bool(flags & abi.FDFLAG_NONBLOCK)

    def fd_fdstat_set_rights(self, mem: GuestMemory, fd: int, base: int, inheriting: int) -> None:
        if (base | inheriting) & ~abi.RIGHTS_ALL:
            raise _invalid("rights", base | inheriting)
        self._node(fd)
        raise FsError(Errno.NOTSUP)

    def fd_filestat_get(self, mem: GuestMemory, fd: int, buf: int) -> None:
        desc = self._get(fd)
        if desc.node is None:  # stdio: all zero but the type
            mem.pack(abi.FILESTAT, buf, abi.FILESTAT_ALIGN, 0, 0, Filetype.UNKNOWN, 0, 0, 0, 0, 0)
            return
        _put_filestat(mem, buf, desc.node)

    def fd_filestat_set_size(self, mem: GuestMemory, fd: int, size: int) -> None:
        desc = self._file(fd)
        if not desc.file.tree.writable:
            raise FsError(Errno.PERM)
        if not desc.writable:
            raise FsError(Errno.INVAL)  # ftruncate of a descriptor not open for writing
        desc.file.resize(size)

    def fd_filestat_set_times(self, mem: GuestMemory, fd: int, atim: int, mtim: int,
                              fst_flags: int) -> None:
        times = _new_times(atim, mtim, fst_flags)
        _set_times(self._node(fd), times)

    def fd_advise(self, mem: GuestMemory, fd: int, offset: int, length: int,
                  advice: int) -> None:
        if advice > abi.ADVICE_MAX:
            raise _invalid("advice", advice)
        self._file(fd)
        if offset + length >= _U64:
            raise FsError(Errno.INVAL)

    def fd_allocate(self, mem: GuestMemory, fd: int, offset: int, length: int) -> None:
        self._file(fd)
        raise FsError(Errno.NOTSUP)  # as wasmtime 50 (posix_fallocate is not in WASI P2)

    def fd_datasync(self, mem: GuestMemory, fd: int) -> None:
        self._file(fd)

    def fd_sync(self, mem: GuestMemory, fd: int) -> None:
        self._file(fd)

    def fd_prestat_get(self, mem: GuestMemory, fd: int, buf: int) -> None:
        desc = self._get(fd)
        if desc.preopen is None:
            raise FsError(Errno.BADF)
        mem.pack(abi.PRESTAT, buf, abi.PRESTAT_ALIGN, 0, len(desc.preopen.encode()))

    def fd_prestat_dir_name(self, mem: GuestMemory, fd: int, path: int, path_len: int) -> None:
        desc = self._get(fd)
        if desc.preopen is None:
            raise FsError(Errno.NOTDIR)
        name = desc.preopen.encode()
        if len(name) > path_len:
            raise FsError(Errno.NAMETOOLONG)
        mem.write(path, name)

    def fd_readdir(self, mem: GuestMemory, fd: int, buf: int, buf_len: int, cookie: int,
                   bufused_ptr: int) -> None:
        directory = self._dir(fd).dir
        mem.check(buf, buf_len)
        listing, sorted_now = directory.listing()
        mem.cost += sorted_now * ITEM_FUEL
        out = bytearray()
        for index in range(cookie, len(listing) + 2) if cookie < len(listing) + 2 else ():
            name, node = (".", directory) if index < 2 else listing[index - 2]
            if index == 1:
                name = ".."
            mem.cost += ITEM_FUEL
            encoded = name.encode()
            out += abi.DIRENT.pack(index + 1, node.ino, len(encoded), node.filetype) + encoded
            if len(out) >= buf_len:
                break
        del out[buf_len:]  # the last entry may be cut short: the guest asks again
        mem.write(buf, out)
        mem.put_u32(bufused_ptr, len(out))

    # -- paths -----------------------------------------------------------------------------
    @staticmethod
    def _path(mem: GuestMemory, ptr: int, length: int) -> bytes:
        """The guest's path argument; not UTF-8 is EILSEQ before anything else is checked,
        but a path past PATH_MAX is ENAMETOOLONG before a byte of it is copied."""
        mem.check(ptr, length)
        if length >= MAX_PATH_BYTES:
            raise FsError(Errno.NAMETOOLONG)
        raw = mem.read(ptr, length)
        mem.cost += length  # split and walked component by component
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FsError(Errno.ILSEQ) from None
        return raw

    def _mutable_dir(self, fd: int) -> Dir:
        """A directory descriptor for a call that changes its tree: a read-only tree is
        EPERM before the path is looked up (as wasmtime checks its preopen's permissions)."""
        directory = self._dir(fd).dir
        directory.tree.check_writable()
        return directory

    def path_open(self, mem: GuestMemory, fd: int, dirflags: int, path: int, path_len: int,
                  oflags: int, rights_base: int, rights_inheriting: int, fdflags: int,
                  fd_ptr: int) -> None:
        for what, value, known in (("lookupflags", dirflags, abi.LOOKUP_SYMLINK_FOLLOW),
                                   ("oflags", oflags, abi.OFLAGS_ALL),
                                   ("rights", rights_base | rights_inheriting, abi.RIGHTS_ALL),
                                   ("fdflags", fdflags, abi.FDFLAGS_ALL)):
            if value & ~known:
                raise _invalid(what, value)
        raw = self._path(mem, path, path_len)
        start = self._get(fd)
        if start.kind is Kind.FILE:
            raise FsError(Errno.NOTDIR)
        if start.kind is not Kind.DIR:
            raise FsError(Errno.BADF)
        mem.check(fd_ptr, 4, 4)
        create, exclusive = oflags & abi.O_CREAT, oflags & abi.O_EXCL
        truncate, directory_only = oflags & abi.O_TRUNC, oflags & abi.O_DIRECTORY
        # wasmtime: a file is opened for writing with the FD_WRITE right or when it may be
        # created; with neither read nor write asked for it is opened for reading
        write = bool(rights_base & abi.RIGHT_FD_WRITE) or bool(create)
        read = bool(rights_base & abi.RIGHT_FD_READ) or not write
        tree = start.dir.tree
        if directory_only and (create or exclusive or truncate):
            raise FsError(Errno.INVAL)
        if not tree.writable and (create or truncate or write):
            raise FsError(Errno.PERM)
        if fdflags & (abi.FDFLAG_DSYNC | abi.FDFLAG_RSYNC | abi.FDFLAG_SYNC):
            raise FsError(Errno.NOTSUP)
        if create:
            parent, name, trailing = lookup_parent(start.dir, raw)
            node = parent.entries.get(name) if name not in (".", "..") else parent
            if node is None:
                if trailing:
                    raise FsError(Errno.ISDIR)
                node = tree.create_file(parent, name)
            elif exclusive:
                raise FsError(Errno.EXIST)
        else:
            node = lookup(start.dir, raw)
        if isinstance(node, Dir):
            if write or truncate:
                raise FsError(Errno.ISDIR)
            desc = Descriptor(Kind.DIR, node, readable=read)
        else:
            assert isinstance(node, File)
            if directory_only:
                raise FsError(Errno.NOTDIR)
            if truncate:
                node.resize(0)
            desc = Descriptor(Kind.FILE, node, readable=read, writable=write,
                              append=bool(fdflags & abi.FDFLAG_APPEND),
                              nonblock=bool(fdflags & abi.FDFLAG_NONBLOCK))
        mem.put_u32(fd_ptr, self._push(desc))

    def path_create_directory(self, mem: GuestMemory, fd: int, path: int, path_len: int) -> None:
        raw = self._path(mem, path, path_len)
        parent, name, _ = lookup_parent(self._mutable_dir(fd), raw)
        if name in (".", ".."):
            raise FsError(Errno.EXIST)
        parent.tree.create_dir(parent, name)

    def path_remove_directory(self, mem: GuestMemory, fd: int, path: int, path_len: int) -> None:
        raw = self._path(mem, path, path_len)
        parent, name, trailing = lookup_parent(self._mutable_dir(fd), raw)
        if name in (".", ".."):
            raise FsError(Errno.INVAL)
        if trailing and not isinstance(parent.entries.get(name), File):
            raise FsError(Errno.INVAL)  # wasmtime: ``rmdir d/`` is EINVAL, ``rmdir f/`` ENOTDIR
        parent.tree.remove_dir(parent, name)

    def path_unlink_file(self, mem: GuestMemory, fd: int, path: int, path_len: int) -> None:
        raw = self._path(mem, path, path_len)
        parent, name, trailing = lookup_parent(self._mutable_dir(fd), raw)
        if name in (".", ".."):
            raise FsError(Errno.ISDIR)
        node = parent.entries.get(name)
        if trailing and isinstance(node, File):
            raise FsError(Errno.NOTDIR)
        parent.tree.unlink(parent, name)

    def path_rename(self, mem: GuestMemory, fd: int, old: int, old_len: int, new_fd: int,
                    new: int, new_len: int) -> None:
        old_raw = self._path(mem, old, old_len)
        new_raw = self._path(mem, new, new_len)
        src_start = self._mutable_dir(fd)
        dst_start = self._mutable_dir(new_fd)
        src, src_name, src_slash = lookup_parent(src_start, old_raw)
        dst, dst_name, dst_slash = lookup_parent(dst_start, new_raw)
        if src.tree is not dst.tree:
            raise FsError(Errno.XDEV)
        if src_name in (".", "..") or dst_name in (".", ".."):
            raise FsError(Errno.BUSY)  # a directory itself (a preopen's root included)
        node = src.entries.get(src_name)
        if (src_slash or dst_slash) and isinstance(node, File):
            raise FsError(Errno.NOTDIR)
        mem.cost += src.tree.rename(src, src_name, dst, dst_name) * ITEM_FUEL

    def path_filestat_get(self, mem: GuestMemory, fd: int, flags: int, path: int,
                          path_len: int, buf: int) -> None:
        if flags & ~abi.LOOKUP_SYMLINK_FOLLOW:
            raise _invalid("lookupflags", flags)
        raw = self._path(mem, path, path_len)
        node = lookup(self._dir(fd).dir, raw)
        _put_filestat(mem, buf, node)

    def path_filestat_set_times(self, mem: GuestMemory, fd: int, flags: int, path: int,
                                path_len: int, atim: int, mtim: int, fst_flags: int) -> None:
        if flags & ~abi.LOOKUP_SYMLINK_FOLLOW:
            raise _invalid("lookupflags", flags)
        times = _new_times(atim, mtim, fst_flags)
        raw = self._path(mem, path, path_len)
        _set_times(lookup(self._dir(fd).dir, raw), times)

    def path_readlink(self, mem: GuestMemory, fd: int, path: int, path_len: int, buf: int,
                      buf_len: int, bufused_ptr: int) -> None:
        raw = self._path(mem, path, path_len)
        lookup(self._dir(fd).dir, raw)
        raise FsError(Errno.INVAL)  # it exists, and nothing here is a symbolic link

    def path_symlink(self, mem: GuestMemory, old: int, old_len: int, fd: int, new: int,
                     new_len: int) -> None:
        self._path(mem, old, old_len)
        self._path(mem, new, new_len)
        self._dir(fd)
        raise FsError(Errno.PERM)  # no links: nothing the host resolves was guest-written

    def path_link(self, mem: GuestMemory, old_fd: int, old_flags: int, old: int, old_len: int,
                  new_fd: int, new: int, new_len: int) -> None:
        if old_flags & ~abi.LOOKUP_SYMLINK_FOLLOW:
            raise _invalid("lookupflags", old_flags)
        self._path(mem, old, old_len)
        self._path(mem, new, new_len)
        self._dir(old_fd)
        self._dir(new_fd)
        if old_flags & abi.LOOKUP_SYMLINK_FOLLOW:
            raise FsError(Errno.INVAL)
        raise FsError(Errno.PERM)

    # -- sockets: none are ever granted -----------------------------------------------------
    def sock_accept(self, mem: GuestMemory, fd: int, flags: int, fd_ptr: int) -> None:
        self._get(fd)
        raise FsError(Errno.NOTSOCK)

    def sock_recv(self, mem: GuestMemory, fd: int, ri_data: int, ri_data_len: int,
                  ri_flags: int, ro_datalen: int, ro_flags: int) -> None:
        self._get(fd)
        raise FsError(Errno.NOTSOCK)

    def sock_send(self, mem: GuestMemory, fd: int, si_data: int, si_data_len: int,
                  si_flags: int, so_datalen: int) -> None:
        self._get(fd)
        raise FsError(Errno.NOTSOCK)

    def sock_shutdown(self, mem: GuestMemory, fd: int, how: int) -> None:
        self._get(fd)
        raise FsError(Errno.NOTSOCK)

    # -- poll_oneoff's view of descriptors ---------------------------------------------------
    def poll_ready(self, fd: int, write: bool) -> None:
        """Check that ``fd`` can be polled that way (it is always ready: all data is in
        memory); EBADF otherwise."""
        desc = self._get(fd)
        if desc.kind is Kind.FILE or (
            desc.kind in self._sinks if write else desc.kind is Kind.STDIN
        ):
            return
        raise FsError(Errno.BADF)


def _invalid(what: str, value: int) -> GuestFault:
    """An undefined flag or enum value: wasmtime's WASI traps on it, so Warden's does."""
    return GuestFault(f"invalid {what} value {value:#x}")


def _iovecs(mem: GuestMemory, iovs: int, iovs_len: int) -> list[tuple[int, int]]:
    """The one buffer a read or write transfers: the first non-empty iovec (or an empty
    one), as wasmtime's preview1 does, cut to ``MAX_TRANSFER_BYTES``; a short count makes
    libc call again."""
    if iovs_len > MAX_IOVS:
        raise FsError(Errno.INVAL)
    mem.check(iovs, abi.IOVEC.size * iovs_len, abi.IOVEC_ALIGN)
    raw = mem.read(iovs, abi.IOVEC.size * iovs_len)
    for i in range(iovs_len):
        ptr, length = abi.IOVEC.unpack_from(raw, abi.IOVEC.size * i)
        if length:
            mem.check(ptr, length)
            return [(ptr, min(length, MAX_TRANSFER_BYTES))]
    return [(0, 0)]


def _put_filestat(mem: GuestMemory, buf: int, node: Node) -> None:
    if isinstance(node, File):
        nlink, size = node.links, node.size
    else:
        assert isinstance(node, Dir)
        mem.cost += len(node.entries) * ITEM_FUEL  # nlink counts its subdirectories
        nlink, size = node.nlink, DIR_SIZE
    mem.pack(abi.FILESTAT, buf, abi.FILESTAT_ALIGN, 1, node.ino, node.filetype, nlink, size,
             node.atime, node.mtime, node.ctime)


def _new_times(atim: int, mtim: int, fst_flags: int) -> tuple[int | None, int | None]:
    """(atime, mtime) to set (None: unchanged) from the guest's ``fstflags``."""
    if fst_flags & ~abi.FSTFLAGS_ALL:
        raise _invalid("fstflags", fst_flags)
    now = time.time_ns()

    def pick(value: int, set_bit: int, now_bit: int) -> int | None:
        if fst_flags & set_bit and fst_flags & now_bit:
            raise FsError(Errno.INVAL)
        if fst_flags & set_bit:
            return value
        return now if fst_flags & now_bit else None

    return pick(atim, abi.FST_ATIM, abi.FST_ATIM_NOW), pick(mtim, abi.FST_MTIM, abi.FST_MTIM_NOW)


def _set_times(node: Node, times: tuple[int | None, int | None]) -> None:
    node.tree.check_writable()
    atime, mtime = times
    if atime is not None:
        node.atime = atime
    if mtime is not None:
        node.mtime = mtime
    node.ctime = time.time_ns()


def _dismantle(root: Dir) -> None:
    """Empty a tree breadth-first, so that freeing a very deep one never recurses."""
    stack: list[Dir] = [root]
    while stack:
        directory = stack.pop()
        for child in directory.entries.values():
            if isinstance(child, Dir):
                stack.append(child)
        directory.entries = {}
        directory.parent = None
