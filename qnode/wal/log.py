"""SegmentedLog: the synchronous WAL over a `FileSystem` (real disk or the simulator's MemFs).

Owns one directory: segment files `<base lsn>.wal`, at most one valid checkpoint `<lsn>.ckpt`
(two while a new one is being made durable), and temp files it deletes at open.
No asyncio and no threads: the asyncio shell (`writer.py`) calls it from one executor thread, the
Raft simulator calls it directly. One caller at a time.

Invariants:
- LSNs start at 1 and are consecutive; `durable_lsn <= last_lsn`; every record <= durable_lsn was
  fsynced (file data; names by `fsync_dir`).
- Segments are a chain: each base LSN is its predecessor's last LSN + 1, the first one is the
  checkpoint's `live_base_lsn` (1 without a checkpoint). Only the newest segment is appended to;
  rolling fsyncs the old segment before the new one is created, so a sealed segment is durable.
- A new segment or checkpoint is written under a temp name, fsynced, renamed, and the directory
  fsynced, so a final name never holds a torn header.
- Every batch is one `append` (one write) and carries the durable LSN at the time it was written.
- After an I/O error the log is failed: every later call raises (no retry after a failed fsync).

Recovery (`open`) follows the decision table in `recovery.py` and logs one line per segment.
"""

from __future__ import annotations

import errno
import logging
import posixpath
from collections.abc import Iterable, Iterator

from qnode import limits
from qnode.protocol.errors import InvalidParameter
from qnode.wal.checkpoint import (
    CHECKPOINT_TEMP_NAME,
    Checkpoint,
    checkpoint_name,
    decode_checkpoint,
    encode_checkpoint_chunks,
    parse_checkpoint_name,
)
from qnode.wal.errors import CheckpointNotWritten, WalCorruption, WalFailed
from qnode.wal.fs import FileHandle, FileSystem
from qnode.wal.record import (
    BATCH_RECORD_SIZE,
    HEADER_SIZE,
    KIND_MAX,
    KIND_USER_MIN,
    Record,
    encode_batch_header,
    encode_records_into,
)
from qnode.wal.recovery import Decision, Verdict, judge_log
from qnode.wal.segment import (
    SEGMENT_HEADER_SIZE,
    SegmentHeader,
    SegmentScan,
    encode_segment_header,
    parse_segment_name,
    scan_segment,
    segment_name,
)

log = logging.getLogger(__name__)

SEGMENT_TEMP_NAME = "segment.tmp"
_TEMP_SUFFIX = ".tmp"
_CHECKPOINT_WRITE_CHUNK_SIZE = 1 << 20     # buffer small payload chunks into ~1 MiB writes


def _log_fields(path: str, scan: SegmentScan, verdict: Verdict) -> dict[str, object]:
    return {"path": path, "decision": verdict.decision.value, "row": verdict.row,
            "offset": verdict.offset, "first_lsn": scan.base_lsn, "last_lsn": scan.last_lsn,
            "reason": verdict.reason}


class SegmentedLog:
    """See the module docstring. Build with `SegmentedLog.open(...)`."""

    def __init__(self, fs: FileSystem, directory: str, *, cluster_id: int, node_id: int,
                 segment_size_max: int, fsync: bool) -> None:
        if segment_size_max < SEGMENT_HEADER_SIZE + BATCH_RECORD_SIZE + HEADER_SIZE:
            raise InvalidParameter(f"segment_size_max {segment_size_max} is too small")
        self._fs = fs
        self._dir = directory
        self._cluster_id = cluster_id
        self._node_id = node_id
        self._segment_size_max = segment_size_max
        self._fsync_enabled = fsync
        self._segments: list[int] = []         # base LSNs, ascending; the last is active
        self._handle: FileHandle | None = None
        self._active_size = 0
        self._zeroed_end = 0                    # preallocated zeros in the active segment end here
        self._last_lsn = 0
        self._durable_lsn = 0
        self._declared_lsn = 0                  # highest durable LSN some written batch declares
        self._checkpoint_lsn = 0
        self._checkpoint_payload: bytes | None = None
        self._has_checkpoint = False
        self._live_base_lsn = 1
        self._failed: BaseException | None = None
        self._closed = False

    # --- opening and recovery ----------------------------------------------------------------
    @classmethod
    def open(cls, fs: FileSystem, directory: str, *, cluster_id: int, node_id: int,
             segment_size_max: int = limits.wal_segment_size_max,
             fsync: bool = True) -> SegmentedLog:
        """Open (creating if empty) the log in `directory` and run recovery.

        Raises WalCorruption if acknowledged data is damaged or the log is inconsistent (the
        message and `.path`/`.offset` name the place), OSError on I/O errors.
        """
        self = cls(fs, str(directory), cluster_id=cluster_id, node_id=node_id,
                   segment_size_max=segment_size_max, fsync=fsync)
        self._recover()
        return self

    def _path(self, name: str) -> str:
        return posixpath.join(self._dir, name)

    def _recover(self) -> None:
        # Judge first, change files after: a log that is refused is left exactly as found.
        fs = self._fs
        fs.makedirs(self._dir)
        names = fs.list(self._dir)
        removals = [n for n in names if n.endswith(_TEMP_SUFFIX)]
        removals += self._load_checkpoint(names)
        bases = sorted(b for b in (parse_segment_name(n) for n in names) if b is not None)
        # Retired by the checkpoint, and a crash came before the delete was durable.
        removals += [segment_name(b) for b in bases if b < self._live_base_lsn]
        bases = [b for b in bases if b >= self._live_base_lsn]
        if not bases:
            if self._has_checkpoint:
                raise WalCorruption(self._dir, 0, f"no segment file, but the checkpoint at lsn "
                                    f"{self._checkpoint_lsn} expects segment {self._live_base_lsn}")
            self._remove_leftovers(removals)
            self._create_segment(self._live_base_lsn)
            self._last_lsn = self._durable_lsn = self._live_base_lsn - 1
            log.info("wal: created a new log", extra={"directory": self._dir})
            return
        scans = [self._scan(base) for base in bases]
        _durable, verdicts = judge_log(scans, live_base_lsn=self._live_base_lsn,
                                       checkpoint_lsn=self._checkpoint_lsn)
        for scan, verdict in zip(scans, verdicts):
            path = self._path(segment_name(scan.base_lsn))
            extra = _log_fields(path, scan, verdict)
            if verdict.decision is Decision.CORRUPT:
                log.error("wal: segment corrupt: %s", verdict.reason, extra=extra)
                raise WalCorruption(path, verdict.offset, verdict.reason)
        self._remove_leftovers(removals)
        for scan, verdict in zip(scans, verdicts):
            path = self._path(segment_name(scan.base_lsn))
            extra = _log_fields(path, scan, verdict)
            if verdict.decision is Decision.TRUNCATE_TAIL:
                log.warning("wal: truncating torn tail: %s", verdict.reason, extra=extra)
                handle = fs.open(path)
                fs.truncate(handle, scan.valid_end)
                self._fsync(handle)
                fs.close(handle)
            else:
                assert verdict.decision is Decision.OK
                log.info("wal: segment ok", extra=extra)
        last = scans[-1]
        self._segments = bases
        self._handle = fs.open(self._path(segment_name(bases[-1])))
        self._active_size = fs.size(self._handle)
        if self._active_size > last.valid_end:
            assert self._active_size == last.valid_end + last.zero_tail, (self._active_size, last)
            fs.truncate(self._handle, last.valid_end)     # preallocated zeros: made again on demand
            self._active_size = last.valid_end
        # What survived a process crash may still be only in the page cache: make it durable
        # before the first new batch declares it so.
        self._fsync(self._handle)
        self._last_lsn = self._durable_lsn = last.last_lsn
        self._declared_lsn = min(last.declared_durable_lsn, self._last_lsn)

    def _remove_leftovers(self, names: list[str]) -> None:
        """Delete temp files, superseded checkpoints and retired segments a crash left behind."""
        for name in names:
            log.info("wal: removing leftover file", extra={"path": self._path(name)})
            self._fs.remove(self._path(name))
        if names:
            self._fsync_dir()

    def _load_checkpoint(self, names: list[str]) -> list[str]:
        """Adopt the newest valid checkpoint; returns the names of older (superseded) ones."""
        found = sorted(((lsn, n) for n in names if (lsn := parse_checkpoint_name(n)) is not None),
                       reverse=True)
        chosen: Checkpoint | None = None
        superseded: list[str] = []
        for lsn, name in found:
            if chosen is not None:
                superseded.append(name)
                continue
            decoded = decode_checkpoint(self._fs.read(self._path(name)), cluster_id=self._cluster_id,
                                        node_id=self._node_id, lsn_from_name=lsn)
            if isinstance(decoded, str):
                # Renamed only after its fsync, so this is rot; an older checkpoint is usable
                # only if the segments it needs still exist (the chain check decides).
                log.error("wal: invalid checkpoint: %s", decoded, extra={"path": self._path(name)})
                continue
            chosen = decoded
        if chosen is not None:
            self._has_checkpoint = True
            self._checkpoint_lsn = chosen.lsn
            self._checkpoint_payload = chosen.payload
            self._live_base_lsn = chosen.live_base_lsn
            log.info("wal: checkpoint loaded", extra={"lsn": chosen.lsn,
                                                      "live_base_lsn": chosen.live_base_lsn,
                                                      "size": len(chosen.payload)})
        return superseded

    def _scan(self, base: int, *, collect: bool = False, after_lsn: int = 0,
              size: int | None = None) -> SegmentScan:
        data = self._fs.read(self._path(segment_name(base)))
        if size is not None:
            data = data[:size]
        return scan_segment(data, base, cluster_id=self._cluster_id, node_id=self._node_id,
                            collect=collect, after_lsn=after_lsn)

    # --- properties --------------------------------------------------------------------------
    @property
    def directory(self) -> str:
        return self._dir

    @property
    def last_lsn(self) -> int:
        """LSN of the last record written (0 when none ever was)."""
        return self._last_lsn

    @property
    def durable_lsn(self) -> int:
        """Every record with LSN <= durable_lsn is fsynced."""
        return self._durable_lsn

    @property
    def first_lsn(self) -> int:
        """Smallest LSN the segments may still hold (the first live segment's base)."""
        return self._segments[0]

    @property
    def checkpoint(self) -> tuple[int, bytes] | None:
        """(lsn, payload) of the newest valid checkpoint, or None."""
        if not self._has_checkpoint:
            return None
        if self._checkpoint_payload is None:
            decoded = decode_checkpoint(self._fs.read(self._path(checkpoint_name(self._checkpoint_lsn))),
                                        cluster_id=self._cluster_id, node_id=self._node_id,
                                        lsn_from_name=self._checkpoint_lsn)
            if isinstance(decoded, str):
                raise WalCorruption(self._path(checkpoint_name(self._checkpoint_lsn)), 0, decoded)
            self._checkpoint_payload = decoded.payload
        return self._checkpoint_lsn, self._checkpoint_payload

    @property
    def checkpoint_lsn(self) -> int:
        return self._checkpoint_lsn

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    def free_bytes(self) -> int:
        return self._fs.free_bytes(self._dir)

    # --- reading -----------------------------------------------------------------------------
    def replay(self, after_lsn: int | None = None) -> Iterator[Record]:
        """Yield every record with LSN > after_lsn (default: the checkpoint's LSN), in order.

        Reads one segment at a time. Raises WalCorruption if a segment was damaged since open.
        """
        self._check_usable()
        after = self._checkpoint_lsn if after_lsn is None else after_lsn
        if after < self._segments[0] - 1:
            raise InvalidParameter(f"records up to lsn {self._segments[0] - 1} were retired; "
                                   f"cannot replay after {after}")
        segments = list(self._segments)
        active_size = self._active_size
        for i, base in enumerate(segments):
            last_in_segment = segments[i + 1] - 1 if i + 1 < len(segments) else self._last_lsn
            if last_in_segment <= after:
                continue
            is_active = i == len(segments) - 1
            scan = self._scan(base, collect=True, after_lsn=after,
                              size=active_size if is_active else None)
            if scan.damage is not None or scan.lsn_problem is not None or scan.header_problem:
                problem = scan.damage or scan.lsn_problem
                raise WalCorruption(self._path(segment_name(base)), problem.offset if problem else 0,
                                    problem.reason if problem else str(scan.header_problem))
            yield from scan.records

    # --- writing -----------------------------------------------------------------------------
    def write_batch(self, records: list[tuple[int, bytes]]) -> int:
        """Write `records` (kind, body) as one batch with consecutive LSNs; one write.

        Returns the last LSN assigned (last_lsn unchanged if `records` is empty). Not durable
        until `sync()`. Raises InvalidParameter for a bad kind or body, OSError on I/O errors
        (the log is then failed).
        """
        for kind, body in records:
            if not isinstance(kind, int) or not KIND_USER_MIN <= kind <= KIND_MAX:
                raise InvalidParameter(f"wal record kind must be {KIND_USER_MIN}..{KIND_MAX}, got {kind!r}")
            if not isinstance(body, bytes):
                raise InvalidParameter(f"wal record body must be bytes, got {type(body).__name__}")
            if len(body) > limits.wal_record_size_max:
                raise InvalidParameter(f"wal record of {len(body)} bytes exceeds "
                                       f"wal_record_size_max {limits.wal_record_size_max}")
        return self.write_validated(records)

    def write_validated(self, records: list[tuple[int, bytes]]) -> int:
        """`write_batch` without the per-record checks (the asyncio shell validated them)."""
        self._check_usable()
        if not records:
            return self._last_lsn
        first_lsn = self._last_lsn + 1
        chunks: list[bytes] = [b""]
        size = encode_records_into(chunks, first_lsn, records)
        total = BATCH_RECORD_SIZE + size
        try:
            # Roll only a segment that holds a record: the new one's base (last_lsn + 1) must
            # differ from the active one's (a segment of markers only keeps being used).
            if (self._active_size + total > self._segment_size_max
                    and self._last_lsn >= self._segments[-1]):
                self._roll()
            chunks[0] = encode_batch_header(first_lsn, self._durable_lsn, len(records), size)
            self._fs.append(self._handle, b"".join(chunks))
        except OSError as e:
            self._failed = e
            raise
        self._active_size += total
        self._declared_lsn = self._durable_lsn
        self._last_lsn = first_lsn + len(records) - 1
        return self._last_lsn

    def write_durability_marker(self) -> bool:
        """Append an empty batch declaring durable_lsn, without fsync; False if not needed.

        The newest batch's durability is otherwise declared by no one, so damage to it would
        read as a torn tail. Call when going idle (the asyncio shell does); writeback makes the
        marker durable soon after. Only already-fsynced LSNs are declared, so it is always safe.
        """
        self._check_usable()
        if self._durable_lsn <= self._declared_lsn or self._durable_lsn != self._last_lsn:
            return False
        if self._active_size + BATCH_RECORD_SIZE > self._segment_size_max:
            return False     # a roll would fsync for nothing; the next batch declares it
        try:
            self._fs.append(self._handle, encode_batch_header(self._last_lsn + 1,
                                                              self._durable_lsn, 0, 0))
        except OSError as e:
            self._failed = e
            raise
        self._active_size += BATCH_RECORD_SIZE
        self._declared_lsn = self._durable_lsn
        return True

    def sync(self) -> int:
        """fdatasync the active segment; returns the durable LSN. OSError fails the log."""
        self._check_usable()
        if self._durable_lsn == self._last_lsn:
            return self._durable_lsn
        try:
            self._fsync(self._handle)
        except OSError as e:
            self._failed = e
            raise
        self._durable_lsn = self._last_lsn
        return self._durable_lsn

    def preallocate(self, size: int) -> bool:
        """Keep about `size` bytes of zeros written and fsynced after the tail; True if it wrote.

        Later batches then overwrite blocks that exist, and their fdatasync writes data only:
        appending would change the file size and make each fdatasync also write the file
        system's metadata (measured in docs/benchmarks.md). Does nothing while more than a
        quarter of `size` is left, and never goes past `segment_size_max`. Call it between
        batches, where its own write and fsync delay no acknowledgement (the WAL thread does).
        """
        self._check_usable()
        ahead = self._zeroed_end - self._active_size
        target = min(self._active_size + size, self._segment_size_max)
        start = max(self._zeroed_end, self._active_size)    # zeros already there are kept
        if ahead >= size // 4 or target <= start:
            return False
        try:
            self._fs.write_zeros(self._handle, start, target - start)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                return False     # zeros only: nothing is lost, appends go on growing the file
            self._failed = e
            raise
        try:
            self._fsync(self._handle)
        except OSError as e:
            self._failed = e
            raise
        self._zeroed_end = target
        return True

    def _roll(self) -> None:
        """Seal the active segment (fsync) and start a new one at last_lsn + 1."""
        if self._zeroed_end > self._active_size:
            self._fs.truncate(self._handle, self._active_size)   # a sealed segment ends at its last batch
        self._fsync(self._handle)
        self._durable_lsn = self._last_lsn
        self._fs.close(self._handle)
        self._handle = None
        base = self._last_lsn + 1
        self._create_segment(base)
        log.info("wal: segment rolled", extra={"path": self._path(segment_name(base))})

    def _create_segment(self, base: int) -> None:
        """Create `<base>.wal` durably (temp file, fsync, rename, fsync dir) and make it active."""
        assert not self._segments or base > self._segments[-1], (base, self._segments)
        fs = self._fs
        temp = self._path(SEGMENT_TEMP_NAME)
        if fs.exists(temp):
            fs.remove(temp)
        handle = fs.open(temp, create=True)
        fs.append(handle, encode_segment_header(SegmentHeader(self._cluster_id, self._node_id, base)))
        self._fsync(handle)
        fs.close(handle)
        final = self._path(segment_name(base))
        fs.rename(temp, final)
        self._fsync_dir()
        self._handle = fs.open(final)
        self._active_size = SEGMENT_HEADER_SIZE
        self._zeroed_end = 0
        self._segments.append(base)

    def _replace_segment(self, path: str, data: bytes) -> None:
        """Durably replace the active segment at `path` by `data` (temp file, fsync, rename,
        fsync dir) and reopen it as the active handle."""
        fs = self._fs
        temp = self._path(SEGMENT_TEMP_NAME)
        if fs.exists(temp):
            fs.remove(temp)
        handle = fs.open(temp, create=True)
        fs.append(handle, data)
        self._fsync(handle)
        fs.close(handle)
        if self._handle is not None:
            fs.close(self._handle)
            self._handle = None
        fs.rename(temp, path)
        self._fsync_dir()
        self._handle = fs.open(path)
        self._zeroed_end = 0

    def truncate_after(self, lsn: int) -> None:
        """Drop every record with LSN > lsn, durably (Raft log suffix truncation).

        Raises InvalidParameter if lsn is below the checkpoint's LSN. A no-op if lsn >= last_lsn.
        """
        self._check_usable()
        if lsn < self._checkpoint_lsn or lsn < self._segments[0] - 1:
            raise InvalidParameter(f"cannot truncate after lsn {lsn}: the log starts after "
                                   f"lsn {max(self._checkpoint_lsn, self._segments[0] - 1)}")
        if lsn >= self._last_lsn:
            return
        try:
            self._truncate_after(lsn)
        except OSError as e:
            self._failed = e
            raise

    def _truncate_after(self, lsn: int) -> None:
        fs = self._fs
        # Newest first, one durable unlink at a time: a crash leaves a prefix of the chain.
        while len(self._segments) > 1 and self._segments[-1] > lsn:
            if self._handle is not None:
                fs.close(self._handle)
                self._handle = None
            fs.remove(self._path(segment_name(self._segments.pop())))
            self._fsync_dir()
        base = self._segments[-1]
        path = self._path(segment_name(base))
        if self._handle is None:
            self._handle = fs.open(path)
            self._zeroed_end = 0
        scan = self._scan(base, collect=True, after_lsn=0, size=fs.size(self._handle))
        assert scan.damage is None and scan.lsn_problem is None, (path, scan.damage, scan.lsn_problem)
        # Cut at the start of the batch holding lsn + 1, then rewrite that batch's records
        # <= lsn as a new batch: a batch must stay whole to be valid.
        cut_offset, batch_first = scan.valid_end, scan.next_lsn
        if scan.last_lsn > lsn:
            for offset, first in scan.batch_starts:
                if first > lsn + 1:
                    break
                cut_offset, batch_first = offset, first
        keep = [(r.kind, r.body) for r in scan.records if batch_first <= r.lsn <= lsn]
        assert batch_first + len(keep) - 1 == lsn, (batch_first, len(keep), lsn)
        durable = min(self._durable_lsn, batch_first - 1)
        if keep:
            # The cut splits a batch: its records <= lsn must be rewritten as a batch of their
            # own. Cutting in place would leave them nowhere between the cut and the rewrite,
            # so the segment is rebuilt under a temp name and renamed over the old one: a
            # crash leaves the old segment (nothing truncated) or the new one, never a gap.
            chunks: list[bytes] = [b""]
            size = encode_records_into(chunks, batch_first, keep)
            chunks[0] = encode_batch_header(batch_first, durable, len(keep), size)
            self._replace_segment(path, fs.read(path)[:cut_offset] + b"".join(chunks))
            self._active_size = cut_offset + BATCH_RECORD_SIZE + size
        else:
            # At a batch boundary a cut is all or nothing: the old tail or none of it.
            fs.truncate(self._handle, cut_offset)
            self._fsync(self._handle)
            self._active_size = cut_offset
            self._zeroed_end = 0
        self._last_lsn = lsn
        self._durable_lsn = lsn
        self._declared_lsn = min(self._declared_lsn, lsn)
        log.info("wal: truncated after lsn", extra={"lsn": lsn, "path": path})

    # --- checkpoints -------------------------------------------------------------------------
    def write_checkpoint(self, lsn: int, payload: bytes | Iterable[bytes]) -> None:
        """Durably store `payload` as the state at `lsn`, then retire the segments it covers.

        Order: temp file, fsync, rename to `<lsn>.ckpt`, fsync dir; only then delete the older
        checkpoint and every segment all of whose records are <= lsn, and fsync dir again.
        Raises InvalidParameter unless checkpoint_lsn <= lsn <= durable_lsn; CheckpointNotWritten
        when the temp file cannot be written (the log stays usable); any later OSError fails the log.
        """
        self._check_usable()
        if not self._checkpoint_lsn <= lsn <= self._durable_lsn:
            raise InvalidParameter(f"checkpoint lsn {lsn} must be in {self._checkpoint_lsn}.."
                                   f"{self._durable_lsn} (the durable lsn)")
        try:
            self._write_checkpoint(lsn, payload)
        except OSError as e:
            self._failed = e
            raise

    def _write_checkpoint(self, lsn: int, payload: bytes | Iterable[bytes]) -> None:
        fs = self._fs
        segs = self._segments
        retire = [segs[i] for i in range(len(segs) - 1) if segs[i + 1] - 1 <= lsn]
        live_base = segs[len(retire)]
        temp = self._path(CHECKPOINT_TEMP_NAME)
        if fs.exists(temp):
            fs.remove(temp)
        handle = fs.open(temp, create=True)
        try:
            total_size = self._write_checkpoint_file(handle, lsn, payload, live_base, retire)
        except OSError as e:
            # Only the temp file saw the error (fsync errors are per file): drop it, keep the log.
            fs.close(handle)
            fs.remove(temp)
            raise CheckpointNotWritten(f"checkpoint at lsn {lsn} not written: {e!r}") from e
        fs.close(handle)
        final_name = checkpoint_name(lsn)
        fs.rename(temp, self._path(final_name))
        self._fsync_dir()
        # The new checkpoint is durable: the older one and the retired segments may go.
        old = [n for n in fs.list(self._dir)
               if parse_checkpoint_name(n) is not None and n != final_name]
        for name in old:
            fs.remove(self._path(name))
        for base in retire:
            fs.remove(self._path(segment_name(base)))
        if old or retire:
            self._fsync_dir()
        self._segments = segs[len(retire):]
        self._has_checkpoint = True
        self._checkpoint_lsn = lsn
        self._live_base_lsn = live_base
        self._checkpoint_payload = payload if isinstance(payload, bytes) else None
        log.info("wal: checkpoint written", extra={"lsn": lsn, "size": total_size,
                                                   "retired_segments": len(retire),
                                                   "live_base_lsn": live_base})

    def _write_checkpoint_file(self, handle: FileHandle, lsn: int, payload: bytes | Iterable[bytes],
                               live_base: int, retire: list[int]) -> int:
        """Write and fsync the checkpoint's temp file; returns its size."""
        pending: list[bytes] = []
        pending_size = 0
        total_size = 0
        for chunk in encode_checkpoint_chunks(payload, cluster_id=self._cluster_id,
                                              node_id=self._node_id, lsn=lsn,
                                              live_base_lsn=live_base,
                                              retired_base_lsns=tuple(retire)):
            pending.append(chunk)
            pending_size += len(chunk)
            total_size += len(chunk)
            if pending_size >= _CHECKPOINT_WRITE_CHUNK_SIZE:
                self._fs.append(handle, b"".join(pending))
                pending, pending_size = [], 0
        if pending:
            self._fs.append(handle, b"".join(pending))
        self._fsync(handle)
        return total_size

    # --- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close the active segment (no implicit sync: call `sync()` first to keep records)."""
        if self._closed:
            return
        self._closed = True
        if self._handle is not None:
            self._fs.close(self._handle)
            self._handle = None

    @property
    def failed(self) -> BaseException | None:
        return self._failed

    def _check_usable(self) -> None:
        if self._closed:
            raise WalFailed("the wal is closed")
        if self._failed is not None:
            raise WalFailed(f"the wal failed earlier and accepts nothing more: {self._failed!r}")

    def _fsync(self, handle: FileHandle) -> None:
        if self._fsync_enabled:
            self._fs.fsync(handle)

    def _fsync_dir(self) -> None:
        if self._fsync_enabled:
            self._fs.fsync_dir(self._dir)
