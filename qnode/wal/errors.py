"""Typed errors of the WAL, as subclasses of the wire error classes (qnode/protocol/errors.py).

No new wire codes: each class keeps its parent's code, so callers test `err.code` as usual and
can also catch the WAL-specific class.
"""

from __future__ import annotations

from qnode.protocol.errors import Busy, InternalError, WalCorruptionError


class WalCorruption(WalCorruptionError):
    """Acknowledged data is damaged, or the log is inconsistent: refuse to open.

    `.path` is the damaged file and `.offset` the byte offset in it; the message names both.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        self.path = path
        self.offset = offset
        self.reason = reason
        super().__init__(f"wal corrupt: {path} at offset {offset}: {reason}")


class WalBackpressure(Busy):
    """More than `pending_size_max` bytes are appended but not yet durable; retry later."""


class WalFailed(InternalError):
    """The WAL's writer hit an I/O error (e.g. EIO on fdatasync); the WAL accepts nothing more.

    After a failed fsync the page cache state is unknown, so the WAL never retries: the node
    must restart and run recovery.
    """


class CheckpointNotWritten(InternalError):
    """A checkpoint failed before it was renamed into place (ENOSPC, say, or a failed snapshot).

    Nothing changed: the temp file is gone, the older checkpoint and every segment remain, and
    the log goes on accepting appends. The caller may try again later.
    """
