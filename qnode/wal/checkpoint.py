"""Checkpoint files: `<lsn, 20 digits>.ckpt`, the engine's whole live state as of an LSN.

Layout (little-endian) — the trailer is at the end so the payload can be streamed in chunks:

    payload (payload_size bytes, opaque) | retired base LSNs (u64 each)
    | trailer: magic 8s "QNWALCKP" | version u16 | reserved u16 | cluster_id u64 | node_id u64
               | lsn u64 | live_base_lsn u64 | payload_size u64 | retired_count u32
               | body_crc u32 (payload + retired list) | trailer_crc u32 (the trailer before it)

- `lsn`: every record with LSN <= lsn is contained in the payload; replay starts after it.
- `live_base_lsn`: base LSN of the first segment that is still live. Segments with a smaller base
  were retired by this or an earlier checkpoint, so their absence is not a gap (recovery deletes
  any that a crash left behind). The retired list names the segments this checkpoint retired, for
  `wal verify` and the logs; it is bounded by the number of segments.

Pure: encodes and decodes bytes only; never raises on bad bytes (returns a reason string).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from qnode.wal.record import crc32c

CHECKPOINT_SUFFIX = ".ckpt"
CHECKPOINT_TEMP_NAME = "checkpoint.tmp"
CHECKPOINT_MAGIC = b"QNWALCKP"
CHECKPOINT_VERSION = 1
_TRAILER = struct.Struct("<8sHHQQQQQIII")
TRAILER_SIZE = _TRAILER.size
_U64 = struct.Struct("<Q")


def checkpoint_name(lsn: int) -> str:
    return f"{lsn:020d}{CHECKPOINT_SUFFIX}"


def parse_checkpoint_name(name: str) -> int | None:
    if not name.endswith(CHECKPOINT_SUFFIX):
        return None
    stem = name[: -len(CHECKPOINT_SUFFIX)]
    if len(stem) != 20 or not stem.isdigit():
        return None
    return int(stem)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    lsn: int
    live_base_lsn: int
    retired_base_lsns: tuple[int, ...]
    payload: bytes


def encode_checkpoint_chunks(payload: bytes | Iterable[bytes], *, cluster_id: int, node_id: int,
                             lsn: int, live_base_lsn: int,
                             retired_base_lsns: tuple[int, ...]) -> Iterator[bytes]:
    """Yield the file's bytes in chunks: the payload chunks as given, then the list and trailer."""
    chunks: Iterable[bytes] = (payload,) if isinstance(payload, (bytes, bytearray, memoryview)) else payload
    crc = 0
    size = 0
    for chunk in chunks:
        chunk = bytes(chunk)
        crc = crc32c(chunk, crc)
        size += len(chunk)
        yield chunk
    retired = b"".join(_U64.pack(base) for base in retired_base_lsns)
    crc = crc32c(retired, crc)
    yield retired
    trailer = _TRAILER.pack(CHECKPOINT_MAGIC, CHECKPOINT_VERSION, 0, cluster_id, node_id, lsn,
                            live_base_lsn, size, len(retired_base_lsns), crc, 0)[:-4]
    yield trailer + struct.pack("<I", crc32c(trailer))


def decode_checkpoint(data: bytes, *, cluster_id: int, node_id: int,
                      lsn_from_name: int) -> Checkpoint | str:
    """The checkpoint in `data`, or a string saying why it is invalid."""
    if len(data) < TRAILER_SIZE:
        return f"checkpoint shorter than its trailer ({len(data)} bytes)"
    t_at = len(data) - TRAILER_SIZE
    (magic, version, _reserved, c_id, n_id, lsn, live_base, size, retired_count, body_crc,
     trailer_crc) = _TRAILER.unpack_from(data, t_at)
    if crc32c(data[t_at:len(data) - 4]) != trailer_crc:
        return "checkpoint trailer crc mismatch"
    if magic != CHECKPOINT_MAGIC or version != CHECKPOINT_VERSION:
        return f"bad checkpoint magic or version ({magic!r}, {version})"
    if (c_id, n_id) != (cluster_id, node_id):
        return f"checkpoint belongs to cluster {c_id} node {n_id}, not cluster {cluster_id} node {node_id}"
    if lsn != lsn_from_name:
        return f"checkpoint lsn {lsn} does not match its file name lsn {lsn_from_name}"
    if size + retired_count * _U64.size != t_at:
        return "checkpoint sizes do not add up"
    if crc32c(data[:t_at]) != body_crc:
        return "checkpoint body crc mismatch"
    retired = tuple(_U64.unpack_from(data, size + i * _U64.size)[0] for i in range(retired_count))
    return Checkpoint(lsn=lsn, live_base_lsn=live_base, retired_base_lsns=retired,
                      payload=bytes(data[:size]))
