"""WAL record codec: the fixed record header, the batch header, and the queue body prefix.

Owns the on-disk byte layout of one record (all integers little-endian):

    header_crc u32 | body_crc u32 | length u32 | kind u8 | lsn u64 | body (length bytes)

- `header_crc` = CRC32C of the 17 header bytes after it (body_crc .. lsn), so a flipped `length`
  is caught before it is trusted; `body_crc` = CRC32C of the body. Every decode checks both.
- Kinds 0-15 belong to the WAL itself, 16-127 to the queue engine, 128-191 to Raft; 192-255 are
  unassigned. Bodies are opaque bytes here.
- Every batch starts with one `KIND_BATCH` record (WAL-internal). It does not consume an LSN: its
  `lsn` field is the LSN of the first record of the batch. Its body declares the highest LSN that
  was already durable when the batch was written, how many records follow and how many bytes they
  take; recovery uses the declarations to tell a torn tail from corruption (docs/design/wal.md).
  A batch of zero records (a "durability marker") only declares: the WAL writes one, without
  fsync, when it goes idle, so that the last acknowledged batch is declared durable too.

Pure: no I/O, no clock, no randomness. Never raises on bad input bytes: decoding returns a
`Damage` value naming the reason, since damage is an expected state on disk.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import crc32c as _crc32c

from qnode.protocol.errors import InvalidParameter

crc32c = _crc32c.crc32c

# --- record header ---------------------------------------------------------------------------
_HEADER = struct.Struct("<IIIBQ")           # header_crc, body_crc, length, kind, lsn
_HEADER_REST = struct.Struct("<IIBQ")       # the part header_crc covers
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEADER.size                  # 21
assert HEADER_SIZE == 21
assert _HEADER_REST.size == HEADER_SIZE - 4

LSN_MAX = (1 << 64) - 1
BODY_SIZE_MAX = (1 << 32) - 1               # what the length field can express

# --- kinds -----------------------------------------------------------------------------------
KIND_BATCH = 1                  # WAL-internal batch header (see module docstring)
KIND_WAL_MAX = 15               # 0..15: reserved for the WAL
KIND_QUEUE_MIN = 16             # 16..127: queue engine
KIND_QUEUE_MAX = 127
KIND_RAFT_MIN = 128             # 128..191: Raft
KIND_RAFT_MAX = 191
KIND_USER_MIN = KIND_QUEUE_MIN  # the smallest kind a WAL user may append
KIND_MAX = 255

# --- batch header body -----------------------------------------------------------------------
# magic u64 | durable_lsn u64 | record_count u32 | records_size u32
# The magic lets recovery find the next batch after damage with bytes.find (a resync point).
BATCH_MAGIC = b"QNWALBT\x01"
_BATCH_BODY = struct.Struct("<8sQII")
BATCH_BODY_SIZE = _BATCH_BODY.size          # 24
BATCH_RECORD_SIZE = HEADER_SIZE + BATCH_BODY_SIZE


@dataclass(frozen=True, slots=True)
class Record:
    """One user record as replayed: its LSN, kind and opaque body."""

    lsn: int
    kind: int
    body: bytes


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The WAL-internal record that opens every batch."""

    first_lsn: int       # LSN of the first record of the batch
    durable_lsn: int     # highest LSN durable when the batch was written (0: none)
    record_count: int    # user records that follow (0: a durability marker)
    records_size: int    # bytes those records take, headers included


@dataclass(frozen=True, slots=True)
class Decoded:
    """A record whose two CRCs verified."""

    offset: int
    lsn: int
    kind: int
    body: bytes
    end: int             # offset of the next record


@dataclass(frozen=True, slots=True)
class Damage:
    """No valid record at `offset`; `reason` says why ('short header', 'header crc', ...)."""

    offset: int
    reason: str


def check_kind(kind: int) -> None:
    """Raise InvalidParameter unless `kind` is a kind a WAL user may append."""
    if not isinstance(kind, int) or not KIND_USER_MIN <= kind <= KIND_MAX:
        raise InvalidParameter(f"wal record kind must be {KIND_USER_MIN}..{KIND_MAX}, got {kind!r}")


def encode_record(lsn: int, kind: int, body: bytes) -> bytes:
    """Encode one record (header and body). Preconditions are asserted: callers validate."""
    assert 0 <= kind <= KIND_MAX, kind
    assert 0 <= lsn <= LSN_MAX, lsn
    assert len(body) <= BODY_SIZE_MAX
    rest = _HEADER_REST.pack(crc32c(body), len(body), kind, lsn)
    return _CRC.pack(crc32c(rest)) + rest + body


def encode_records_into(out: list[bytes], first_lsn: int,
                        records: list[tuple[int, bytes]]) -> int:
    """Append header and body chunks of `records` to `out`, LSNs from `first_lsn`.

    Returns the byte size appended. The hot path of a batch: one pack per record, no copies of
    the bodies (the caller joins `out` once).
    """
    pack_rest = _HEADER_REST.pack
    pack_crc = _CRC.pack
    size = 0
    lsn = first_lsn
    for kind, body in records:
        rest = pack_rest(crc32c(body), len(body), kind, lsn)
        out.append(pack_crc(crc32c(rest)))
        out.append(rest)
        out.append(body)
        size += HEADER_SIZE + len(body)
        lsn += 1
    return size


def encode_batch_header(first_lsn: int, durable_lsn: int, record_count: int,
                        records_size: int) -> bytes:
    """Encode the KIND_BATCH record that opens a batch."""
    assert 0 <= durable_lsn < first_lsn, (durable_lsn, first_lsn)
    assert record_count >= 0
    assert record_count > 0 or records_size == 0
    body = _BATCH_BODY.pack(BATCH_MAGIC, durable_lsn, record_count, records_size)
    return encode_record(first_lsn, KIND_BATCH, body)


def decode_batch_header(lsn: int, body: bytes) -> BatchHeader | None:
    """Decode the body of the KIND_BATCH record at `lsn`; None if malformed."""
    if len(body) != BATCH_BODY_SIZE:
        return None
    magic, durable_lsn, count, size = _BATCH_BODY.unpack(body)
    if magic != BATCH_MAGIC or durable_lsn >= lsn or (count == 0 and size != 0):
        return None
    return BatchHeader(first_lsn=lsn, durable_lsn=durable_lsn, record_count=count, records_size=size)


def decode_record(buf: bytes | memoryview, offset: int, end: int | None = None) -> Decoded | Damage:
    """Decode the record at `offset` of `buf` (up to `end`), verifying both CRCs.

    Returns `Decoded` or `Damage(offset, reason)`; reasons: 'short header', 'header crc',
    'short body', 'body crc'. Never raises on bad bytes.
    """
    if end is None:
        end = len(buf)
    if end - offset < HEADER_SIZE:
        return Damage(offset, "short header")
    header_crc, body_crc, length, kind, lsn = _HEADER.unpack_from(buf, offset)
    if crc32c(bytes(buf[offset + 4:offset + HEADER_SIZE])) != header_crc:
        return Damage(offset, "header crc")
    body_start = offset + HEADER_SIZE
    body_end = body_start + length
    if body_end > end:
        return Damage(offset, "short body")
    body = bytes(buf[body_start:body_end])
    if crc32c(body) != body_crc:
        return Damage(offset, "body crc")
    return Decoded(offset=offset, lsn=lsn, kind=kind, body=body, end=body_end)


# --- queue record body prefix ----------------------------------------------------------------
# partition_id u64 | seq u64 | epoch u64, then the engine's payload. Queue records must carry the
# partition, the partition's own sequence number and the leader epoch (DESIGN.md "Storage layout").
_PARTITION = struct.Struct("<QQQ")
PARTITION_HEADER_SIZE = _PARTITION.size     # 24
_U64_MAX = (1 << 64) - 1


def encode_partition_header(partition_id: int, seq: int, epoch: int) -> bytes:
    """The fixed prefix of a queue record body; append the payload after it.

    Raises InvalidParameter if a field is not an integer in 0..2**64-1.
    """
    for name, value in (("partition_id", partition_id), ("seq", seq), ("epoch", epoch)):
        if not isinstance(value, int) or not 0 <= value <= _U64_MAX:
            raise InvalidParameter(f"{name} must be an integer in 0..2**64-1, got {value!r}")
    return _PARTITION.pack(partition_id, seq, epoch)


def decode_partition_header(body: bytes | memoryview) -> tuple[int, int, int, int]:
    """Return (partition_id, seq, epoch, payload_offset) of a queue record body.

    Raises InvalidParameter if the body is shorter than the prefix.
    """
    if len(body) < PARTITION_HEADER_SIZE:
        raise InvalidParameter(
            f"queue record body of {len(body)} bytes is shorter than its {PARTITION_HEADER_SIZE}-byte prefix")
    partition_id, seq, epoch = _PARTITION.unpack_from(body, 0)
    return partition_id, seq, epoch, PARTITION_HEADER_SIZE
