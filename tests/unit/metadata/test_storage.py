"""RaftStorage contract tests, run against both record logs it supports: the in-memory stand-in
(MemRecordLog) and the real WAL (SegmentedLog over MemFs). Method: save Ready-shaped data, reopen
(optionally after a simulated power loss), and compare what `load()` returns.
"""

from __future__ import annotations

import random

import pytest

from qnode.metadata.raft.memlog import MemRecordLog
from qnode.metadata.raft.messages import Entry, EntryKind, HardState, Snapshot
from qnode.metadata.raft.storage import KIND_ENTRY, RaftStorage, encode_entry
from qnode.protocol.errors import WalCorruptionError
from qnode.wal.fs import MemFs
from qnode.wal.log import SegmentedLog


def e(term: int, index: int, data: bytes = b"") -> Entry:
    return Entry(term, index, EntryKind.NORMAL, data or b"d%d" % index)


class MemBackend:
    def __init__(self) -> None:
        self.log = MemRecordLog()

    def open(self):
        return self.log

    def crash(self, rng):
        self.log.crash(rng, tear_probability=0.0)


class WalBackend:
    def __init__(self) -> None:
        self.fs = MemFs()
        self.log = None

    def open(self):
        if self.log is not None:
            self.log.close()
        self.log = SegmentedLog.open(self.fs, "/data/raft", cluster_id=1, node_id=1)
        return self.log

    def crash(self, rng):
        self.fs.crash(rng)
        self.log = None


@pytest.fixture(params=["mem", "wal"])
def backend(request):
    return MemBackend() if request.param == "mem" else WalBackend()


def test_empty_storage_loads_empty_state(backend):
    restored = RaftStorage(backend.open()).load()
    assert restored.hard_state == HardState()
    assert restored.snapshot is None
    assert restored.entries == ()


def test_entries_and_hard_state_survive_reopen(backend):
    s = RaftStorage(backend.open())
    s.save(HardState(2, "n1", 1), None, (e(1, 1), e(2, 2)))
    restored = RaftStorage(backend.open()).load()
    assert restored.hard_state == HardState(2, "n1", 1)
    assert [(x.term, x.index, x.data) for x in restored.entries] == [(1, 1, b"d1"), (2, 2, b"d2")]


def test_rewriting_an_index_supersedes_the_old_suffix(backend):
    # Raft §5.3: a conflicting suffix is replaced; storage records it as newer entries.
    s = RaftStorage(backend.open())
    s.save(HardState(1, None, 0), None, (e(1, 1), e(1, 2), e(1, 3)))
    s.save(HardState(2, None, 1), None, (e(2, 2, b"new"),))
    restored = RaftStorage(backend.open()).load()
    assert [(x.index, x.term, x.data) for x in restored.entries] == [(1, 1, b"d1"), (2, 2, b"new")]


def test_local_snapshot_keeps_entries_after_it(backend):
    s = RaftStorage(backend.open())
    s.save(HardState(1, "n1", 4), None, tuple(e(1, i) for i in range(1, 6)))
    s.save_snapshot(Snapshot(3, 1, ("n1", "n2", "n3"), b"state@3"))
    restored = RaftStorage(backend.open()).load()
    assert restored.snapshot == Snapshot(3, 1, ("n1", "n2", "n3"), b"state@3")
    assert [x.index for x in restored.entries] == [4, 5]
    assert restored.hard_state == HardState(1, "n1", 4)


def test_received_snapshot_replaces_the_whole_log(backend):
    s = RaftStorage(backend.open())
    s.save(HardState(1, None, 1), None, (e(1, 1), e(1, 2)))
    s.save(HardState(3, None, 10), Snapshot(10, 3, ("n1",), b"s"), ())
    s.save(None, None, (e(3, 11),))
    restored = RaftStorage(backend.open()).load()
    assert restored.snapshot.index == 10
    assert [x.index for x in restored.entries] == [11]
    assert restored.hard_state.commit == 10


def test_unsynced_writes_are_lost_on_power_loss_and_synced_ones_kept(backend):
    s = RaftStorage(backend.open())
    s.save(HardState(1, "n1", 1), None, (e(1, 1),))
    s.save(HardState(1, "n1", 1), None, (e(1, 2),), sync=False)
    backend.crash(random.Random(7))
    restored = RaftStorage(backend.open()).load()
    assert [x.index for x in restored.entries][:1] == [1]
    assert len(restored.entries) in (1, 2)     # the unsynced batch survives whole or not at all


def test_gap_in_the_log_is_corruption():
    log = MemRecordLog()
    log.write_batch([(KIND_ENTRY, encode_entry(e(1, 1))), (KIND_ENTRY, encode_entry(e(1, 3)))])
    log.sync()
    with pytest.raises(WalCorruptionError):
        RaftStorage(log).load()
