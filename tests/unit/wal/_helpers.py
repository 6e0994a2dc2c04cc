"""Shared helpers for the WAL tests: open logs over RealFs or MemFs, build records, flip bytes."""

from __future__ import annotations

import os

from qnode.wal.fs import MemFs, RealFs
from qnode.wal.log import SegmentedLog

CLUSTER_ID = 7
NODE_ID = 3


def body_for(lsn: int, size: int = 40) -> bytes:
    """A body that names its LSN, so a test can tell which record it is."""
    head = f"record-{lsn}:".encode()
    return (head * (size // len(head) + 1))[:size]


def open_log(fs, directory: str, **kwargs) -> SegmentedLog:
    kwargs.setdefault("cluster_id", CLUSTER_ID)
    kwargs.setdefault("node_id", NODE_ID)
    return SegmentedLog.open(fs, directory, **kwargs)


def write_records(seglog: SegmentedLog, count: int, *, per_batch: int = 1, size: int = 40,
                  sync: bool = True) -> list[int]:
    """Write `count` records in batches of `per_batch`; returns their LSNs."""
    lsns = []
    while len(lsns) < count:
        n = min(per_batch, count - len(lsns))
        first = seglog.last_lsn + 1
        last = seglog.write_batch([(16, body_for(first + i, size)) for i in range(n)])
        lsns.extend(range(first, last + 1))
        if sync:
            seglog.sync()
    return lsns


def replayed(seglog: SegmentedLog, after_lsn: int | None = None) -> list[tuple[int, bytes]]:
    return [(r.lsn, r.body) for r in seglog.replay(after_lsn)]


def flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))


def segment_paths(directory: str) -> list[str]:
    return sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.endswith(".wal"))


__all__ = ["CLUSTER_ID", "NODE_ID", "MemFs", "RealFs", "body_for", "flip_byte", "open_log",
           "replayed", "segment_paths", "write_records"]
