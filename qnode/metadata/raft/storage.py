"""RaftStorage: Raft's durable state (hard state, log entries, snapshot) as WAL records.

Owns: the mapping between Raft and the metadata WAL (a `qnode.wal.log.SegmentedLog`, or the
in-memory stand-in `memlog.MemRecordLog`, which has the same methods). Record kinds (the Raft
range of the WAL is 128..191):

    128 ENTRY       msgpack [term, index, kind, data]   one record per Raft entry
    129 HARD_STATE  msgpack [term, vote, commit]
    checkpoint      msgpack [snap_index, snap_term, voters, snap_data, hs_term, hs_vote, hs_commit]

Index <-> LSN: entries are log-structured. An ENTRY record for index i supersedes every earlier
record for indexes >= i (the §5.3 truncation of a conflicting suffix is just a newer record), so
no record is ever rewritten in place. `_lsn_by_index` remembers the LSN of the live record of each
index so that a local snapshot at index i checkpoints at that LSN: records after it (the entries
above i) stay live, records up to it are retired by the WAL.

Write order inside one batch: entries first, then the hard state. A crash that tears the batch
leaves a prefix; entries without their hard state only raise the term (RaftCore takes
max(hard-state term, last log term), with no vote), and a hard state's commit never refers to
entries that did not survive. Recovery (`load`) refuses a log with a gap (WalCorruptionError).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import msgpack

from qnode.metadata.raft.core import Restored
from qnode.metadata.raft.messages import Entry, EntryKind, HardState, Snapshot
from qnode.protocol.errors import WalCorruptionError
from qnode.wal.record import Record

KIND_ENTRY = 128
KIND_HARD_STATE = 129


class RecordLog(Protocol):
    last_lsn: int
    checkpoint: tuple[int, bytes] | None

    def write_batch(self, records: list[tuple[int, bytes]]) -> int: ...
    def sync(self) -> None: ...
    def replay(self) -> Iterable[Record]: ...
    def write_checkpoint(self, lsn: int, payload: bytes) -> None: ...


def encode_entry(e: Entry) -> bytes:
    return msgpack.packb([e.term, e.index, int(e.kind), e.data], use_bin_type=True)


def decode_entry(body: bytes) -> Entry:
    term, index, kind, data = msgpack.unpackb(body, raw=False)
    return Entry(term, index, EntryKind(kind), data)


def _encode_checkpoint(snap: Snapshot, hs: HardState) -> bytes:
    return msgpack.packb([snap.index, snap.term, list(snap.voters), snap.data, hs.term, hs.vote, hs.commit],
                         use_bin_type=True)


def _decode_checkpoint(payload: bytes) -> tuple[Snapshot, HardState]:
    index, term, voters, data, hs_term, hs_vote, hs_commit = msgpack.unpackb(payload, raw=False)
    return Snapshot(index, term, tuple(voters), data), HardState(hs_term, hs_vote, hs_commit)


class RaftStorage:
    def __init__(self, log: RecordLog) -> None:
        self.log = log
        self._lsn_by_index: dict[int, int] = {}
        self._hard_state = HardState()
        self._snapshot: Snapshot | None = None

    def load(self) -> Restored:
        """Rebuild the durable Raft state. Raises WalCorruptionError on an impossible log."""
        snap: Snapshot | None = None
        hs = HardState()
        if self.log.checkpoint is not None:
            snap, hs = _decode_checkpoint(self.log.checkpoint[1])
        base = snap.index if snap else 0
        entries: list[Entry] = []
        lsns: dict[int, int] = {}
        for record in self.log.replay():
            lsn, kind, body = record.lsn, record.kind, record.body
            if kind == KIND_ENTRY:
                e = decode_entry(body)
                if e.index <= base:
                    continue
                if e.index > base + len(entries) + 1:
                    raise WalCorruptionError(f"raft log gap: entry {e.index} after {base + len(entries)}")
                del entries[e.index - base - 1:]
                for i in [i for i in lsns if i >= e.index]:
                    del lsns[i]
                entries.append(e)
                lsns[e.index] = lsn
            elif kind == KIND_HARD_STATE:
                term, vote, commit = msgpack.unpackb(body, raw=False)
                hs = HardState(term, vote, commit)
            # Other kinds in the Raft range are reserved for later records; skip them.
        self._lsn_by_index = lsns
        self._hard_state = hs
        self._snapshot = snap
        return Restored(hs, snap, tuple(entries))

    def save(self, hard_state: HardState | None, snapshot: Snapshot | None, entries: tuple[Entry, ...],
             *, sync: bool = True) -> None:
        """Persist one Ready's durable part and fsync (unless sync=False: the caller calls
        `sync()` before sending the Ready's messages). A received snapshot replaces everything
        before it, so it becomes the checkpoint at the current end of the log."""
        if snapshot is not None:
            hs = hard_state or self._hard_state
            self.log.sync()
            self.log.write_checkpoint(self.log.last_lsn, _encode_checkpoint(snapshot, hs))
            self._lsn_by_index = {}
            self._snapshot = snapshot
        records: list[tuple[int, bytes]] = [(KIND_ENTRY, encode_entry(e)) for e in entries]
        if hard_state is not None:
            records.append((KIND_HARD_STATE, msgpack.packb([hard_state.term, hard_state.vote, hard_state.commit])))
            self._hard_state = hard_state
        if not records:
            return
        last = self.log.write_batch(records)
        first = last - len(records) + 1
        if entries:
            for i in [i for i in self._lsn_by_index if i >= entries[0].index]:
                del self._lsn_by_index[i]
            for offset, e in enumerate(entries):
                self._lsn_by_index[e.index] = first + offset
        if sync:
            self.log.sync()

    def sync(self) -> None:
        self.log.sync()

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Persist a local snapshot (log compaction, §7): checkpoint at the LSN of its last entry."""
        lsn = self._lsn_by_index.get(snapshot.index)
        assert lsn is not None, ("snapshot index not in the persisted log", snapshot.index)
        self.log.write_checkpoint(lsn, _encode_checkpoint(snapshot, self._hard_state))
        for i in [i for i in self._lsn_by_index if i <= snapshot.index]:
            del self._lsn_by_index[i]
        self._snapshot = snapshot
