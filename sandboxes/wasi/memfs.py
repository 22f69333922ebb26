"""The guest's filesystem, held in the worker's memory: never a host path.

Granted files form a read-only tree at ``/`` (their bytes are shared, not copied); a scratch
grant is a writable tree at ``/tmp`` whose every byte and entry is counted against its quota
*before* it is written, so no sequence of calls can hold more than the quota. Nothing is
ever created on the host, so nothing can be left behind, whatever the guest builds (depth,
names, open descriptors), and the host never follows a path the guest wrote.

Semantics follow wasmtime 50's preview1 over a host directory (cap-std): paths are relative
to a directory descriptor and may not climb above it (``..`` past it or an absolute path is
EPERM); no symbolic or hard links can be made. Operations raise ``FsError`` with the errno
the guest gets; ``QuotaExceeded`` (an FsError) also tells the run to stop.
"""

from __future__ import annotations

import mmap
import time
from collections.abc import Callable, Iterator
from typing import Final, TypeAlias

from sandboxes.wasi.abi import Errno, Filetype

MAX_PATH_BYTES: Final = 4096  # PATH_MAX: a longer path argument is ENAMETOOLONG
MAX_NAME_BYTES: Final = 255  # NAME_MAX
DIR_SIZE: Final = 4096  # what st_size says for a directory (as ext4 does)
# A read-only file's bytes: in memory, or a read-only map of a trusted toolchain file (its
# pages shared by every process that maps it, and read only when a guest reads them).
ReadOnlyData: TypeAlias = bytes | mmap.mmap
FileData: TypeAlias = ReadOnlyData | bytearray


class FsError(Exception):
    def __init__(self, errno: Errno) -> None:
        super().__init__(errno.name)
        self.errno = errno


class QuotaExceeded(FsError):  # noqa: N818 - the guest exceeded it: not a host error
    """A write, resize or new entry past the scratch quota: refused, and the run stops."""

    def __init__(self) -> None:
        super().__init__(Errno.NOSPC)


class Quota:
    """Bytes of file data and number of entries a writable tree may hold."""

    def __init__(self, max_bytes: int, max_entries: int,
                 on_exceeded: Callable[[], None]) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.bytes = 0
        self.entries = 0
        self._on_exceeded = on_exceeded

    def charge_bytes(self, delta: int) -> None:
        """Account ``delta`` more (or, negative, fewer) bytes, refusing past the quota."""
        if delta > 0 and self.bytes + delta > self.max_bytes:
            self._on_exceeded()
            raise QuotaExceeded
        self.bytes += delta

    def charge_entry(self) -> None:
        if self.entries + 1 > self.max_entries:
            self._on_exceeded()
            raise QuotaExceeded
        self.entries += 1

    def release_entry(self) -> None:
        self.entries -= 1


class Node:
    __slots__ = ("atime", "ctime", "ino", "mtime", "tree")

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.ino = tree.next_ino()
        now = time.time_ns()
        self.atime = self.mtime = self.ctime = now

    @property
    def filetype(self) -> Filetype:
        raise NotImplementedError

    def touch(self) -> None:
        self.mtime = self.ctime = time.time_ns()


class File(Node):
    """A regular file. Read-only trees share the granted ``bytes``; writable ones own a
    ``bytearray``. ``links`` is 1 while a directory names it; ``opened`` counts descriptors.
    Its bytes leave the quota only when both are 0 (an unlinked open file still holds them).
    """

    __slots__ = ("data", "links", "opened")

    def __init__(self, tree: Tree, data: FileData) -> None:
        super().__init__(tree)
        self.data = data
        self.links = 1
        self.opened = 0

    @property
    def filetype(self) -> Filetype:
        return Filetype.REGULAR_FILE

    @property
    def size(self) -> int:
        return len(self.data)

    def resize(self, size: int) -> None:
        """Truncate or zero-extend to ``size`` (the growth is charged first)."""
        data = self._writable()
        grow = size - len(data)
        self.tree.charge_bytes(grow)
        if grow > 0:
            data.extend(bytes(grow))
        else:
            del data[size:]
        self.touch()

    def write_at(self, offset: int, chunk: bytes | memoryview) -> None:
        """Write ``chunk`` at ``offset``: the growth is charged before a byte is copied."""
        data = self._writable()
        end = offset + len(chunk)
        if end > len(data):
            self.tree.charge_bytes(end - len(data))
            if offset > len(data):
                data.extend(bytes(offset - len(data)))
        data[offset:end] = chunk
        self.touch()

    def read_at(self, offset: int, n: int) -> bytes:
        return bytes(self.data[offset:offset + n])

    def _writable(self) -> bytearray:
        if not isinstance(self.data, bytearray):  # a granted file: the tree is read-only
            raise FsError(Errno.PERM)
        return self.data

    def closed_or_unlinked(self) -> None:
        """Give the bytes back once nothing can reach this file any more."""
        if self.links == 0 and self.opened == 0 and isinstance(self.data, bytearray):
            self.tree.charge_bytes(-len(self.data))
            self.data = bytearray()


class Dir(Node):
    """A directory; ``parent`` is None for a tree's root and for a removed directory."""

    __slots__ = ("_listing", "entries", "parent", "removed")

    def __init__(self, tree: Tree, parent: Dir | None) -> None:
        super().__init__(tree)
        self.entries: dict[str, Node] = {}
        self.parent = parent
        self.removed = False
        self._listing: list[tuple[str, Node]] | None = None

    def touch(self) -> None:
        """Its entries changed (every change of ``entries`` calls this)."""
        super().touch()
        self._listing = None

    def listing(self) -> tuple[list[tuple[str, Node]], int]:
        """The entries in name order (readdir's order), and how many were sorted for this
        call: the list is kept until the directory changes, so listing a big directory
        in many small reads sorts it once."""
        if self._listing is not None:
            return self._listing, 0
        self._listing = sorted(self.entries.items())
        return self._listing, len(self._listing)

    @property
    def filetype(self) -> Filetype:
        return Filetype.DIRECTORY

    @property
    def nlink(self) -> int:
        return 2 + sum(1 for n in self.entries.values() if isinstance(n, Dir))

    def is_ancestor_of(self, other: Dir) -> tuple[bool, int]:
        """Whether ``other`` is this directory or below it, and the levels climbed."""
        node: Dir | None = other
        levels = 0
        while node is not None:  # iterative: a tree may be thousands of levels deep
            if node is self:
                return True, levels
            node = node.parent
            levels += 1
        return False, levels


class Tree:
    """One preopened directory and everything under it."""

    def __init__(self, writable: bool, quota: Quota | None, inodes: Iterator[int]) -> None:
        self.writable = writable
        self.quota = quota
        self._inodes = inodes
        self.root = Dir(self, None)

    def next_ino(self) -> int:
        return next(self._inodes)

    def charge_bytes(self, delta: int) -> None:
        if self.quota is not None:
            self.quota.charge_bytes(delta)

    def check_writable(self) -> None:
        if not self.writable:
            raise FsError(Errno.PERM)

    # -- building the granted tree ---------------------------------------------------------
    def add_file(self, name: str, data: FileData) -> None:
        """Place a granted file (names were validated by the schema: plain components)."""
        *dirs, leaf = name.split("/")
        node = self.root
        for part in dirs:
            child = node.entries.get(part)
            if not isinstance(child, Dir):
                child = Dir(self, node)
                node.entries[part] = child
            node = child
        node.entries[leaf] = File(self, data)
        node.touch()

    # -- changes ---------------------------------------------------------------------------
    def create_file(self, parent: Dir, name: str) -> File:
        self.check_writable()
        _check_alive(parent)
        if self.quota is not None:
            self.quota.charge_entry()
        file = File(self, bytearray())
        parent.entries[name] = file
        parent.touch()
        return file

    def create_dir(self, parent: Dir, name: str) -> Dir:
        self.check_writable()
        _check_alive(parent)
        if name in parent.entries:
            raise FsError(Errno.EXIST)
        if self.quota is not None:
            self.quota.charge_entry()
        child = Dir(self, parent)
        parent.entries[name] = child
        parent.touch()
        return child

    def unlink(self, parent: Dir, name: str) -> None:
        self.check_writable()
        node = parent.entries.get(name)
        if node is None:
            raise FsError(Errno.NOENT)
        if isinstance(node, Dir):
            raise FsError(Errno.ISDIR)
        assert isinstance(node, File)
        del parent.entries[name]
        parent.touch()
        self._forget(node)

    def remove_dir(self, parent: Dir, name: str) -> None:
        self.check_writable()
        node = parent.entries.get(name)
        if node is None:
            raise FsError(Errno.NOENT)
        if not isinstance(node, Dir):
            raise FsError(Errno.NOTDIR)
        if node.entries:
            raise FsError(Errno.NOTEMPTY)
        del parent.entries[name]
        parent.touch()
        self._forget(node)

    def rename(self, src_dir: Dir, src_name: str, dst_dir: Dir, dst_name: str) -> int:
        """POSIX rename within this tree: replaces a file by a file or an empty directory
        by a directory, atomically. Returns the levels climbed to check it (its cost)."""
        self.check_writable()
        node = src_dir.entries.get(src_name)
        if node is None:
            raise FsError(Errno.NOENT)
        _check_alive(dst_dir)
        target = dst_dir.entries.get(dst_name)
        if target is node:
            return 0
        levels = 0
        if isinstance(node, Dir):
            inside, levels = node.is_ancestor_of(dst_dir)
            if inside:
                raise FsError(Errno.INVAL)  # a directory into itself
            if target is not None:
                if not isinstance(target, Dir):
                    raise FsError(Errno.NOTDIR)
                if target.entries:
                    raise FsError(Errno.NOTEMPTY)
        elif isinstance(target, Dir):
            raise FsError(Errno.ISDIR)
        del src_dir.entries[src_name]
        if target is not None:
            del dst_dir.entries[dst_name]
            self._forget(target)
        dst_dir.entries[dst_name] = node
        if isinstance(node, Dir):
            node.parent = dst_dir
        src_dir.touch()
        dst_dir.touch()
        node.ctime = time.time_ns()
        return levels

    def _forget(self, node: Node) -> None:
        if self.quota is not None:
            self.quota.release_entry()
        if isinstance(node, File):
            node.links = 0
            node.closed_or_unlinked()
        elif isinstance(node, Dir):
            node.parent = None
            node.removed = True


def _check_alive(directory: Dir) -> None:
    if directory.removed:  # creating inside a directory that was removed while open
        raise FsError(Errno.NOENT)


def split_path(raw: bytes) -> tuple[list[str], bool]:
    """The components of a guest path and whether it ends with a slash.

    Absolute paths and NUL bytes are refused (no preopen is reachable by an absolute path
    through a directory descriptor); over-long paths and names are ENAMETOOLONG.
    """
    if len(raw) >= MAX_PATH_BYTES:  # PATH_MAX counts the terminating NUL
        raise FsError(Errno.NAMETOOLONG)
    if not raw:
        raise FsError(Errno.NOENT)
    if b"\0" in raw:
        raise FsError(Errno.INVAL)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FsError(Errno.ILSEQ) from None
    if text.startswith("/"):
        raise FsError(Errno.PERM)
    pieces = [p for p in text.split("/") if p]
    # "." means nothing inside a path, but a last "." names the directory itself, which
    # mkdir, rmdir and rename must see (``rmdir x/.`` is EINVAL, never a removal of x)
    parts = [p for p in pieces[:-1] if p != "."] + pieces[-1:]
    if any(len(p.encode()) > MAX_NAME_BYTES for p in parts):
        raise FsError(Errno.NAMETOOLONG)
    return parts, text.endswith("/")


def walk(start: Dir, parts: list[str]) -> Node:
    """The node ``parts`` name below ``start``; ``..`` may not climb above ``start``."""
    node: Node = start
    depth = 0
    for part in parts:
        if not isinstance(node, Dir):
            raise FsError(Errno.NOTDIR)
        if part == ".":
            continue
        if part == "..":
            if depth == 0 or node.parent is None:
                raise FsError(Errno.PERM)  # out of the directory the guest holds
            node = node.parent
            depth -= 1
            continue
        child = node.entries.get(part)
        if child is None:
            raise FsError(Errno.NOENT)
        node = child
        depth += 1
    return node


def lookup(start: Dir, raw: bytes) -> Node:
    parts, trailing_slash = split_path(raw)
    node = walk(start, parts)
    if trailing_slash and not isinstance(node, Dir):
        raise FsError(Errno.NOTDIR)
    return node


def lookup_parent(start: Dir, raw: bytes) -> tuple[Dir, str, bool]:
    """(directory, last name, trailing slash) for an operation on the path's last component.

    A path whose last component is ``.`` or ``..`` (or that names ``start`` itself) has
    no name to create or remove: the name returned is then ``"."`` or ``".."``, which
    callers refuse with wasmtime's errno for each call.
    """
    parts, trailing_slash = split_path(raw)
    if not parts:
        return start, ".", trailing_slash
    *dirs, name = parts
    parent = walk(start, dirs)
    if not isinstance(parent, Dir):
        raise FsError(Errno.NOTDIR)
    if name == "..":
        walk(start, parts)  # EPERM when it climbs out of ``start``
    return parent, name, trailing_slash
