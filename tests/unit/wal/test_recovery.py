"""The recovery decision table (qnode/wal/recovery.py), one test per row, on real files.

Goal: every row of the table is reached by a real on-disk state and gives its decision; corrupt
states refuse to open with WalCorruption naming the file and byte offset. Method: write a log
with SegmentedLog over RealFs in tmp_path, damage it the way the row describes (flip a byte,
cut the file, delete or forge a segment), reopen. A last test drives `decide` directly with
every fact combination to show the table is total.
"""

import itertools
import logging
import os

import pytest

from qnode.protocol.errors import WalCorruptionError
from qnode.wal.errors import WalCorruption
from qnode.wal.record import BATCH_RECORD_SIZE, HEADER_SIZE, encode_batch_header, encode_records_into
from qnode.wal.recovery import RECOVERY_TABLE, Decision, SegmentFacts, decide
from qnode.wal.segment import SEGMENT_HEADER_SIZE, SegmentHeader, encode_segment_header, segment_name
from tests.unit.wal._helpers import (
    CLUSTER_ID,
    NODE_ID,
    RealFs,
    body_for,
    flip_byte,
    open_log,
    replayed,
    segment_paths,
    write_records,
)

RECORD_SIZE = 40
BATCH_SIZE = BATCH_RECORD_SIZE + HEADER_SIZE + RECORD_SIZE   # one record per batch


def _batch_offset(index: int) -> int:
    """Offset of the index-th one-record batch of a segment."""
    return SEGMENT_HEADER_SIZE + index * BATCH_SIZE


def test_row_all_valid_opens_and_replays_everything(tmp_path, caplog):
    seglog = open_log(RealFs(), str(tmp_path))
    write_records(seglog, 10)
    seglog.close()
    with caplog.at_level(logging.INFO, logger="qnode.wal.log"):
        seglog = open_log(RealFs(), str(tmp_path))
    assert replayed(seglog) == [(lsn, body_for(lsn)) for lsn in range(1, 11)]
    assert seglog.last_lsn == seglog.durable_lsn == 10
    assert any(getattr(r, "decision", None) == "ok" for r in caplog.records)


def test_row_header_invalid_is_corrupt(tmp_path):
    seglog = open_log(RealFs(), str(tmp_path))
    write_records(seglog, 3)
    seglog.close()
    (path,) = segment_paths(str(tmp_path))
    flip_byte(path, 20)          # inside the node id of the segment header
    with pytest.raises(WalCorruption) as info:
        open_log(RealFs(), str(tmp_path))
    assert info.value.path == path
    assert info.value.offset == 0
    assert isinstance(info.value, WalCorruptionError)


def test_row_header_invalid_for_another_node(tmp_path):
    seglog = open_log(RealFs(), str(tmp_path))
    write_records(seglog, 3)
    seglog.close()
    with pytest.raises(WalCorruption, match="node"):
        open_log(RealFs(), str(tmp_path), node_id=NODE_ID + 1)


def test_row_lsn_break_inside_a_segment_is_corrupt(tmp_path):
    # A segment whose second batch has valid CRCs but skips LSNs 3..4.
    data = [encode_segment_header(SegmentHeader(CLUSTER_ID, NODE_ID, 1))]
    for first, count, durable in ((1, 2, 0), (5, 1, 2)):
        chunks: list[bytes] = [b""]
        size = encode_records_into(chunks, first, [(16, body_for(first + i)) for i in range(count)])
        chunks[0] = encode_batch_header(first, durable, count, size)
        data.extend(chunks)
    path = tmp_path / segment_name(1)
    path.write_bytes(b"".join(data))
    second_batch_at = SEGMENT_HEADER_SIZE + BATCH_RECORD_SIZE + 2 * (HEADER_SIZE + RECORD_SIZE)
    with pytest.raises(WalCorruption, match="gap") as info:
        open_log(RealFs(), str(tmp_path))
    assert info.value.offset == second_batch_at
    assert info.value.path == str(path)


def test_row_lsn_break_missing_middle_segment_is_corrupt(tmp_path):
    seglog = open_log(RealFs(), str(tmp_path), segment_size_max=SEGMENT_HEADER_SIZE + 3 * BATCH_SIZE)
    write_records(seglog, 9)
    seglog.close()
    paths = segment_paths(str(tmp_path))
    assert len(paths) == 3
    os.remove(paths[1])
    with pytest.raises(WalCorruption, match="expected 4") as info:
        open_log(RealFs(), str(tmp_path))
    assert info.value.path == paths[2]


def test_row_lsn_break_missing_first_segment_without_checkpoint_is_corrupt(tmp_path):
    seglog = open_log(RealFs(), str(tmp_path), segment_size_max=SEGMENT_HEADER_SIZE + 3 * BATCH_SIZE)
    write_records(seglog, 6)
    seglog.close()
    os.remove(segment_paths(str(tmp_path))[0])
    with pytest.raises(WalCorruption, match="expected 1"):
        open_log(RealFs(), str(tmp_path))


def test_row_damage_in_sealed_segment_is_corrupt(tmp_path):
    seglog = open_log(RealFs(), str(tmp_path), segment_size_max=SEGMENT_HEADER_SIZE + 3 * BATCH_SIZE)
    write_records(seglog, 4, sync=False)     # the roll alone made segment 1 durable
    seglog.close()
    first, _second = segment_paths(str(tmp_path))
    last_batch = _batch_offset(2)
    flip_byte(first, last_batch + BATCH_RECORD_SIZE + HEADER_SIZE + 5)   # body of lsn 3
    with pytest.raises(WalCorruption, match="sealed") as info:
        open_log(RealFs(), str(tmp_path))
    assert info.value.path == first
    assert info.value.offset == last_batch + BATCH_RECORD_SIZE


def test_row_damage_above_durable_truncates_the_tail(tmp_path, caplog):
    seglog = open_log(RealFs(), str(tmp_path))
    write_records(seglog, 5)                               # acknowledged
    write_records(seglog, 1, sync=False)                   # lsn 6: never acknowledged
    seglog.sync()    # on disk, but no later batch declares it: indistinguishable from torn
    seglog.close()
    (path,) = segment_paths(str(tmp_path))
    flip_byte(path, _batch_offset(5) + BATCH_RECORD_SIZE + HEADER_SIZE + 1)
    with caplog.at_level(logging.WARNING, logger="qnode.wal.log"):
        seglog = open_log(RealFs(), str(tmp_path))
    assert replayed(seglog) == [(lsn, body_for(lsn)) for lsn in range(1, 6)]
    assert os.path.getsize(path) == _batch_offset(5)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings
    assert warnings[0].decision == "truncate_tail"
    # The log continues at the cut.
    assert seglog.write_batch([(16, b"next")]) == 6


@pytest.mark.parametrize("where", ["header", "body"])
def test_row_damage_at_or_below_durable_is_corrupt(tmp_path, where):
    seglog = open_log(RealFs(), str(tmp_path))
    write_records(seglog, 10)
    seglog.close()
    (path,) = segment_paths(str(tmp_path))
    record_at = _batch_offset(4) + BATCH_RECORD_SIZE       # lsn 5, declared durable by lsn 6..10
    flip_byte(path, record_at + (9 if where == "header" else HEADER_SIZE + 3))
    with pytest.raises(WalCorruption) as info:
        open_log(RealFs(), str(tmp_path))
    assert info.value.path == path
    assert info.value.offset == record_at
    assert path in str(info.value)
    assert f"offset {record_at}" in str(info.value)


def test_row_damage_at_or_below_durable_found_past_a_flipped_length(tmp_path):
    # The flipped length makes the rest of the segment unreadable in order; the scan must
    # resync on later batch headers to learn that lsn 5 was declared durable.
    seglog = open_log(RealFs(), str(tmp_path))
    write_records(seglog, 10)
    seglog.close()
    (path,) = segment_paths(str(tmp_path))
    record_at = _batch_offset(4) + BATCH_RECORD_SIZE
    flip_byte(path, record_at + 9)                          # inside `length`
    with pytest.raises(WalCorruption, match="header crc"):
        open_log(RealFs(), str(tmp_path))


def test_row_ends_below_durable_is_corrupt(tmp_path):
    seglog = open_log(RealFs(), str(tmp_path), segment_size_max=SEGMENT_HEADER_SIZE + 3 * BATCH_SIZE)
    write_records(seglog, 5)
    seglog.write_checkpoint(5, b"state")
    seglog.close()
    last = segment_paths(str(tmp_path))[-1]
    os.truncate(last, SEGMENT_HEADER_SIZE)                  # lsn 4..5 vanished
    with pytest.raises(WalCorruption, match="declared durable"):
        open_log(RealFs(), str(tmp_path))


def test_table_is_total_and_ordered():
    names = [row[0] for row in RECOVERY_TABLE]
    assert names == ["header_invalid", "lsn_break", "all_valid", "damage_in_sealed_segment",
                     "damage_above_durable", "damage_at_or_below_durable"]
    seen = set()
    for header_valid, lsn_break, damaged, is_last, cut in itertools.product(
            (True, False), (True, False), (True, False), (True, False), (5, 11)):
        facts = SegmentFacts(header_valid=header_valid, lsn_break=lsn_break, damaged=damaged,
                             cut_lsn=cut, is_last=is_last)
        row, decision = decide(facts, durable_lsn=10)
        seen.add(row)
        if not header_valid or lsn_break:
            assert decision is Decision.CORRUPT
        elif not damaged:
            assert decision is Decision.OK
        elif not is_last:
            assert decision is Decision.CORRUPT
        else:
            assert decision is (Decision.TRUNCATE_TAIL if cut > 10 else Decision.CORRUPT)
    assert seen == set(names)


def test_a_refused_log_is_left_exactly_as_found(tmp_path):
    seglog = open_log(RealFs(), str(tmp_path))
    write_records(seglog, 10)
    seglog.close()
    (path,) = segment_paths(str(tmp_path))
    flip_byte(path, _batch_offset(2) + BATCH_RECORD_SIZE + HEADER_SIZE)
    (tmp_path / "segment.tmp").write_bytes(b"leftover")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(WalCorruption):
        open_log(RealFs(), str(tmp_path))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
