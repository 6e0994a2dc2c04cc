"""SegmentedLog: rolling, suffix truncation, checkpoints and segment retirement.

Goal: the synchronous core keeps its documented invariants (consecutive LSNs, a chain of
segments, durable checkpoints that retire whole segments) on both file systems. Method: contract
tests parametrized over RealFs (tmp_path, real fdatasync) and MemFs; crash points are modelled
with MemFs (`crash`, injected fsync errors).
"""

import os
import random

import pytest

from qnode.protocol.errors import InvalidParameter
from qnode.wal.checkpoint import checkpoint_name
from qnode.wal.errors import CheckpointNotWritten, WalCorruption, WalFailed
from qnode.wal.record import BATCH_RECORD_SIZE, HEADER_SIZE
from qnode.wal.segment import SEGMENT_HEADER_SIZE, segment_name
from tests.unit.wal._helpers import MemFs, RealFs, body_for, open_log, replayed, write_records

BATCH_SIZE = BATCH_RECORD_SIZE + HEADER_SIZE + 40
SMALL_SEGMENT = SEGMENT_HEADER_SIZE + 3 * BATCH_SIZE      # three one-record batches


@pytest.fixture(params=["real", "mem"])
def disk(request, tmp_path):
    """(fs, directory) for each file system."""
    if request.param == "real":
        return RealFs(), str(tmp_path / "wal")
    return MemFs(), "/node/wal"


def _segments(fs, directory):
    return [n for n in fs.list(directory) if n.endswith(".wal")]


def test_fresh_log_is_empty(disk):
    fs, d = disk
    seglog = open_log(fs, d)
    assert (seglog.last_lsn, seglog.durable_lsn, seglog.first_lsn) == (0, 0, 1)
    assert seglog.checkpoint is None
    assert list(seglog.replay()) == []
    assert _segments(fs, d) == [segment_name(1)]


def test_write_batch_assigns_consecutive_lsns_and_sync_makes_them_durable(disk):
    fs, d = disk
    seglog = open_log(fs, d)
    assert seglog.write_batch([(16, b"a"), (17, b"b")]) == 2
    assert seglog.durable_lsn == 0
    assert seglog.write_batch([(130, b"c")]) == 3
    assert seglog.sync() == 3
    assert [(r.lsn, r.kind, r.body) for r in seglog.replay()] == [(1, 16, b"a"), (2, 17, b"b"), (3, 130, b"c")]
    assert seglog.write_batch([]) == 3


def test_write_batch_rejects_bad_records(disk):
    fs, d = disk
    seglog = open_log(fs, d)
    for bad in ([(1, b"x")], [(16, "text")], [(16, b"x" * (2 * 1024 * 1024 + 1))]):
        with pytest.raises(InvalidParameter):
            seglog.write_batch(bad)
    assert seglog.last_lsn == 0


def test_roll_creates_segments_named_by_base_lsn(disk):
    fs, d = disk
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    write_records(seglog, 10, sync=False)
    assert _segments(fs, d) == [segment_name(b) for b in (1, 4, 7, 10)]
    # Rolling fsyncs the sealed segment.
    assert seglog.durable_lsn == 9
    seglog.sync()
    seglog.close()
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    assert replayed(seglog) == [(lsn, body_for(lsn)) for lsn in range(1, 11)]


def test_a_batch_larger_than_a_segment_gets_a_segment_of_its_own(disk):
    fs, d = disk
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    write_records(seglog, 1)
    seglog.write_batch([(16, body_for(2, 1000))])
    seglog.sync()
    assert _segments(fs, d) == [segment_name(1), segment_name(2)]
    assert [r.lsn for r in seglog.replay()] == [1, 2]


def test_truncate_after_drops_the_suffix_durably(disk):
    fs, d = disk
    seglog = open_log(fs, d, segment_size_max=SEGMENT_HEADER_SIZE + 2 * (BATCH_RECORD_SIZE + 3 * (HEADER_SIZE + 40)))
    write_records(seglog, 12, per_batch=3)
    seglog.truncate_after(7)            # mid-batch (batch 7..9) and drops later segments
    assert seglog.last_lsn == seglog.durable_lsn == 7
    assert replayed(seglog) == [(lsn, body_for(lsn)) for lsn in range(1, 8)]
    assert seglog.write_batch([(16, b"new-8")]) == 8
    seglog.sync()
    seglog.close()
    seglog = open_log(fs, d)
    assert replayed(seglog)[-2:] == [(7, body_for(7)), (8, b"new-8")]


class _PowerLoss(OSError):
    pass


class _CutFs(MemFs):
    """MemFs that loses power at its `cut_at`-th mutating call (counted in `calls`)."""

    def __init__(self, cut_at: int | None = None) -> None:
        super().__init__()
        self.cut_at, self.calls = cut_at, 0

    def _tick(self) -> None:
        self.calls += 1
        if self.cut_at is not None and self.calls >= self.cut_at:
            raise _PowerLoss(5, "power loss")

    def append(self, handle, data):
        self._tick()
        return super().append(handle, data)

    def fsync(self, handle):
        self._tick()
        return super().fsync(handle)

    def truncate(self, handle, size):
        self._tick()
        return super().truncate(handle, size)

    def rename(self, src, dst):
        self._tick()
        return super().rename(src, dst)

    def remove(self, path):
        self._tick()
        return super().remove(path)

    def fsync_dir(self, directory):
        self._tick()
        return super().fsync_dir(directory)


@pytest.mark.parametrize("lsn", [7, 9])      # splits the batch 7..9; at its end
def test_power_loss_inside_truncate_after_never_loses_records_up_to_lsn(lsn):
    def prepared(cut_at=None):
        fs = _CutFs()
        seglog = open_log(fs, "/w")
        write_records(seglog, 12, per_batch=3)        # synced: batches 1-3, 4-6, 7-9, 10-12
        fs.calls, fs.cut_at = 0, cut_at
        return fs, seglog

    fs, seglog = prepared()
    seglog.truncate_after(lsn)
    calls = fs.calls
    assert calls >= 2
    for cut_at in range(1, calls + 1):
        fs, seglog = prepared(cut_at)
        with pytest.raises(_PowerLoss):
            seglog.truncate_after(lsn)
        fs.cut_at = None
        fs.crash(random.Random(cut_at))
        got = replayed(open_log(fs, "/w"))
        # Either the truncation happened or it did not; records <= lsn are there either way.
        assert got in ([(x, body_for(x)) for x in range(1, lsn + 1)],
                       [(x, body_for(x)) for x in range(1, 13)]), cut_at


@pytest.mark.parametrize("lsn", [0, 3, 4, 5, 6])
def test_truncate_after_at_every_boundary(disk, lsn):
    fs, d = disk
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    write_records(seglog, 6)
    seglog.truncate_after(lsn)
    assert seglog.last_lsn == lsn
    seglog.close()
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    assert replayed(seglog) == [(x, body_for(x)) for x in range(1, lsn + 1)]


def test_truncate_after_below_the_checkpoint_is_refused(disk):
    fs, d = disk
    seglog = open_log(fs, d)
    write_records(seglog, 5)
    seglog.write_checkpoint(3, b"s")
    with pytest.raises(InvalidParameter):
        seglog.truncate_after(2)


def test_checkpoint_retires_segments_fully_below_it(disk):
    fs, d = disk
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    write_records(seglog, 10)                         # segments 1, 4, 7, 10
    seglog.write_checkpoint(7, [b"chunk-1,", b"chunk-2"])
    # Segment 7 holds 7..9 and 9 > 7, so it stays; 1 and 4 (lsn 1..6) are dead.
    assert _segments(fs, d) == [segment_name(7), segment_name(10)]
    assert sorted(n for n in fs.list(d) if n.endswith(".ckpt")) == [checkpoint_name(7)]
    assert seglog.checkpoint == (7, b"chunk-1,chunk-2")
    assert seglog.first_lsn == 7
    assert [r.lsn for r in seglog.replay()] == [8, 9, 10]
    seglog.close()
    # The absent retired segments are not a gap.
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    assert seglog.checkpoint == (7, b"chunk-1,chunk-2")
    assert [r.lsn for r in seglog.replay()] == [8, 9, 10]
    assert [r.lsn for r in seglog.replay(after_lsn=6)] == [7, 8, 9, 10]
    with pytest.raises(InvalidParameter):
        list(seglog.replay(after_lsn=5))


def test_checkpoint_needs_a_durable_lsn(disk):
    fs, d = disk
    seglog = open_log(fs, d)
    write_records(seglog, 3, sync=False)
    with pytest.raises(InvalidParameter):
        seglog.write_checkpoint(3, b"s")
    seglog.sync()
    seglog.write_checkpoint(3, b"s")
    with pytest.raises(InvalidParameter):
        seglog.write_checkpoint(2, b"older")


def test_retired_segment_left_by_a_crash_is_deleted_at_open(tmp_path):
    fs, d = RealFs(), str(tmp_path)
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    write_records(seglog, 10)
    first = open(os.path.join(d, segment_name(1)), "rb").read()
    seglog.write_checkpoint(7, b"s")
    seglog.close()
    # A crash between the checkpoint's rename and the segment deletes.
    with open(os.path.join(d, segment_name(1)), "wb") as f:
        f.write(first)
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    assert segment_name(1) not in fs.list(d)
    assert [r.lsn for r in seglog.replay()] == [8, 9, 10]


def test_a_checkpoint_whose_temp_file_fails_changes_nothing_and_the_log_goes_on():
    fs, d = MemFs(), "/wal"
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    write_records(seglog, 10)
    seglog.write_checkpoint(4, b"old")
    files = fs.list(d)
    fs.fsync_error = OSError(5, "EIO")      # the temp file's fsync fails
    with pytest.raises(CheckpointNotWritten, match="EIO"):
        seglog.write_checkpoint(9, b"new")
    fs.fsync_error = None
    assert fs.list(d) == files              # the temp file is gone, nothing else changed
    assert seglog.checkpoint == (4, b"old")
    seglog.write_batch([(16, b"x")])
    seglog.sync()
    fs.crash(random.Random(3))
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    assert seglog.checkpoint == (4, b"old")
    assert [r.lsn for r in seglog.replay()] == [5, 6, 7, 8, 9, 10, 11]


def test_a_checkpoint_that_runs_the_disk_full_changes_nothing():
    fs, d = MemFs(), "/wal"
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    write_records(seglog, 10)
    files = fs.list(d)
    fs.capacity_size = fs._used_size() + 1000
    with pytest.raises(CheckpointNotWritten, match="ENOSPC|no space"):
        seglog.write_checkpoint(9, [b"y" * 600, b"z" * 600])
    assert fs.list(d) == files
    assert seglog.checkpoint is None
    fs.capacity_size = 1 << 40
    seglog.write_checkpoint(9, b"fits now")
    assert seglog.checkpoint == (9, b"fits now")


def test_a_checkpoint_that_fails_after_its_rename_fails_the_log():
    fs, d = MemFs(), "/wal"
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    write_records(seglog, 10)
    real_rename = fs.rename

    def rename_then_eio(src, dst):
        real_rename(src, dst)
        fs.fsync_error = OSError(5, "EIO")   # the directory fsync that follows fails
    fs.rename = rename_then_eio
    with pytest.raises(OSError):
        seglog.write_checkpoint(9, b"new")
    with pytest.raises(WalFailed):
        seglog.write_batch([(16, b"x")])


@pytest.mark.parametrize("seed", range(20))
def test_crash_during_checkpoint_keeps_one_valid_checkpoint(seed):
    # Crash after each file operation of write_checkpoint: some checkpoint is always usable
    # and replay from it reaches lsn 10.
    rng = random.Random(seed)
    fs, d = MemFs(), "/wal"
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    write_records(seglog, 10)
    seglog.write_checkpoint(4, b"old")
    ops = {"n": 0}
    crash_at = rng.randrange(1, 12)
    for name in ("append", "fsync", "rename", "fsync_dir", "remove"):
        real = getattr(fs, name)

        def counted(*args, _real=real, **kwargs):
            ops["n"] += 1
            if ops["n"] == crash_at:
                raise OSError(5, "simulated power loss")
            return _real(*args, **kwargs)
        setattr(fs, name, counted)
    try:
        seglog.write_checkpoint(9, b"new")
    except (OSError, CheckpointNotWritten):
        pass
    for name in ("append", "fsync", "rename", "fsync_dir", "remove"):
        delattr(fs, name)
    fs.crash(rng)
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    lsn, payload = seglog.checkpoint
    assert (lsn, payload) in ((4, b"old"), (9, b"new"))
    assert [r.lsn for r in seglog.replay()] == list(range(lsn + 1, 11))


def test_corrupt_newest_checkpoint_with_retired_segments_refuses(tmp_path):
    fs, d = RealFs(), str(tmp_path)
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    write_records(seglog, 10)
    seglog.write_checkpoint(7, b"state")
    seglog.close()
    path = os.path.join(d, checkpoint_name(7))
    data = bytearray(open(path, "rb").read())
    data[1] ^= 0xFF
    open(path, "wb").write(bytes(data))
    with pytest.raises(WalCorruption, match="expected 1"):
        open_log(fs, d, segment_size_max=SMALL_SEGMENT)


def test_io_error_fails_the_log_for_good():
    fs, d = MemFs(), "/wal"
    seglog = open_log(fs, d)
    seglog.write_batch([(16, b"x")])
    fs.fsync_error = OSError(5, "EIO")
    with pytest.raises(OSError):
        seglog.sync()
    fs.fsync_error = None
    with pytest.raises(WalFailed):
        seglog.sync()
    assert seglog.failed is not None


def test_temp_files_are_removed_at_open(tmp_path):
    fs, d = RealFs(), str(tmp_path)
    seglog = open_log(fs, d)
    write_records(seglog, 2)
    seglog.close()
    (tmp_path / "segment.tmp").write_bytes(b"half a header")
    (tmp_path / "checkpoint.tmp").write_bytes(b"half a checkpoint")
    seglog = open_log(fs, d)
    assert sorted(os.listdir(d)) == [segment_name(1)]
    assert seglog.last_lsn == 2


def test_durability_marker_declares_the_last_batch(tmp_path):
    from qnode.wal.errors import WalCorruption
    from tests.unit.wal._helpers import flip_byte, segment_paths
    fs, d = RealFs(), str(tmp_path)
    seglog = open_log(fs, d)
    assert seglog.write_durability_marker() is False      # nothing durable to declare
    write_records(seglog, 3)
    assert seglog.write_durability_marker() is True
    assert seglog.write_durability_marker() is False      # already declared
    seglog.write_batch([(16, b"unsynced")])
    assert seglog.write_durability_marker() is False      # only fsynced LSNs are declared
    seglog.truncate_after(3)
    assert [r.lsn for r in seglog.replay()] == [1, 2, 3]
    seglog.close()
    # Without the marker, rot in lsn 3 (the last batch) would read as a torn tail.
    (path,) = segment_paths(d)
    last_record_at = SEGMENT_HEADER_SIZE + 2 * BATCH_SIZE + BATCH_RECORD_SIZE
    flip_byte(path, last_record_at + HEADER_SIZE + 2)
    with pytest.raises(WalCorruption) as info:
        open_log(fs, d)
    assert info.value.offset == last_record_at


def test_markers_do_not_disturb_replay_truncate_or_recovery(disk):
    fs, d = disk
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    for _ in range(4):
        write_records(seglog, 2)
        seglog.write_durability_marker()
    assert [r.lsn for r in seglog.replay()] == list(range(1, 9))
    seglog.truncate_after(5)
    seglog.write_durability_marker()
    write_records(seglog, 1)
    seglog.close()
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    assert replayed(seglog) == [(lsn, body_for(lsn)) for lsn in range(1, 7)]


def test_a_segment_holding_only_a_marker_is_not_rolled_onto_its_own_name(disk):
    # Found by fuzzing: an empty live segment gets a marker, then a batch that does not fit
    # must not "roll" to a new segment with the same base LSN.
    fs, d = disk
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    write_records(seglog, 4)                 # segment 1 full, segment 4 holds lsn 4
    seglog.write_checkpoint(3, b"s")         # retires segment 1
    seglog.truncate_after(3)                 # segment 4 is now empty
    seglog.close()
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    assert seglog.write_durability_marker() is True
    seglog.write_batch([(16, body_for(4, SMALL_SEGMENT))])
    seglog.sync()
    assert _segments(fs, d) == [segment_name(4)]
    seglog.close()
    seglog = open_log(fs, d, segment_size_max=SMALL_SEGMENT)
    assert replayed(seglog) == [(4, body_for(4, SMALL_SEGMENT))]


def _file_size(fs, directory, name):
    handle = fs.open(f"{directory}/{name}")
    try:
        return fs.size(handle)        # a fresh handle's end is the whole file
    finally:
        fs.close(handle)


def test_batches_overwrite_preallocated_zeros_and_a_roll_or_reopen_drops_the_rest(disk):
    fs, d = disk
    segment_size = SEGMENT_HEADER_SIZE + 20 * BATCH_SIZE
    seglog = open_log(fs, d, segment_size_max=segment_size)
    write_records(seglog, 1)
    assert seglog.preallocate(8 * BATCH_SIZE) is True
    (name,) = _segments(fs, d)
    file_size = SEGMENT_HEADER_SIZE + 9 * BATCH_SIZE
    assert _file_size(fs, d, name) == file_size
    write_records(seglog, 5)
    assert _file_size(fs, d, name) == file_size        # overwritten in place: the file did not grow
    assert seglog.preallocate(8 * BATCH_SIZE) is False  # more than a quarter is still ahead
    write_records(seglog, 2)
    assert seglog.preallocate(8 * BATCH_SIZE) is True   # topped up
    assert seglog.preallocate(10 ** 9) is True          # capped at the segment size
    assert _file_size(fs, d, name) == segment_size
    seglog.close()
    seglog = open_log(fs, d, segment_size_max=segment_size)    # recovery cuts the zeros
    assert _file_size(fs, d, name) == SEGMENT_HEADER_SIZE + 8 * BATCH_SIZE
    assert replayed(seglog) == [(lsn, body_for(lsn)) for lsn in range(1, 9)]
    seglog.preallocate(4 * BATCH_SIZE)
    write_records(seglog, 13)                            # rolls after lsn 20
    first, second = _segments(fs, d)
    assert _file_size(fs, d, first) == SEGMENT_HEADER_SIZE + 20 * BATCH_SIZE   # sealed: no zeros
    assert replayed(seglog) == [(lsn, body_for(lsn)) for lsn in range(1, 22)]
    seglog.close()


def test_truncate_after_drops_preallocated_zeros_with_the_suffix(disk):
    fs, d = disk
    seglog = open_log(fs, d)
    write_records(seglog, 6)
    seglog.preallocate(64 * 1024)
    seglog.truncate_after(3)
    (name,) = _segments(fs, d)
    assert _file_size(fs, d, name) == SEGMENT_HEADER_SIZE + 3 * BATCH_SIZE
    write_records(seglog, 2)
    seglog.close()
    assert replayed(open_log(fs, d)) == [(lsn, body_for(lsn)) for lsn in range(1, 6)]


def test_preallocation_out_of_space_is_skipped_and_an_io_error_fails_the_log():
    class NoSpace(MemFs):
        def write_zeros(self, handle, offset, size):
            raise OSError(28, "No space left on device")

    fs = NoSpace()
    seglog = open_log(fs, "/w")
    write_records(seglog, 1)
    assert seglog.preallocate(4096) is False
    write_records(seglog, 1)                             # appends go on, growing the file
    assert replayed(seglog) == [(1, body_for(1)), (2, body_for(2))]

    fs = MemFs()
    seglog = open_log(fs, "/w")
    write_records(seglog, 1)
    fs.fsync_error = OSError(5, "Input/output error")
    with pytest.raises(OSError):
        seglog.preallocate(4096)
    fs.fsync_error = None
    with pytest.raises(WalFailed):
        write_records(seglog, 1)
