"""Wal: the asyncio shell around SegmentedLog with group commit on one dedicated thread.

What the queue engine uses. The event loop never touches a file or fsync (except `replay()`,
which reads segments at start-up, before serving): every write, fsync, checkpoint and truncate
runs on one single-thread executor, which keeps them in order.

Group commit, pipelined: `append` assigns the LSN at once and queues the record; once per loop
iteration `_kick` hands everything queued to the WAL thread (in pieces of at most `batch_size_max`
bytes of whole groups). The thread runs its own loop: it takes every batch waiting for it
(coalescing them up to `batch_size_max`), does one `write` and one `fdatasync`, posts the outcome
to the event loop, and starts on whatever arrived meanwhile, without waiting for the loop. So
under load fsyncs run back to back and a record waits for at most the fsync in progress plus its
own. Waiters (`sync(lsn)`) sit in a heap by LSN and are woken, on the loop, by the completion that
covers them; `on_durable` callbacks run after every fsync. When the WAL stays idle for
MARKER_DELAY_S (and at close), the thread appends a durability marker (an empty batch, no fsync)
so that the last acknowledged batch is declared durable like every earlier one. Whenever the
thread finds no job waiting after a batch, it tops up the zeros preallocated ahead of the tail
(`SegmentedLog.preallocate`), so that batches overwrite existing blocks and their fdatasync has
no file-size or block-allocation metadata to write.

Deferred appends (`append_many(..., defer=True)`): records nobody waits on (the engine's receive
records: a lost receive count only means an earlier redelivery, which at-least-once allows) get
their LSN at once but start no batch of their own; they ride in the next batch that something
else starts, or in one started DEFER_MAX_S after the first of them, or at once when `sync`
asks for an LSN they hold. So a receive costs no fdatasync of its own while the WAL is not busy,
and the delete that follows it does not wait behind one.

Why a hand-rolled thread and not a ThreadPoolExecutor: every hop between the loop and the thread
costs GIL hand-offs (futex calls) on a busy 2-core box; an executor round trip per batch plus the
loop's turn before the next submission made each batch cycle ~3x the fsync itself.

Invariants:
- durable_lsn <= last submitted LSN <= last_lsn; LSNs are handed out consecutively.
- pending (appended, not yet durable) bytes <= pending_size_max: appends beyond it raise
  WalBackpressure (code BUSY); appends while free space minus pending is below the reserve raise
  DiskFull. Both are checked before the LSN is assigned, so a refused append leaves no trace.
  An `admitted` append (its caller passed `admit()` before changing anything) skips both, so
  the bound may be exceeded by one such group.
- Jobs run on the thread one at a time, in submission order; a failed batch (EIO, ENOSPC) fails
  the WAL: every waiter gets WalFailed, and every later call raises it. There is no retry after a
  failed fsync.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from qnode import limits
from qnode.protocol.errors import DiskFull, InvalidParameter, ShuttingDown
from qnode.wal.errors import WalBackpressure, WalFailed
from qnode.wal.fs import FileSystem, RealFs
from qnode.wal.log import SegmentedLog
from qnode.wal.record import BATCH_RECORD_SIZE, HEADER_SIZE, KIND_MAX, KIND_USER_MIN, Record

log = logging.getLogger(__name__)

MARKER_DELAY_S = 0.02   # idle this long before writing a durability marker (see _declare_durable)
DEFER_MAX_S = 0.02      # the longest a deferred record waits for a batch to ride in
FREE_BYTES_RESTAT_SIZE = 4 * 1024 * 1024   # statfs again after writing this much (see _free_after)
FREE_BYTES_RESTAT_S = 1.0                  # ... or after this long

_STOP = object()    # the last job of the WAL thread


@dataclass(frozen=True, slots=True)
class WalConfig:
    cluster_id: int = 0
    node_id: int = 0
    segment_size_max: int = limits.wal_segment_size_max     # roll beyond this
    batch_size_max: int = limits.wal_batch_size_max         # bytes per write+fdatasync
    pending_size_max: int = limits.wal_pending_size_max     # appended, not durable: then Busy
    disk_reserve_size: int = limits.wal_disk_reserve_size   # free space kept: then DiskFull
    preallocate_size: int = limits.wal_preallocate_size     # zeros kept ahead of the tail; 0: none
    fsync: bool = True    # False only for tests/benchmarks that say so: nothing is durable

    def validate(self) -> list[str]:
        problems = []
        if self.batch_size_max < limits.wal_record_size_max + BATCH_RECORD_SIZE + HEADER_SIZE:
            problems.append("batch_size_max must hold the largest record")
        if self.segment_size_max < self.batch_size_max:
            problems.append("segment_size_max must be >= batch_size_max")
        if self.pending_size_max < self.batch_size_max:
            problems.append("pending_size_max must be >= batch_size_max")
        if self.disk_reserve_size < 0:
            problems.append("disk_reserve_size must be >= 0")
        if self.preallocate_size < 0:
            problems.append("preallocate_size must be >= 0")
        return problems


class Wal:
    """See the module docstring. Build with `await Wal.open(directory, config)`."""

    def __init__(self, seglog: SegmentedLog, config: WalConfig, thread: _WalThread,
                 loop: asyncio.AbstractEventLoop, free_bytes: int) -> None:
        self._log = seglog
        self._config = config
        self._thread = thread
        self._loop = loop
        self._last_lsn = seglog.last_lsn          # last LSN handed out
        self._durable_lsn = seglog.durable_lsn
        self._pending: list[tuple[int, bytes]] = []   # queued, not yet handed to the thread
        self._pending_groups: list[int] = []      # sizes (records) of append_many groups, in order
        self._pending_size = 0                    # bytes appended and not yet durable
        self._queued_size = 0                     # bytes in self._pending
        self._inflight = 0                        # batches handed to the thread, not finished
        self._marker: asyncio.Future | None = None    # the idle durability marker in flight
        self._marker_timer: asyncio.TimerHandle | None = None
        self._kick_scheduled = False
        self._defer_timer: asyncio.TimerHandle | None = None   # starts a batch for deferred records
        self._waiters: list[tuple[int, int, asyncio.Future]] = []   # (lsn, seq, future) heap
        self._waiter_seq = 0
        self._callbacks: list[Callable[[int], None]] = []
        self._free_bytes = free_bytes
        self._failed: WalFailed | None = None
        self._closing = False
        self._closed = False
        self._truncating = False                  # appends are refused while truncating
        self._idle = asyncio.Event()
        self._idle.set()
        self._fsyncs = 0
        self._batches = 0
        self._records = 0
        self._bytes = 0
        self._fsync_seconds_total = 0.0
        self._fsync_seconds_max = 0.0
        self._backpressure_rejections = 0
        self._disk_full_rejections = 0

    @classmethod
    async def open(cls, directory: str | Path, config: WalConfig,
                   fs: FileSystem | None = None) -> Wal:
        """Open the WAL in `directory`, running recovery on the WAL thread.

        Raises WalCorruption (refuses to open), InvalidParameter for a bad config, OSError.
        """
        problems = config.validate()
        if problems:
            raise InvalidParameter("invalid wal config: " + "; ".join(problems))
        fs = fs if fs is not None else RealFs()
        loop = asyncio.get_running_loop()
        thread = _WalThread(loop)

        def _open() -> tuple[SegmentedLog, int]:
            seglog = SegmentedLog.open(fs, os.fspath(directory), cluster_id=config.cluster_id,
                                       node_id=config.node_id,
                                       segment_size_max=config.segment_size_max,
                                       fsync=config.fsync)
            return seglog, seglog.free_bytes()

        try:
            seglog, free = await asyncio.wrap_future(thread.call(_open))
        except BaseException:
            thread.stop()
            raise
        wal = cls(seglog, config, thread, loop, free)
        thread.start_batches(wal._write_and_sync, wal._on_batch_done,
                             config.batch_size_max - BATCH_RECORD_SIZE, wal._preallocate)
        return wal

    # --- start-up ----------------------------------------------------------------------------
    @property
    def checkpoint_payload(self) -> bytes | None:
        ckpt = self._log.checkpoint
        return None if ckpt is None else ckpt[1]

    @property
    def checkpoint_lsn(self) -> int:
        """LSN the newest checkpoint covers (0 without one)."""
        return self._log.checkpoint_lsn

    def replay(self) -> Iterator[Record]:
        """Records after the checkpoint, in LSN order. Call at start-up, before appending."""
        if self._last_lsn != self._log.last_lsn:
            raise InvalidParameter("replay() must be called before the first append")
        return self._log.replay()

    # --- appending ---------------------------------------------------------------------------
    def append(self, kind: int, body: bytes) -> int:
        """Queue one record for the next batch; returns its LSN (not yet durable).

        Raises InvalidParameter (bad kind, body not bytes, body > wal_record_size_max),
        WalBackpressure (pending bytes over pending_size_max), DiskFull (free space below the
        reserve), WalFailed (the writer failed), ShuttingDown (closing).
        """
        if type(kind) is not int or not KIND_USER_MIN <= kind <= KIND_MAX:
            raise InvalidParameter(f"wal record kind must be {KIND_USER_MIN}..{KIND_MAX}, got {kind!r}")
        if type(body) is not bytes:
            raise InvalidParameter(f"wal record body must be bytes, got {type(body).__name__}")
        size = len(body) + HEADER_SIZE
        if size - HEADER_SIZE > limits.wal_record_size_max:
            raise InvalidParameter(f"wal record of {len(body)} bytes exceeds wal_record_size_max "
                                   f"{limits.wal_record_size_max}")
        self._admit(size)
        self._pending.append((kind, body))
        self._pending_groups.append(1)
        self._pending_size += size
        self._queued_size += size
        self._last_lsn += 1
        if not self._kick_scheduled:
            self._kick_scheduled = True
            self._loop.call_soon(self._kick)
        return self._last_lsn

    def append_many(self, records: list[tuple[int, bytes]], defer: bool = False, *,
                    admitted: bool = False) -> int:
        """Queue records (kind, body) as one group, all or nothing; returns the last LSN.

        The group goes into a single batch, so a crash keeps all of it or none; a group larger
        than batch_size_max becomes a batch of its own (bounded by pending_size_max). `defer`:
        start no batch for it (see the module docstring). `admitted`: the caller passed `admit()`
        before making the change these records log (nothing awaited since), so neither
        pending_size_max nor the disk reserve refuses them; they may exceed either by that one
        group. Raises as `append`, and InvalidParameter if the group is empty.
        """
        if not records:
            raise InvalidParameter("append_many needs at least one record")
        size = 0
        for kind, body in records:
            if type(kind) is not int or not KIND_USER_MIN <= kind <= KIND_MAX:
                raise InvalidParameter(f"wal record kind must be {KIND_USER_MIN}..{KIND_MAX}, got {kind!r}")
            if type(body) is not bytes:
                raise InvalidParameter(f"wal record body must be bytes, got {type(body).__name__}")
            if len(body) > limits.wal_record_size_max:
                raise InvalidParameter(f"wal record of {len(body)} bytes exceeds "
                                       f"wal_record_size_max {limits.wal_record_size_max}")
            size += len(body) + HEADER_SIZE
        if admitted:
            self._check_accepting()
        else:
            self._admit(size)
        self._pending.extend(records)
        self._pending_groups.append(len(records))
        self._pending_size += size
        self._queued_size += size
        self._last_lsn += len(records)
        if not defer and not self._kick_scheduled:
            self._kick_scheduled = True
            self._loop.call_soon(self._kick)
        elif defer and not self._kick_scheduled and self._defer_timer is None:
            self._defer_timer = self._loop.call_later(DEFER_MAX_S, self._kick)
        return self._last_lsn

    def admit(self) -> None:
        """Raise now what an append would raise now (WalFailed, ShuttingDown, WalBackpressure,
        DiskFull). A caller that checks this before changing state, and then appends with
        `admitted=True` without awaiting in between, has its change refused whole or logged
        whole: never applied in memory and refused by the log."""
        self._admit(0)

    def _check_accepting(self) -> None:
        if self._failed is not None:
            raise WalFailed(self._failed.message)
        if self._closing:
            raise ShuttingDown("the wal is closing")
        if self._truncating:
            raise WalBackpressure("the wal is truncating its suffix", retry_after_ms=10)

    def _admit(self, size: int) -> None:
        self._check_accepting()
        if self._pending_size + size > self._config.pending_size_max:
            self._backpressure_rejections += 1
            raise WalBackpressure(f"{self._pending_size} bytes are waiting for fsync "
                                  f"(pending_size_max {self._config.pending_size_max})",
                                  retry_after_ms=10)
        if not self.has_room_for(size):
            self._disk_full_rejections += 1
            raise DiskFull(f"free space {self._free_bytes} bytes minus pending is below the "
                           f"reserve of {self._config.disk_reserve_size} bytes", retry_after_ms=1000)

    # --- durability --------------------------------------------------------------------------
    @property
    def durable_lsn(self) -> int:
        return self._durable_lsn

    @property
    def last_lsn(self) -> int:
        return self._last_lsn

    def has_room_for(self, size: int) -> bool:
        """Whether `size` more bytes fit above the disk reserve (free space as of the last batch)."""
        return self._free_bytes - self._pending_size - size >= self._config.disk_reserve_size

    async def sync(self, lsn: int) -> None:
        """Return once durable_lsn >= lsn (at once if it already is).

        Raises WalFailed if the writer failed first, InvalidParameter if lsn > last_lsn.
        """
        if lsn <= self._durable_lsn:
            return
        if self._failed is not None:
            raise WalFailed(self._failed.message)
        if lsn > self._last_lsn:
            raise InvalidParameter(f"lsn {lsn} was never appended (last lsn {self._last_lsn})")
        if lsn > self._last_lsn - len(self._pending) and not self._kick_scheduled:
            self._kick_scheduled = True          # it is in a deferred record: start its batch
            self._loop.call_soon(self._kick)
        fut = self._loop.create_future()
        self._waiter_seq += 1
        heapq.heappush(self._waiters, (lsn, self._waiter_seq, fut))
        await fut

    def on_durable(self, callback: Callable[[int], None]) -> None:
        """Call `callback(durable_lsn)` on the loop after every fsync that advanced it."""
        self._callbacks.append(callback)

    def _kick(self) -> None:
        """Hand everything queued to the thread, in batches of whole groups."""
        self._kick_scheduled = False
        if self._defer_timer is not None:
            self._defer_timer.cancel()
            self._defer_timer = None
        if self._failed is not None:
            return
        while self._pending:
            take_count, take_size = self._take_batch()
            if take_count == len(self._pending):
                batch, self._pending = self._pending, []
            else:
                batch = self._pending[:take_count]
                del self._pending[:take_count]
            self._queued_size -= take_size
            self._inflight += 1
            self._idle.clear()
            self._thread.submit_batch(batch, self._last_lsn - len(self._pending), take_size)

    def _take_batch(self) -> tuple[int, int]:
        """(records, bytes) of the next batch: whole groups up to batch_size_max (at least one)."""
        limit = self._config.batch_size_max - BATCH_RECORD_SIZE
        if self._queued_size <= limit:
            self._pending_groups.clear()
            return len(self._pending), self._queued_size
        count = size = groups = 0
        for group in self._pending_groups:
            group_size = sum(len(body) + HEADER_SIZE
                             for _, body in self._pending[count:count + group])
            if groups and size + group_size > limit:
                break
            count += group
            size += group_size
            groups += 1
        del self._pending_groups[:groups]
        return count, size

    def _write_and_sync(self, batch: list[tuple[int, bytes]], expected_last: int,
                        size: int) -> tuple[int, int, int, float]:
        """On the WAL thread: one write, one fdatasync.

        Returns (durable lsn, size, free bytes, fsync seconds).
        """
        last = self._log.write_validated(batch)
        assert last == expected_last, (last, expected_last)
        started = time.perf_counter()
        durable = self._log.sync()
        fsync_s = time.perf_counter() - started
        return durable, size, self._thread.free_after(self._log, size), fsync_s

    def _preallocate(self) -> None:
        """On the WAL thread, between batches: keep zeros written ahead of the tail."""
        if self._config.preallocate_size:
            self._log.preallocate(self._config.preallocate_size)

    def _on_batch_done(self, result: tuple[int, int, int, float] | None,
                       exc: BaseException | None, batches: int) -> None:
        """On the loop: the thread finished `batches` batches (`result`) or failed them (`exc`)."""
        self._inflight -= batches
        if exc is not None:
            if self._failed is None:
                log.error("wal: write or fsync failed; the wal accepts nothing more", exc_info=exc)
                self._fail(WalFailed(f"wal write or fsync failed: {exc!r}"))
            return
        assert result is not None
        durable, size, free, fsync_s = result
        self._fsyncs += 1
        self._batches += 1
        self._records += durable - self._durable_lsn
        self._bytes += size
        self._fsync_seconds_total += fsync_s
        self._fsync_seconds_max = max(self._fsync_seconds_max, fsync_s)
        self._pending_size -= size
        self._free_bytes = free
        self._advance(durable)
        if not self._inflight and not self._pending:
            self._idle.set()
            if self._marker_timer is None:
                self._marker_timer = self._loop.call_later(MARKER_DELAY_S, self._declare_durable)

    def _declare_durable(self) -> None:
        """Idle for a moment: have the thread append a durability marker (no fsync).

        Without it the newest acknowledged batch is declared durable by no later batch, and rot
        in it would be taken for a torn tail. Delayed by MARKER_DELAY_S so that a busy WAL (whose
        next batch declares the previous one anyway) pays nothing. Queued on the one WAL
        thread, so it runs before any later batch; `_marker` keeps the future referenced.
        """
        self._marker_timer = None
        if self._failed is not None or self._closing or self._inflight or self._pending:
            return
        self._marker = asyncio.wrap_future(self._thread.call(self._log.write_durability_marker))
        self._marker.add_done_callback(self._on_marker_done)

    def _on_marker_done(self, fut: asyncio.Future) -> None:
        self._marker = None
        if fut.cancelled():
            return
        exc = fut.exception()
        if isinstance(exc, OSError):
            log.error("wal: writing a durability marker failed; the wal accepts nothing more",
                      exc_info=exc)
            self._fail(WalFailed(f"wal write failed: {exc!r}"))
        elif exc is not None and not isinstance(exc, WalFailed):
            raise exc    # a bug: surfaces through the loop's exception handler

    def _advance(self, durable: int) -> None:
        assert durable >= self._durable_lsn, (durable, self._durable_lsn)
        self._durable_lsn = durable
        # Callbacks first: the engine's hands newly durable messages to parked receives, whose
        # tasks then wake before the `sync` waiters' (the senders'): a consumer waiting for a
        # message is answered ahead of the producer's acknowledgement, not after it.
        for callback in self._callbacks:
            try:
                callback(durable)
            except Exception:   # a buggy callback must not stall the WAL; it is logged loudly
                log.exception("wal: on_durable callback raised")
        waiters = self._waiters
        while waiters and waiters[0][0] <= durable:
            fut = heapq.heappop(waiters)[2]
            if not fut.done():
                fut.set_result(None)

    def _fail(self, error: WalFailed) -> None:
        self._failed = error
        if self._defer_timer is not None:
            self._defer_timer.cancel()
            self._defer_timer = None
        self._pending = []          # never handed to the thread: nobody may count on them
        self._pending_groups = []
        self._queued_size = 0
        self._idle.set()
        waiters, self._waiters = self._waiters, []
        for _, _, fut in waiters:
            if not fut.done():
                fut.set_exception(WalFailed(error.message))

    # --- maintenance -------------------------------------------------------------------------
    async def _run_exclusive(self, fn: Callable[[], object]) -> object:
        """Run `fn` on the WAL thread once no batch is in flight and nothing is queued.

        Waits for a quiet moment: under a never-ending stream of appends it waits as long.
        Only truncate_after and close need it; both come when appends have stopped.
        """
        while True:
            if self._failed is not None:
                raise WalFailed(self._failed.message)
            if self._pending:
                self._kick()
            if not self._inflight and not self._pending:
                break
            await self._idle.wait()
        try:
            return await asyncio.wrap_future(self._thread.call(fn))
        except OSError as e:
            log.error("wal: maintenance I/O failed; the wal accepts nothing more", exc_info=e)
            self._fail(WalFailed(f"wal I/O failed: {e!r}"))
            raise WalFailed(self._failed.message) from e

    async def checkpoint(self, lsn: int, payload: bytes | Iterable[bytes]) -> None:
        """Durably store the engine state as of `lsn` and retire the segments it covers.

        Waits for sync(lsn) first. An iterable payload is consumed on the WAL thread: pass
        chunks of an immutable snapshot, never a generator over state the loop mutates.
        Raises InvalidParameter (lsn below the current checkpoint or above last_lsn),
        CheckpointNotWritten (the temp file failed, e.g. ENOSPC: nothing changed, appends go
        on), WalFailed (I/O failed once the checkpoint was renamed into place).
        """
        if lsn < self._log.checkpoint_lsn or lsn > self._last_lsn:
            raise InvalidParameter(f"checkpoint lsn {lsn} must be in "
                                   f"{self._log.checkpoint_lsn}..{self._last_lsn}")
        await self.sync(lsn)
        # The single WAL thread orders this after the batch that made lsn durable; batches
        # queued behind it simply wait.
        try:
            await asyncio.wrap_future(self._thread.call(self._log.write_checkpoint, lsn, payload))
        except OSError as e:
            log.error("wal: checkpoint I/O failed; the wal accepts nothing more", exc_info=e)
            self._fail(WalFailed(f"wal checkpoint I/O failed: {e!r}"))
            raise WalFailed(self._failed.message) from e

    async def truncate_after(self, lsn: int) -> None:
        """Flush, then durably drop every record with LSN > lsn (Raft suffix truncation).

        Appends meanwhile raise WalBackpressure: their LSNs would be renumbered.
        """
        await self.sync(self._last_lsn)
        self._truncating = True
        try:
            await self._run_exclusive(lambda: self._log.truncate_after(lsn))
            self._last_lsn = self._log.last_lsn
            self._durable_lsn = self._log.durable_lsn
        finally:
            self._truncating = False

    def stats(self) -> dict[str, float]:
        return {
            "fsyncs": self._fsyncs,
            "batches": self._batches,
            "records": self._records,
            "bytes": self._bytes,
            "batch_records_avg": self._records / self._batches if self._batches else 0.0,
            "pending_size": self._pending_size,
            "durable_lsn": self._durable_lsn,
            "last_lsn": self._last_lsn,
            "segments": self._log.segment_count,
            "free_bytes": self._free_bytes,
            "fsync_seconds_avg": self._fsync_seconds_total / self._fsyncs if self._fsyncs else 0.0,
            "fsync_seconds_max": self._fsync_seconds_max,
            "backpressure_rejections": self._backpressure_rejections,
            "disk_full_rejections": self._disk_full_rejections,
        }

    async def close(self) -> None:
        """Refuse new appends, flush and fsync what was appended, stop the thread."""
        if self._closed:
            return
        self._closing = True
        try:
            if self._failed is None and self._last_lsn > self._durable_lsn:
                await self.sync(self._last_lsn)
            if self._marker_timer is not None:
                self._marker_timer.cancel()
                self._marker_timer = None
            if self._failed is None:
                # Declare the last batch before closing (the timer is not waited for).
                await self._run_exclusive(self._log.write_durability_marker)
                await self._run_exclusive(self._log.close)
            else:
                await asyncio.wrap_future(self._thread.call(self._log.close))
        finally:
            self._closed = True
            self._thread.stop()


class _WalThread:
    """The one OS thread that owns the SegmentedLog: jobs run in submission order.

    Two kinds of job: batches (coalesced while several wait, then written and synced by
    `write_and_sync`, the outcome posted to the loop with one call_soon_threadsafe) and calls
    (any function; the outcome goes to a concurrent Future). The thread never waits for the
    loop, so the next fsync starts as soon as the previous one returns.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()   # bounded by the WAL's pending_size_max
        self._write_and_sync: Callable[..., tuple[int, int, int, float]] | None = None
        self._on_done: Callable[..., None] | None = None
        self._between_batches: Callable[[], None] | None = None
        self._coalesce_size_max = 0
        self._failed = False
        self._statfs_free = 0            # the last statfs of the WAL's file system
        self._written_since = 0          # bytes written since it
        self._statfs_at = 0.0
        self._thread = threading.Thread(target=self._run, name="qnode-wal", daemon=True)
        self._thread.start()

    def start_batches(self, write_and_sync: Callable[..., tuple[int, int, int, float]],
                      on_done: Callable[..., None], coalesce_size_max: int,
                      between_batches: Callable[[], None]) -> None:
        """Set where batches go, and what runs when no batch waits; call before the first
        `submit_batch`."""
        self._write_and_sync = write_and_sync
        self._on_done = on_done
        self._between_batches = between_batches
        self._coalesce_size_max = coalesce_size_max

    def submit_batch(self, records: list[tuple[int, bytes]], last_lsn: int, size: int) -> None:
        self._jobs.put((records, last_lsn, size))

    def call(self, fn: Callable[..., object], *args: object) -> concurrent.futures.Future:
        """Run `fn(*args)` on the thread after every job submitted before it."""
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((fut, fn, args))
        return fut

    def stop(self) -> None:
        """Let the thread finish its queued jobs and exit; waits for it."""
        self._jobs.put(_STOP)
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def free_after(self, seglog: SegmentedLog, size: int) -> int:
        """On the thread: free bytes after writing `size` more, re-measured every few MiB.

        statfs on every batch costs a syscall and a GIL hand-off; in between, the estimate only
        goes down by what the WAL wrote, so it never overstates the free space the WAL caused.
        """
        self._written_since += size
        now = time.monotonic()
        if (self._written_since >= FREE_BYTES_RESTAT_SIZE or now - self._statfs_at >= FREE_BYTES_RESTAT_S
                or self._statfs_at == 0.0):
            self._statfs_free = seglog.free_bytes()
            self._written_since = 0
            self._statfs_at = now
        return self._statfs_free - self._written_since

    def _run(self) -> None:
        jobs = self._jobs
        carry = None
        while True:
            job = jobs.get() if carry is None else carry
            carry = None
            if job is _STOP:
                return
            if len(job) == 3 and isinstance(job[0], concurrent.futures.Future):
                fut, fn, args = job
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn(*args))
                    except BaseException as exc:   # handed to whoever awaits the call
                        fut.set_exception(exc)
                continue
            records, last_lsn, size = job
            batches = 1
            while size < self._coalesce_size_max:
                try:
                    nxt = jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP or isinstance(nxt[0], concurrent.futures.Future) \
                        or size + nxt[2] > self._coalesce_size_max:
                    carry = nxt
                    break
                records.extend(nxt[0])     # each batch's list belongs to the thread now
                last_lsn = nxt[1]
                size += nxt[2]
                batches += 1
            self._post_batch(records, last_lsn, size, batches)

    def _post_batch(self, records: list[tuple[int, bytes]], last_lsn: int, size: int,
                    batches: int) -> None:
        assert self._write_and_sync is not None and self._on_done is not None
        if self._failed:    # the log refuses writes; report the batch failed without trying
            self._post(self._on_done, None, WalFailed("the wal failed earlier"), batches)
            return
        try:
            result = self._write_and_sync(records, last_lsn, size)
        except BaseException as exc:   # EIO, ENOSPC, a bug: the loop side fails the WAL with it
            self._failed = True
            self._post(self._on_done, None, exc, batches)
            return
        self._post(self._on_done, result, None, batches)
        if self._jobs.empty():
            assert self._between_batches is not None
            try:
                self._between_batches()
            except BaseException as exc:   # EIO on the fsync of the zeros: the WAL fails with it
                self._failed = True
                self._post(self._on_done, None, exc, 0)

    def _post(self, callback: Callable[..., None], *args: object) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            # The loop is closed (process teardown after a crash): nobody can wait on the WAL.
            log.warning("wal: batch finished after the event loop closed")
