"""Crash model: random batches, syncs, checkpoints and MemFs power losses (hypothesis).

Goal: after any crash, recovery opens the log, and replay is a prefix of what was written (after
suffix truncations) that contains at least every synced record (STYLE.md §2.3 "after a crash, WAL replay equals the
durable state"); the log stays appendable across repeated crashes. Method: drive SegmentedLog
directly over MemFs with operations (write, sync, checkpoint, truncate_after, durability marker,
preallocation of zeros that later writes overwrite in place) drawn by hypothesis; `MemFs.crash(random.Random(seed))` keeps
durable bytes and may keep nothing, all, a prefix or a random page subset of the rest.
"""

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from qnode.wal.fs import MemFs
from qnode.wal.log import SegmentedLog

SEGMENT_SIZE_MAX = 6000     # small: rolls happen often

ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.lists(st.integers(min_value=0, max_value=1500), min_size=1, max_size=6)),
        st.tuples(st.just("sync"), st.none()),
        st.tuples(st.just("checkpoint"), st.none()),
        st.tuples(st.just("truncate"), st.floats(min_value=0, max_value=1)),
        st.tuples(st.just("marker"), st.none()),
        st.tuples(st.just("preallocate"), st.integers(min_value=0, max_value=9000)),
    ),
    min_size=1, max_size=25,
)


def _open(fs: MemFs) -> SegmentedLog:
    return SegmentedLog.open(fs, "/wal", cluster_id=1, node_id=1, segment_size_max=SEGMENT_SIZE_MAX)


def _body(lsn: int, size: int) -> bytes:
    return (lsn.to_bytes(8, "little") * (size // 8 + 1))[:size]


@settings(max_examples=120, deadline=None)
@given(rounds=st.lists(st.tuples(ops, st.integers(min_value=0, max_value=2**32)), min_size=1, max_size=4))
def test_replay_after_crash_is_a_prefix_holding_every_synced_record(rounds):
    fs = MemFs()
    written: dict[int, bytes] = {}      # lsn -> body of everything ever written and not lost
    synced_lsn = 0
    checkpoint = None
    for round_ops, seed in rounds:
        seglog = _open(fs)
        last = seglog.last_lsn
        assert last >= synced_lsn
        for op, arg in round_ops:
            if op == "write":
                records = [(16, _body(last + 1 + i, size)) for i, size in enumerate(arg)]
                last = seglog.write_batch(records)
                for i, (_, body) in enumerate(records):
                    written[last - len(records) + 1 + i] = body
            elif op == "sync":
                synced_lsn = seglog.sync()
            elif op == "marker":
                seglog.write_durability_marker()
            elif op == "preallocate":
                seglog.preallocate(arg)
            elif op == "truncate":
                # Raft suffix truncation: anywhere between the checkpoint and the end.
                floor = seglog.checkpoint_lsn
                lsn = floor + int(arg * (seglog.last_lsn - floor))
                seglog.truncate_after(lsn)
                for gone in [x for x in written if x > lsn]:
                    del written[gone]
                last = seglog.last_lsn
                assert last == lsn
                synced_lsn = min(synced_lsn, lsn)
            elif seglog.durable_lsn > seglog.checkpoint_lsn:
                lsn = seglog.durable_lsn
                seglog.write_checkpoint(lsn, b"ckpt-%d" % lsn)
                checkpoint = lsn
            synced_lsn = max(synced_lsn, seglog.durable_lsn)
        fs.crash(random.Random(seed))
        seglog = _open(fs)
        if checkpoint is not None:
            assert seglog.checkpoint == (checkpoint, b"ckpt-%d" % checkpoint)
        start = checkpoint or 0
        got = [(r.lsn, r.body) for r in seglog.replay()]
        assert [lsn for lsn, _ in got] == list(range(start + 1, start + 1 + len(got)))
        assert all(written[lsn] == body for lsn, body in got)
        assert seglog.last_lsn >= synced_lsn
        # Records beyond what survived are forgotten; new writes reuse their LSNs.
        for lsn in [lsn for lsn in written if lsn > seglog.last_lsn]:
            del written[lsn]
        synced_lsn = seglog.last_lsn       # recovery fsyncs what survived
        seglog.close()
