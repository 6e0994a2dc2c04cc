"""The small file interface the WAL writes through, a real one and an in-memory crashable one.

`FileSystem` is what `SegmentedLog` needs and nothing more: append-only files addressed by an
opaque handle, zeros written ahead of a file's tail (`preallocate`), whole-file reads by path,
directory listing, rename, remove, fsync of a file and of a directory, and free space. Paths are
plain POSIX strings.

A handle appends at its own end: the file's size when it was opened, advanced by each append
and reset by `truncate`. `preallocate` writes zeros after that end without moving it, so the
appends that follow overwrite blocks that already exist and an fdatasync of them has no new
size or block allocation to write back with the data (docs/design/wal.md, "Preallocation").

- `RealFs`: real files; `fsync` is `os.fdatasync` (data plus the size needed to read it back),
  `fsync_dir` fsyncs the directory so created, renamed and removed names are durable.
- `MemFs`: an in-memory disk for the deterministic simulator and tests. Each file keeps its
  "written" bytes and its "durable" bytes; `fsync` promotes written to durable, `fsync_dir`
  promotes the directory's names. `crash(rng)` forgets every non-durable name and byte, except
  that the non-durable tail of a file may partly survive: nothing, all of it, a random prefix, or
  a random subset of its 4 KiB pages (out-of-order page writeback; lost pages read as zeros when
  the size survived). Bytes overwritten in place since the last fsync (appends over preallocated
  zeros) tear the same way, page by page: each page holds its old or its new content.
  Deterministic for a given `random.Random`: files are visited in sorted order.
  `fsync_error` injects an I/O error into the next fsyncs (the EIO path).

Invariant (MemFs): durable bytes are never lost by a crash; a name is durable only after
`fsync_dir` of its directory.
"""

from __future__ import annotations

import errno
import os
import posixpath
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import random

PAGE_SIZE = 4096

FileHandle = Any   # opaque: a _RealHandle for RealFs, a _MemHandle for MemFs


class FileSystem(Protocol):
    """What the WAL needs from a disk. Every method may raise OSError."""

    def makedirs(self, directory: str) -> None: ...
    def list(self, directory: str) -> list[str]: ...           # sorted file names
    def exists(self, path: str) -> bool: ...
    def open(self, path: str, *, create: bool = False) -> FileHandle: ...  # create: must not exist
    def append(self, handle: FileHandle, data: bytes) -> None: ...         # all of it, at the handle's end
    def write_zeros(self, handle: FileHandle, offset: int, size: int) -> None: ...  # at offset >= end; end stays
    def fsync(self, handle: FileHandle) -> None: ...
    def truncate(self, handle: FileHandle, size: int) -> None: ...
    def size(self, handle: FileHandle) -> int: ...                         # the handle's end
    def close(self, handle: FileHandle) -> None: ...
    def read(self, path: str) -> bytes: ...                     # the whole file
    def remove(self, path: str) -> None: ...
    def rename(self, src: str, dst: str) -> None: ...           # atomic, replaces dst
    def fsync_dir(self, directory: str) -> None: ...
    def free_bytes(self, directory: str) -> int: ...


@dataclass(slots=True, eq=False)
class _RealHandle:
    fd: int
    end: int            # where the next append goes


class RealFs:
    """Real files through `os`; fsync is `os.fdatasync`."""

    def makedirs(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)

    def list(self, directory: str) -> list[str]:
        return sorted(os.listdir(directory))

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def open(self, path: str, *, create: bool = False) -> _RealHandle:
        flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
        if create:
            flags |= os.O_CREAT | os.O_EXCL
        fd = os.open(path, flags, 0o644)
        size = os.fstat(fd).st_size
        return _RealHandle(fd, size)

    def append(self, handle: _RealHandle, data: bytes) -> None:
        _pwrite_all(handle.fd, data, handle.end)
        handle.end += len(data)

    def write_zeros(self, handle: _RealHandle, offset: int, size: int) -> None:
        assert offset >= handle.end, (offset, handle.end)
        _pwrite_all(handle.fd, bytes(size), offset)

    def fsync(self, handle: _RealHandle) -> None:
        os.fdatasync(handle.fd)

    def truncate(self, handle: _RealHandle, size: int) -> None:
        os.ftruncate(handle.fd, size)
        handle.end = size

    def size(self, handle: _RealHandle) -> int:
        return handle.end

    def close(self, handle: _RealHandle) -> None:
        os.close(handle.fd)

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def remove(self, path: str) -> None:
        os.remove(path)

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def fsync_dir(self, directory: str) -> None:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def free_bytes(self, directory: str) -> int:
        st = os.statvfs(directory)
        return st.f_bavail * st.f_frsize


@dataclass(slots=True, eq=False)
class _Inode:
    data: bytearray = field(default_factory=bytearray)
    durable: bytes = b""


@dataclass(slots=True, eq=False)
class _MemHandle:
    inode: _Inode
    path: str
    end: int                 # where the next append goes
    closed: bool = False


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    # Bounded: each write makes progress or raises.
    while view:
        written = os.pwrite(fd, view, offset)
        assert written > 0
        view = view[written:]
        offset += written


def _norm(path: str) -> str:
    return posixpath.normpath(path)


class MemFs:
    """An in-memory disk with a crash model; see the module docstring."""

    def __init__(self, capacity_size: int = 1 << 40) -> None:
        self.capacity_size = capacity_size
        self.fsync_error: OSError | None = None   # raised by fsync/fsync_dir while set
        self._dirs: set[str] = set()
        self._entries: dict[str, _Inode] = {}
        self._durable_entries: dict[str, _Inode] = {}
        self.fsync_count = 0

    # --- directories -------------------------------------------------------------------------
    def makedirs(self, directory: str) -> None:
        d = _norm(directory)
        # Directories are durable at once: the WAL's own directory predates the log.
        while d not in ("/", ".", "") and d not in self._dirs:
            self._dirs.add(d)
            d = posixpath.dirname(d)

    def _check_dir(self, directory: str) -> str:
        d = _norm(directory)
        if d not in self._dirs:
            raise FileNotFoundError(errno.ENOENT, "no such directory", directory)
        return d

    def list(self, directory: str) -> list[str]:
        d = self._check_dir(directory)
        return sorted(posixpath.basename(p) for p in self._entries if posixpath.dirname(p) == d)

    def exists(self, path: str) -> bool:
        p = _norm(path)
        return p in self._entries or p in self._dirs

    def fsync_dir(self, directory: str) -> None:
        d = self._check_dir(directory)
        self._raise_injected()
        for p in [p for p in self._durable_entries if posixpath.dirname(p) == d]:
            del self._durable_entries[p]
        for p, inode in self._entries.items():
            if posixpath.dirname(p) == d:
                self._durable_entries[p] = inode

    def free_bytes(self, directory: str) -> int:
        self._check_dir(directory)
        return max(0, self.capacity_size - self._used_size())

    def _used_size(self) -> int:
        inodes = {id(i): i for i in self._entries.values()}
        return sum(len(i.data) for i in inodes.values())

    # --- files -------------------------------------------------------------------------------
    def open(self, path: str, *, create: bool = False) -> _MemHandle:
        p = _norm(path)
        self._check_dir(posixpath.dirname(p))
        if create:
            if p in self._entries:
                raise FileExistsError(errno.EEXIST, "file exists", path)
            self._entries[p] = _Inode()
        elif p not in self._entries:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        inode = self._entries[p]
        return _MemHandle(inode, p, len(inode.data))

    def append(self, handle: _MemHandle, data: bytes) -> None:
        assert not handle.closed
        self._write_at(handle, handle.end, data)
        handle.end += len(data)

    def write_zeros(self, handle: _MemHandle, offset: int, size: int) -> None:
        assert not handle.closed and offset >= handle.end, (offset, handle.end)
        self._write_at(handle, offset, bytes(size))

    def _write_at(self, handle: _MemHandle, offset: int, data: bytes) -> None:
        inode = handle.inode
        grow = max(0, offset + len(data) - len(inode.data))
        if self._used_size() + grow > self.capacity_size:
            raise OSError(errno.ENOSPC, "no space left on device")
        if offset > len(inode.data):
            inode.data += bytes(offset - len(inode.data))
        inode.data[offset:offset + len(data)] = data

    def fsync(self, handle: _MemHandle) -> None:
        assert not handle.closed
        self._raise_injected()
        self.fsync_count += 1
        handle.inode.durable = bytes(handle.inode.data)

    def truncate(self, handle: _MemHandle, size: int) -> None:
        assert not handle.closed
        assert 0 <= size
        del handle.inode.data[size:]
        if size > len(handle.inode.data):
            handle.inode.data += bytes(size - len(handle.inode.data))
        handle.end = size

    def size(self, handle: _MemHandle) -> int:
        return handle.end

    def close(self, handle: _MemHandle) -> None:
        handle.closed = True

    def read(self, path: str) -> bytes:
        p = _norm(path)
        if p not in self._entries:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        return bytes(self._entries[p].data)

    def remove(self, path: str) -> None:
        p = _norm(path)
        if p not in self._entries:
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        del self._entries[p]

    def rename(self, src: str, dst: str) -> None:
        s, d = _norm(src), _norm(dst)
        if s not in self._entries:
            raise FileNotFoundError(errno.ENOENT, "no such file", src)
        self._check_dir(posixpath.dirname(d))
        self._entries[d] = self._entries.pop(s)

    def _raise_injected(self) -> None:
        if self.fsync_error is not None:
            raise self.fsync_error

    # --- test helpers ------------------------------------------------------------------------
    def write_raw(self, path: str, data: bytes, *, durable: bool = True) -> None:
        """Replace a file's content (tests: damage a byte); durable by default."""
        p = _norm(path)
        inode = self._entries[p]
        inode.data = bytearray(data)
        if durable:
            inode.durable = bytes(data)

    def crash(self, rng: random.Random) -> None:
        """Power loss: keep durable names and bytes; non-durable tails may partly survive."""
        self._entries = dict(self._durable_entries)
        seen: set[int] = set()
        for p in sorted(self._entries):
            inode = self._entries[p]
            if id(inode) in seen:
                continue
            seen.add(id(inode))
            image = _crash_image(inode, rng)
            inode.data = bytearray(image)
            inode.durable = image


def _crash_image(inode: _Inode, rng: random.Random) -> bytes:
    durable = inode.durable
    data = bytes(inode.data)
    if data == durable:
        return durable
    if not data.startswith(durable):
        if durable.startswith(data):
            # A truncate that was never fsynced: either outcome is possible.
            return durable if rng.random() < 0.5 else data
        return _overwrite_crash_image(durable, data, rng)
    pending_start = len(durable)
    mode = rng.randrange(4)
    if mode == 0:                                  # nothing of the tail reached the disk
        return durable
    if mode == 1:                                  # all of it did
        return data
    if mode == 2:                                  # a prefix did (in-order writeback)
        return data[: rng.randint(pending_start, len(data))]
    # Out-of-order writeback: a random subset of the tail's pages; holes read as zeros.
    image = bytearray(data)
    first_page = pending_start // PAGE_SIZE
    last_page = (len(data) - 1) // PAGE_SIZE
    kept_end = pending_start
    for page in range(first_page, last_page + 1):
        lo = max(page * PAGE_SIZE, pending_start)
        hi = min((page + 1) * PAGE_SIZE, len(data))
        if rng.random() < 0.5:
            kept_end = hi
        else:
            image[lo:hi] = bytes(hi - lo)
    size_survived = rng.random() < 0.5
    return bytes(image if size_survived else image[:kept_end])


def _overwrite_crash_image(durable: bytes, data: bytes, rng: random.Random) -> bytes:
    """Crash image of a file whose durable bytes were overwritten in place (and maybe grown or
    shrunk): each changed page holds its old or its new content, in order or not; the size is
    the old one or the new one."""
    size = len(data) if rng.random() < 0.5 else len(durable)
    longest = max(len(durable), len(data))
    old = durable.ljust(longest, b"\0")
    new = data.ljust(longest, b"\0")
    changed = [page for page in range((longest + PAGE_SIZE - 1) // PAGE_SIZE)
               if old[page * PAGE_SIZE:(page + 1) * PAGE_SIZE] != new[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]]
    mode = rng.randrange(3)
    if mode == 0:                                   # in-order writeback reached a random page
        reached = set(changed[: rng.randint(0, len(changed))])
    elif mode == 1:                                 # all of it
        reached = set(changed)
    else:                                           # a random subset of the pages
        reached = {page for page in changed if rng.random() < 0.5}
    image = bytearray(old)
    for page in reached:
        image[page * PAGE_SIZE:(page + 1) * PAGE_SIZE] = new[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]
    return bytes(image[:size])
