"""Record, batch-header, segment-header and partition-prefix codecs.

Goal: every field survives a round trip and every single-bit error is reported as damage, never
trusted. Method: encode with the real codec, decode, then flip bytes and cut buffers short.
"""

import pytest

from qnode.protocol.errors import InvalidParameter
from qnode.wal.record import (
    HEADER_SIZE,
    KIND_BATCH,
    PARTITION_HEADER_SIZE,
    Damage,
    Decoded,
    check_kind,
    decode_batch_header,
    decode_partition_header,
    decode_record,
    encode_batch_header,
    encode_partition_header,
    encode_record,
    encode_records_into,
)
from qnode.wal.segment import (
    SEGMENT_HEADER_SIZE,
    SegmentHeader,
    decode_segment_header,
    encode_segment_header,
    parse_segment_name,
    segment_name,
)


def test_record_round_trip():
    data = encode_record(123456789, 16, b"hello")
    assert len(data) == HEADER_SIZE + 5
    rec = decode_record(data, 0)
    assert isinstance(rec, Decoded)
    assert (rec.lsn, rec.kind, rec.body, rec.end) == (123456789, 16, b"hello", len(data))


def test_encode_records_into_matches_encode_record():
    out: list[bytes] = []
    size = encode_records_into(out, 10, [(16, b"a"), (130, b""), (17, b"xyz" * 100)])
    joined = b"".join(out)
    expected = encode_record(10, 16, b"a") + encode_record(11, 130, b"") + encode_record(12, 17, b"xyz" * 100)
    assert joined == expected
    assert size == len(expected)


@pytest.mark.parametrize("offset", range(HEADER_SIZE + 5))
def test_every_flipped_byte_is_damage(offset):
    data = bytearray(encode_record(42, 16, b"hello"))
    data[offset] ^= 0x01
    rec = decode_record(bytes(data), 0)
    assert isinstance(rec, Damage)
    expected_reason = "body crc" if offset >= HEADER_SIZE else "header crc"
    if 8 <= offset < 12:
        # A flipped length is caught by the header crc before the length is used.
        expected_reason = "header crc"
    assert rec.reason == expected_reason


def test_flipped_length_is_not_trusted_even_if_it_points_past_the_end():
    data = bytearray(encode_record(1, 16, b"x" * 10))
    data[11] = 0xFF          # length's top byte: would claim a 4 GiB body
    rec = decode_record(bytes(data), 0)
    assert rec == Damage(0, "header crc")


@pytest.mark.parametrize("cut", [0, 1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 4])
def test_short_reads_are_damage(cut):
    data = encode_record(1, 16, b"hello")[:cut]
    rec = decode_record(data, 0)
    assert isinstance(rec, Damage)
    assert rec.reason == ("short header" if cut < HEADER_SIZE else "short body")


def test_batch_header_round_trip():
    data = encode_batch_header(first_lsn=100, durable_lsn=99, record_count=3, records_size=77)
    rec = decode_record(data, 0)
    assert isinstance(rec, Decoded)
    assert rec.kind == KIND_BATCH
    batch = decode_batch_header(rec.lsn, rec.body)
    assert batch is not None
    assert (batch.first_lsn, batch.durable_lsn, batch.record_count, batch.records_size) == (100, 99, 3, 77)


def test_batch_header_declaring_its_own_records_durable_is_malformed():
    body = decode_record(encode_batch_header(10, 9, 1, 1), 0).body
    assert decode_batch_header(9, body) is None


def test_kinds_reserved_for_the_wal_are_refused():
    for kind in (0, 1, 15, 256, -1):
        with pytest.raises(InvalidParameter):
            check_kind(kind)
    for kind in (16, 127, 128, 191, 255):
        check_kind(kind)


def test_partition_header_round_trip():
    body = encode_partition_header(5, 2**40, 0) + b"payload"
    partition_id, seq, epoch, offset = decode_partition_header(body)
    assert (partition_id, seq, epoch, offset) == (5, 2**40, 0, PARTITION_HEADER_SIZE)
    assert body[offset:] == b"payload"


def test_partition_header_rejects_bad_input():
    with pytest.raises(InvalidParameter):
        encode_partition_header(-1, 0, 0)
    with pytest.raises(InvalidParameter):
        encode_partition_header(0, 2**64, 0)
    with pytest.raises(InvalidParameter):
        decode_partition_header(b"short")


def test_segment_name_is_twenty_digits_and_parses_back():
    assert segment_name(123456) == "00000000000000123456.wal"
    assert parse_segment_name("00000000000000123456.wal") == 123456
    assert parse_segment_name("123456.wal") is None
    assert parse_segment_name("0000000000000012345x.wal") is None
    assert parse_segment_name("00000000000000123456.ckpt") is None


def test_segment_header_round_trip_and_crc():
    data = encode_segment_header(SegmentHeader(cluster_id=9, node_id=4, base_lsn=77))
    assert len(data) == SEGMENT_HEADER_SIZE
    assert decode_segment_header(data) == SegmentHeader(9, 4, 77)
    for offset in range(SEGMENT_HEADER_SIZE):
        damaged = bytearray(data)
        damaged[offset] ^= 0x10
        assert isinstance(decode_segment_header(bytes(damaged)), str)
    assert isinstance(decode_segment_header(data[:10]), str)
