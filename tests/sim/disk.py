"""SimDisk: an in-memory disk with "written" and "durable" bytes per file, and crashes.

Owns: the bytes of simulated files. Writes land in the written part; `fsync(path)` promotes a
file's written bytes to durable; `crash(rng)` keeps each file's durable bytes and, with
`tear_probability`, a random prefix of the bytes written after them (a torn last write), then
forgets the rest. Files created and never fsynced (nor their directory) vanish on crash.

    disk = SimDisk()
    disk.append("raft/0001.wal", b"...")     # returns the new written size
    disk.write_at(path, offset, data)        # overwrite (extends if needed)
    disk.fsync(path)                         # written -> durable
    disk.read(path) -> bytes                 # what a process sees now (written bytes)
    disk.truncate(path, size); disk.delete(path); disk.list(prefix)
    disk.crash(rng, tear_probability=0.5)    # power loss

When the WAL's `qnode/wal/fs.py` MemFs lands, simulations of the WAL should use it instead (it
models the same written/durable split behind the WAL's file interface); Raft simulations use the
record-level stand-in `qnode/metadata/raft/memlog.py` with the same crash semantics.
Invariant: durable size <= written size for every file.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class SimFile:
    written: bytearray = field(default_factory=bytearray)
    durable: bytes = b""
    durable_exists: bool = False   # the file's creation itself was made durable


class SimDisk:
    def __init__(self) -> None:
        self._files: dict[str, SimFile] = {}
        self.crash_count = 0

    def _file(self, path: str) -> SimFile:
        f = self._files.get(path)
        if f is None:
            f = self._files[path] = SimFile()
        return f

    def append(self, path: str, data: bytes) -> int:
        f = self._file(path)
        f.written += data
        return len(f.written)

    def write_at(self, path: str, offset: int, data: bytes) -> None:
        f = self._file(path)
        assert 0 <= offset
        if len(f.written) < offset:
            f.written += bytes(offset - len(f.written))
        f.written[offset:offset + len(data)] = data

    def fsync(self, path: str) -> None:
        f = self._files[path]
        f.durable = bytes(f.written)
        f.durable_exists = True

    def read(self, path: str) -> bytes:
        return bytes(self._files[path].written)

    def exists(self, path: str) -> bool:
        return path in self._files

    def truncate(self, path: str, size: int) -> None:
        f = self._files[path]
        assert 0 <= size <= len(f.written)
        del f.written[size:]

    def delete(self, path: str) -> None:
        self._files.pop(path, None)

    def list(self, prefix: str = "") -> list[str]:
        return sorted(p for p in self._files if p.startswith(prefix))

    def crash(self, rng: random.Random, tear_probability: float = 0.5) -> None:
        """Power loss: keep durable bytes, maybe a torn prefix of the rest; drop unsynced files."""
        self.crash_count += 1
        for path in sorted(self._files):
            f = self._files[path]
            if not f.durable_exists:
                del self._files[path]
                continue
            kept = bytearray(f.durable)
            written = bytes(f.written)
            # A torn write: part of what followed the durable prefix reached the platter.
            if len(written) > len(kept) and written[:len(kept)] == kept and rng.random() < tear_probability:
                kept += written[len(kept):len(kept) + rng.randrange(len(written) - len(kept) + 1)]
            f.written = kept
            f.durable = bytes(kept)
