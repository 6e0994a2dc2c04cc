"""Segment files: naming, the segment header, and the scan that recovery and replay share.

A segment file is `<base LSN, 20 digits>.wal` = segment header, then whole batches:

    segment header (40 bytes, little-endian):
      magic 8s "QNODEWAL" | version u16 | reserved u16 | cluster_id u64 | node_id u64
      | base_lsn u64 | header_crc u32 (CRC32C of the 36 bytes before it)
    batch: KIND_BATCH record, then `record_count` user records with consecutive LSNs
    then, possibly, zeros to the end of the file (preallocated space, see `SegmentedLog.preallocate`)

Invariants a valid segment satisfies (checked by `scan_segment`, never assumed):
- the header CRC verifies, the magic and version are ours, the cluster and node ids match the
  opener's, and base_lsn equals the LSN in the file name;
- the first batch starts at base_lsn and LSNs are consecutive across batches;
- each batch holds exactly the records and bytes its header declares;
- what follows the last batch, if anything, is zeros only. A record header is never all zeros
  (its CRC of zeros is not zero), so a zero run at a batch boundary cannot be a batch.

Pure: works on bytes already read; no I/O, no clock. Never raises on bad bytes: the scan reports
what it found and `recovery.py` decides what to do about it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from qnode.wal.record import (
    BATCH_MAGIC,
    HEADER_SIZE,
    KIND_BATCH,
    KIND_WAL_MAX,
    Damage,
    Decoded,
    Record,
    crc32c,
    decode_batch_header,
    decode_record,
)

SEGMENT_SUFFIX = ".wal"
SEGMENT_NAME_DIGITS = 20
SEGMENT_MAGIC = b"QNODEWAL"
SEGMENT_VERSION = 1
_SEGMENT_HEADER = struct.Struct("<8sHHQQQI")
SEGMENT_HEADER_SIZE = _SEGMENT_HEADER.size     # 40
assert SEGMENT_HEADER_SIZE == 40


def segment_name(base_lsn: int) -> str:
    """`00000000000000123456.wal`: name order is LSN order."""
    assert 0 <= base_lsn < 10 ** SEGMENT_NAME_DIGITS, base_lsn
    return f"{base_lsn:0{SEGMENT_NAME_DIGITS}d}{SEGMENT_SUFFIX}"


def parse_segment_name(name: str) -> int | None:
    """The base LSN of a segment file name, or None if `name` is not a segment name."""
    if not name.endswith(SEGMENT_SUFFIX):
        return None
    stem = name[: -len(SEGMENT_SUFFIX)]
    if len(stem) != SEGMENT_NAME_DIGITS or not stem.isdigit():
        return None
    return int(stem)


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    cluster_id: int
    node_id: int
    base_lsn: int


def encode_segment_header(header: SegmentHeader) -> bytes:
    body = _SEGMENT_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION, 0, header.cluster_id,
                                header.node_id, header.base_lsn, 0)[:-4]
    return body + struct.pack("<I", crc32c(body))


def decode_segment_header(data: bytes) -> SegmentHeader | str:
    """The header at the start of `data`, or a string saying why it is invalid."""
    if len(data) < SEGMENT_HEADER_SIZE:
        return f"short segment header ({len(data)} bytes)"
    magic, version, _reserved, cluster_id, node_id, base_lsn, crc = _SEGMENT_HEADER.unpack_from(data, 0)
    if crc32c(bytes(data[:SEGMENT_HEADER_SIZE - 4])) != crc:
        return "segment header crc mismatch"
    if magic != SEGMENT_MAGIC:
        return f"bad segment magic {magic!r}"
    if version != SEGMENT_VERSION:
        return f"unsupported segment format version {version}"
    return SegmentHeader(cluster_id=cluster_id, node_id=node_id, base_lsn=base_lsn)


@dataclass(slots=True)
class SegmentScan:
    """What a scan of one segment found. `valid_end`/`next_lsn` describe the valid prefix."""

    base_lsn: int                         # from the file name
    size: int                             # bytes scanned
    header_problem: str | None = None     # None: the header is valid
    valid_end: int = 0                    # offset after the last complete valid batch
    next_lsn: int = 0                     # LSN after the valid prefix
    batch_count: int = 0                  # complete valid batches in the prefix
    record_count: int = 0                 # user records in the prefix
    damage: Damage | None = None          # first damaged byte range (bad CRC, short read, ...)
    lsn_problem: Damage | None = None     # a valid record whose LSN breaks the sequence
    declared_durable_lsn: int = 0         # max durable_lsn over every valid batch header found
    batches_after_damage: int = 0         # valid batch headers found by resync after the damage
    zero_tail: int = 0                    # bytes of zeros after the last batch (preallocated)
    records: list[Record] = field(default_factory=list)   # only when collected
    batch_starts: list[tuple[int, int]] = field(default_factory=list)  # (offset, first lsn); collected

    @property
    def first_lsn(self) -> int:
        return self.base_lsn

    @property
    def last_lsn(self) -> int:
        """LSN of the last valid record (base_lsn - 1 when the segment holds none)."""
        return self.next_lsn - 1

    @property
    def cut_lsn(self) -> int:
        """First LSN of the batch that holds the damage (the first LSN a cut would drop)."""
        return self.next_lsn


def scan_segment(data: bytes, base_lsn: int, *, cluster_id: int, node_id: int,
                 collect: bool = False, after_lsn: int = 0) -> SegmentScan:
    """Scan a whole segment image; with `collect`, keep records with LSN > `after_lsn`.

    Stops the normal scan at the first damaged byte or LSN break, then searches forward for
    further valid batch headers (by their magic) to learn their durable declarations: damage
    at or below a later declaration is corruption, not a torn tail (docs/design/wal.md).
    """
    scan = SegmentScan(base_lsn=base_lsn, size=len(data), next_lsn=base_lsn)
    header = decode_segment_header(data)
    if isinstance(header, str):
        scan.header_problem = header
        return scan
    if header.base_lsn != base_lsn:
        scan.header_problem = f"header base lsn {header.base_lsn} does not match file name lsn {base_lsn}"
        return scan
    if header.cluster_id != cluster_id:
        scan.header_problem = f"segment belongs to cluster {header.cluster_id}, not {cluster_id}"
        return scan
    if header.node_id != node_id:
        scan.header_problem = f"segment belongs to node {header.node_id}, not {node_id}"
        return scan
    end = len(data)
    pos = SEGMENT_HEADER_SIZE
    scan.valid_end = pos
    batches_seen = 0
    # Bounded: every iteration consumes at least one record header or stops.
    while pos < end:
        stop = _scan_batch(data, pos, end, scan, collect, after_lsn)
        batches_seen += 1
        if stop:
            break
        pos = scan.valid_end
    assert batches_seen <= end // HEADER_SIZE + 1
    if scan.damage is not None or scan.lsn_problem is not None:
        start = (scan.damage or scan.lsn_problem).offset
        _resync(data, start, scan)
    return scan


def _scan_batch(data: bytes, pos: int, end: int, scan: SegmentScan, collect: bool,
                after_lsn: int) -> bool:
    """Scan the batch at `pos`; on success advance scan.valid_end/next_lsn. True: stop scanning."""
    first = decode_record(data, pos, end)
    if isinstance(first, Damage):
        if data.count(0, pos, end) == end - pos:      # preallocated zeros: the clean end
            scan.zero_tail = end - pos
        else:
            scan.damage = first
        return True
    if first.kind != KIND_BATCH:
        scan.damage = Damage(pos, f"expected a batch header, found kind {first.kind}")
        return True
    batch = decode_batch_header(first.lsn, first.body)
    if batch is None:
        scan.damage = Damage(pos, "malformed batch header")
        return True
    if first.lsn != scan.next_lsn:
        what = "gap" if first.lsn > scan.next_lsn else "goes backwards"
        scan.lsn_problem = Damage(pos, f"lsn {what}: batch starts at {first.lsn}, expected {scan.next_lsn}")
        return True
    scan.declared_durable_lsn = max(scan.declared_durable_lsn, batch.durable_lsn)
    p = first.end
    lsn = first.lsn
    collected: list[Record] = []
    for _ in range(batch.record_count):
        rec = decode_record(data, p, end)
        if isinstance(rec, Damage):
            scan.damage = rec
            return True
        if rec.kind <= KIND_WAL_MAX:
            scan.damage = Damage(p, f"unexpected wal-internal kind {rec.kind} inside a batch")
            return True
        if rec.lsn != lsn:
            what = "gap" if rec.lsn > lsn else "goes backwards"
            scan.lsn_problem = Damage(p, f"lsn {what}: record has {rec.lsn}, expected {lsn}")
            return True
        if collect and rec.lsn > after_lsn:
            collected.append(Record(rec.lsn, rec.kind, rec.body))
        p = rec.end
        lsn += 1
    if p - first.end != batch.records_size:
        scan.damage = Damage(p, f"batch size mismatch: {p - first.end} != {batch.records_size}")
        return True
    if collect:
        scan.records.extend(collected)
        scan.batch_starts.append((pos, first.lsn))
    scan.valid_end = p
    scan.next_lsn = lsn
    scan.batch_count += 1
    scan.record_count += batch.record_count
    return False


def _resync(data: bytes, start: int, scan: SegmentScan) -> None:
    """Find valid batch headers after `start` by their magic and record their declarations."""
    magic_at = data.find(BATCH_MAGIC, start + 1)
    while magic_at != -1:
        rec_at = magic_at - HEADER_SIZE
        if rec_at > start:
            rec = decode_record(data, rec_at)
            if isinstance(rec, Decoded) and rec.kind == KIND_BATCH:
                batch = decode_batch_header(rec.lsn, rec.body)
                if batch is not None:
                    scan.batches_after_damage += 1
                    scan.declared_durable_lsn = max(scan.declared_durable_lsn, batch.durable_lsn)
        magic_at = data.find(BATCH_MAGIC, magic_at + 1)
