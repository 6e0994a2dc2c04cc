"""BackendService: the asyncio shell that runs the queue `Engine` on one node's WAL.

Owns: the WAL handle, the engine, the timer that drives `engine.tick`, the futures of parked long
polls, push consumers, the move-task pacer and periodic checkpoints. Makes no queue decisions:
every `if` about queue state lives in the engine. All engine calls happen synchronously on the
loop; the shell awaits only WAL durability and long-poll futures, never holding an invariant
across an await.

Per request (see `engine.py` for the protocol): call the engine, `_flush()` (append its records
as one group, bind the LSN, complete long-poll deliveries, re-arm the timer), then await
`wal.sync(lsn)` when the result says the reply must be durable (sends and deletes on `fsync`
queues, receive-and-delete, receives on queues with a redrive policy).
Shutdown (`close()`): refuse new calls, answer parked long polls with empty results, stop
consumers and background tasks, flush and fsync the WAL.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from qnode import limits
from qnode.backend import records as rec
from qnode.backend.engine import Delivery, Engine, EngineConfig
from qnode.backend.snapshot_child import SnapshotChild, SnapshotFailed
from qnode.frontend.api import Consumer, MoveTask, QueueInfo, ReceivedMessage, SendEntry, SendResult
from qnode.protocol.errors import InvalidParameter, QnodeError, ShuttingDown
from qnode.wal.errors import CheckpointNotWritten
from qnode.wal.writer import Wal, WalConfig

log = logging.getLogger(__name__)

_GC_FREEZE_MESSAGES_MIN = 100_000   # below this, a full GC pass is cheap; freezing is not worth it
# Where the forked child writes a checkpoint's snapshot; in the WAL's directory, whose open
# removes a *.tmp left by a crash.
SNAPSHOT_FILE_NAME = "checkpoint-snapshot.tmp"
# Disk a checkpoint needs, against the live data: snapshot file plus checkpoint temp file, each
# the live bytes plus per-message encoding overhead.
_CHECKPOINT_SPACE_FACTOR_PERCENT = 250


class Clock(Protocol):
    def wall_ms(self) -> int: ...


class SystemClock:
    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class BackendConfig:
    region: str = "us-east-1"
    account_id: str = "000000000000"
    host_url: str = "http://127.0.0.1:9324"          # base of QueueUrl values
    wal: WalConfig = field(default_factory=WalConfig)
    inflight_per_queue_max: int = limits.inflight_per_queue_max
    queue_backlog_count_max: int = limits.queue_backlog_count_max
    queue_backlog_size_max: int = limits.queue_backlog_size_max
    node_memory_budget_size: int = limits.node_memory_budget_size
    waiters_per_queue_max: int = limits.waiters_per_queue_max
    checkpoint_log_size_min: int = limits.wal_checkpoint_log_size_min   # checkpoint when the log
    checkpoint_live_ratio: int = limits.wal_checkpoint_live_ratio       # .. is this much > live data
    maintenance_interval_ms: int = 100     # move-task pacing and checkpoint checks
    move_rate_default_per_second: int = 500
    consumer_prefetch_max: int = 1000

    def engine_config(self) -> EngineConfig:
        return EngineConfig(region=self.region, account_id=self.account_id,
                            inflight_per_queue_max=self.inflight_per_queue_max,
                            queue_backlog_count_max=self.queue_backlog_count_max,
                            queue_backlog_size_max=self.queue_backlog_size_max,
                            node_memory_budget_size=self.node_memory_budget_size,
                            waiters_per_queue_max=self.waiters_per_queue_max)

    def queue_url(self, name: str) -> str:
        return f"{self.host_url.rstrip('/')}/{self.account_id}/{name}"


class BackendService:
    """Implements `qnode.frontend.api.QueueApi` on one node. Build with `await BackendService.open()`."""

    def __init__(self, wal: Wal, engine: Engine, config: BackendConfig, clock: Clock,
                 data_dir: Path) -> None:
        self.config = config
        self._data_dir = data_dir
        self._wal = wal
        self._engine = engine
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._futures: dict[int, asyncio.Future] = {}
        self._waiter_queues: dict[int, str] = {}     # waiter id -> queue name, while parked
        self._timer: asyncio.TimerHandle | None = None
        self._timer_ms: int | None = None
        self._closing = False
        self._closed = False
        self._consumers: set[PushConsumer] = set()
        self._tasks: set[asyncio.Task] = set()
        self._log_bytes_since_checkpoint = 0
        self._move_credit: dict[str, float] = {}
        self._checkpointing = False
        self._checkpoint_retry_ms = 0          # backoff after failed checkpoints (0: none failed)
        self._checkpoint_retry_at_ms = 0
        self.checkpoints = 0
        self.checkpoint_failures = 0
        self.maintenance_passes = 0

    # ----------------------------------------------------------------------------- lifecycle
    @classmethod
    async def open(cls, data_dir: Path, config: BackendConfig, *,
                   clock: Clock | None = None) -> "BackendService":
        """Open (or create) the WAL in `data_dir`, restore the checkpoint, replay the log."""
        clock = clock or SystemClock()
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        wal = await Wal.open(Path(data_dir), config.wal)
        engine = Engine(config.engine_config(), random.Random(secrets.randbits(128)))
        gc_was_enabled = gc.isenabled()
        gc.disable()    # recovery allocates millions of long-lived objects: no GC passes meanwhile
        try:
            started = time.monotonic()
            payload = wal.checkpoint_payload
            if payload is not None:
                engine.restore(payload)
            replayed = 0
            replayed_size = 0
            for record in wal.replay():
                engine.apply_record(record.kind, record.body)
                replayed += 1
                replayed_size += len(record.body)
            if not engine.has_secret:
                engine.init_secret(secrets.token_bytes(32))
            engine.start(clock.wall_ms())
            log.info("backend: recovered", extra={"checkpoint_lsn": wal.checkpoint_lsn,
                                                  "replayed": replayed,
                                                  "seconds": round(time.monotonic() - started, 3)})
        except BaseException:
            await wal.close()
            raise
        finally:
            if gc_was_enabled:
                gc.enable()
        if engine.stats().messages >= _GC_FREEZE_MESSAGES_MIN:
            gc.freeze()  # millions of long-lived recovered messages: keep them out of GC scans
        svc = cls(wal, engine, config, clock, Path(data_dir))
        svc._log_bytes_since_checkpoint = replayed_size   # the log not covered by a checkpoint
        wal.on_durable(svc._on_durable)
        svc._flush()
        await wal.sync(wal.last_lsn)
        svc._spawn(svc._maintenance())
        return svc

    async def close(self) -> None:
        """Answer parked long polls empty, stop consumers and tasks, flush and fsync the WAL."""
        if self._closed:
            return
        for consumer in list(self._consumers):
            await consumer.close()
        self._closing = True
        for wid, fut in list(self._futures.items()):
            self._engine.cancel_waiter(wid)
            if not fut.done():
                fut.set_result((Delivery(wid, (), False), 0))
        self._futures.clear()
        self._waiter_queues.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._closed = True
        await self._wal.close()

    def _spawn(self, coro: Any) -> asyncio.Task:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("backend: background task failed", exc_info=task.exception())

    # ----------------------------------------------------------------------------- engine driving
    def _now(self) -> int:
        return self._clock.wall_ms()

    def _check_open(self) -> None:
        if self._closing:
            raise ShuttingDown("the backend is shutting down")

    def _flush(self) -> None:
        """Append the engine's records, bind their LSN, answer deliveries, re-arm the timer."""
        records = self._engine.take_records()
        if records:
            # Receive records alone wait on no one (a lost receive count only brings the
            # redelivery forward): they ride in the next batch (see Wal, deferred appends); a
            # receive that must be durable (redrive) asks `sync`, which starts it.
            defer = True
            size = 0
            for kind, body in records:
                size += len(body)
                if kind != rec.RECEIVE:
                    defer = False
            try:
                # Requests passed `wal.admit()` in `_op` before the engine changed anything;
                # background records are bounded by the engine's budgets. So only a failed or
                # closing WAL refuses these.
                lsn = self._wal.append_many(records, defer, admitted=True)
            except QnodeError as err:
                self._engine.abort_unlogged()
                self._finish_deliveries(err)
                self._arm_timer()
                raise
            self._engine.logged(lsn)
            self._log_bytes_since_checkpoint += size
        self._finish_deliveries()
        self._arm_timer()

    def _finish_deliveries(self, refused: QnodeError | None = None) -> None:
        """Answer the parked receives the engine served. If the WAL `refused` their records, a
        delivery that must be durable first (receive-and-delete, redrive) gets that error."""
        lsn = self._wal.last_lsn
        for d in self._engine.take_deliveries():
            fut = self._futures.pop(d.waiter_id, None)
            name = self._waiter_queues.pop(d.waiter_id, None)
            if fut is not None and not fut.done():
                if refused is not None and d.sync:
                    fut.set_exception(refused)
                else:
                    fut.set_result((d, lsn if d.sync else 0))
            elif d.messages and name is not None:
                # Its receive was cancelled (caller gone) before the engine saw the cancel: hand
                # the messages back at once, outside this flush, instead of hiding them.
                self._loop.call_soon(self._return_unanswered, name, d.messages)

    def _arm_timer(self) -> None:
        due = self._engine.next_deadline_ms()
        if self._timer is not None and self._timer_ms is not None and self._timer_ms <= due:
            return
        if self._timer is not None:
            self._timer.cancel()
        if self._closed:
            return
        delay_s = max(0.0, (due - self._now()) / 1000.0)
        self._timer_ms = due
        self._timer = self._loop.call_at(self._loop.time() + delay_s, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_ms = None
        if self._closed:
            return
        self._engine.tick(self._now())
        self._flush_quietly()

    def _on_durable(self, lsn: int) -> None:
        if self._closed:
            return
        self._engine.on_durable(lsn, self._now())
        self._flush_quietly()

    def _flush_quietly(self) -> None:
        try:
            self._flush()
        except QnodeError as err:
            # Only a failed or closing WAL refuses background records; deliveries that needed
            # them durable got the error, the others lose only a receive count.
            log.warning("backend: wal refused background records", extra={"code": err.code.name})

    def _op(self, fn: Callable, *args: Any) -> Any:
        """Run one engine operation and log its records: refused before anything changes (the
        WAL's admission), or applied and logged, never applied and then refused."""
        self._check_open()
        self._wal.admit()
        try:
            return fn(*args)
        finally:
            self._flush()

    async def _durable(self) -> None:
        await self._wal.sync(self._wal.last_lsn)

    # ----------------------------------------------------------------------------- queues
    async def create_queue(self, name: str, attributes: Mapping[str, str] | None = None,
                           tags: Mapping[str, str] | None = None) -> QueueInfo:
        info = self._op(self._engine.create_queue, name, attributes, tags, self._now())
        await self._durable()
        return info

    async def delete_queue(self, name: str) -> None:
        self._op(self._engine.delete_queue, name, self._now())
        await self._durable()

    async def get_queue(self, name: str) -> QueueInfo:
        self._check_open()
        return self._engine.get_queue(name)

    async def list_queues(self, prefix: str | None = None) -> list[str]:
        self._check_open()
        return self._engine.list_queues(prefix)

    async def get_queue_attributes(self, name: str, names: Sequence[str] = ("All",)) -> dict[str, str]:
        self._check_open()
        return self._engine.get_queue_attributes(name, names, self._now())

    async def set_queue_attributes(self, name: str, attributes: Mapping[str, str]) -> None:
        self._op(self._engine.set_queue_attributes, name, attributes, self._now())
        await self._durable()

    async def purge_queue(self, name: str) -> None:
        self._op(self._engine.purge_queue, name, self._now())
        await self._durable()

    async def tag_queue(self, name: str, tags: Mapping[str, str]) -> None:
        self._op(self._engine.tag_queue, name, tags)
        await self._durable()

    async def untag_queue(self, name: str, keys: Sequence[str]) -> None:
        self._op(self._engine.untag_queue, name, keys)
        await self._durable()

    async def list_queue_tags(self, name: str) -> dict[str, str]:
        self._check_open()
        return self._engine.list_queue_tags(name)

    async def add_permission(self, name: str, label: str, account_ids: Sequence[str],
                             actions: Sequence[str]) -> None:
        self._op(self._engine.add_permission, name, label, account_ids, actions, self._now())
        await self._durable()

    async def remove_permission(self, name: str, label: str) -> None:
        self._op(self._engine.remove_permission, name, label, self._now())
        await self._durable()

    def queue_url(self, name: str) -> str:
        return self.config.queue_url(name)

    # ----------------------------------------------------------------------------- messages
    async def send_messages(self, name: str, entries: Sequence[SendEntry]) -> list[SendResult | QnodeError]:
        outcome = self._op(self._engine.send, name, entries, self._now())
        if outcome.sync and any(isinstance(r, SendResult) for r in outcome.results):
            await self._durable()
        return outcome.results

    async def receive_messages(self, name: str, *, max_count: int = 1, wait_ms: int | None = None,
                               visibility_timeout_ms: int | None = None,
                               attempt_id: str | None = None,
                               delete: bool = False) -> list[ReceivedMessage]:
        outcome = self._op(self._engine.receive, name, max_count, wait_ms, visibility_timeout_ms,
                           attempt_id, delete, self._now())
        if outcome.waiter_id is None:
            if outcome.sync:
                await self._durable()
            return list(outcome.messages)
        wid = outcome.waiter_id
        fut = self._loop.create_future()
        self._futures[wid] = fut
        self._waiter_queues[wid] = name
        try:
            delivery, lsn = await fut
        except asyncio.CancelledError:
            # The caller went away (client disconnected, server stopping). Cancelling the task
            # cancels `fut` too, so "done" does not mean "delivered": leave the queue's waiters,
            # and if a delivery did land first, hand its messages back at once rather than hide
            # them for a visibility timeout inside a poll nobody will answer.
            self._futures.pop(wid, None)
            self._waiter_queues.pop(wid, None)
            if fut.done() and not fut.cancelled():
                self._return_unanswered(name, fut.result()[0].messages)
            else:
                self._engine.cancel_waiter(wid)
            raise
        if lsn:
            await self._wal.sync(lsn)
        return list(delivery.messages)

    def _return_unanswered(self, name: str, messages: Sequence[ReceivedMessage]) -> None:
        items = [(m.receipt, 0) for m in messages if m.receipt]
        if items and not self._closing:
            try:
                self._op(self._engine.change_visibility, name, items, self._now())
            except QnodeError as err:   # e.g. the queue was deleted meanwhile: nothing to return
                log.info("backend: could not return an unanswered delivery",
                         extra={"queue": name, "code": err.code.name})

    async def delete_messages(self, name: str, receipts: Sequence[str]) -> list[None | QnodeError]:
        results, sync = self._op(self._engine.delete, name, receipts, self._now())
        if sync:
            await self._durable()
        return results

    async def change_visibility(self, name: str, items: Sequence[tuple[str, int]]) -> list[None | QnodeError]:
        return self._op(self._engine.change_visibility, name, items, self._now())

    async def nack(self, name: str, receipt: str, delay_ms: int | None = None,
                   reason: str | None = None) -> None:
        self._op(self._engine.nack, name, receipt, delay_ms, reason, self._now())

    async def peek(self, name: str, max_count: int = 10) -> list[ReceivedMessage]:
        self._check_open()
        return self._engine.peek(name, max_count, self._now())

    async def cancel_scheduled(self, name: str, message_id: str) -> None:
        if self._op(self._engine.cancel_scheduled, name, message_id, self._now()):
            await self._durable()

    async def open_consumer(self, name: str, prefetch: int,
                            visibility_timeout_ms: int | None = None) -> Consumer:
        self._check_open()
        if not isinstance(prefetch, int) or not 1 <= prefetch <= self.config.consumer_prefetch_max:
            raise InvalidParameter(f"prefetch must be 1..{self.config.consumer_prefetch_max}")
        self._engine.get_queue(name)
        consumer = PushConsumer(self, name, prefetch, visibility_timeout_ms)
        self._consumers.add(consumer)
        return consumer

    # ----------------------------------------------------------------------------- dead letters
    async def list_dead_letter_source_queues(self, name: str) -> list[str]:
        self._check_open()
        return self._engine.list_dead_letter_source_queues(name)

    async def start_message_move_task(self, source_name: str, destination_name: str | None = None,
                                      max_per_second: int | None = None) -> str:
        handle = self._op(self._engine.start_move_task, source_name, destination_name,
                          max_per_second, self._now())
        await self._durable()
        return handle

    async def cancel_message_move_task(self, task_handle: str) -> int:
        moved = self._op(self._engine.cancel_move_task, task_handle)
        await self._durable()
        return moved

    async def list_message_move_tasks(self, source_name: str, max_results: int = 1) -> list[MoveTask]:
        self._check_open()
        return self._engine.list_move_tasks(source_name, max_results)

    # ----------------------------------------------------------------------------- background
    async def _maintenance(self) -> None:
        interval_s = self.config.maintenance_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            self.maintenance_passes += 1
            self._pace_moves(interval_s)
            if self._checkpoint_due() and self._now() >= self._checkpoint_retry_at_ms:
                await self._checkpoint_or_back_off()

    async def _checkpoint_or_back_off(self) -> None:
        """A failed checkpoint is retried after 1 s, doubling to 5 min: a disk that stays full or
        a child that keeps failing must not cost a fork every pass, nor end the maintenance task."""
        try:
            await self.checkpoint()
        except Exception as exc:     # SnapshotFailed, CheckpointNotWritten, WalFailed, a bug
            self.checkpoint_failures += 1
            self._checkpoint_retry_ms = min(max(2 * self._checkpoint_retry_ms, 1000),
                                            limits.checkpoint_retry_delay_max_ms)
            self._checkpoint_retry_at_ms = self._now() + self._checkpoint_retry_ms
            log.error("backend: checkpoint failed; retrying later",
                      extra={"error": repr(exc), "retry_in_ms": self._checkpoint_retry_ms})
        else:
            self._checkpoint_retry_ms = 0

    def _pace_moves(self, interval_s: float) -> None:
        tasks = self._engine.running_move_tasks()
        running = {h for h, _ in tasks}
        for handle in list(self._move_credit):
            if handle not in running:
                del self._move_credit[handle]
        for handle, rate in tasks:
            rate = rate or self.config.move_rate_default_per_second
            credit = min(self._move_credit.get(handle, 0.0) + rate * interval_s, float(rate))
            count = int(credit)
            if count:
                self._engine.move_step(handle, count, self._now())
                credit -= count
            self._move_credit[handle] = credit
        if tasks:
            self._flush_quietly()

    def _checkpoint_due(self) -> bool:
        live = self._engine.stats().bytes
        size = self._log_bytes_since_checkpoint
        return (size >= self.config.checkpoint_log_size_min
                and size > self.config.checkpoint_live_ratio * live)

    async def checkpoint(self) -> int:
        """Write a checkpoint of the current state; returns the LSN it covers.

        The state is encoded by a forked child (`snapshot_child.py`) while the loop goes on
        serving; if the fork itself fails, on the loop as a fallback. SnapshotFailed if the
        child failed (nothing changes; the next maintenance pass tries again).
        """
        if self._checkpointing:
            return self._wal.checkpoint_lsn
        self._checkpointing = True
        path = self._data_dir / SNAPSHOT_FILE_NAME
        uncovered = 0         # log bytes this checkpoint takes off the count: back if it fails
        try:
            self._check_room_for_checkpoint()
            self._flush()
            lsn = self._wal.last_lsn
            # From here to the fork nothing may await: the child must see the state at lsn.
            try:
                child: SnapshotChild | None = SnapshotChild.fork(self._engine.snapshot_chunks, path)
            except OSError as exc:
                log.warning("backend: fork for a checkpoint failed; encoding it on the loop",
                            extra={"error": repr(exc)})
                child, payload = None, self._engine.snapshot()
            uncovered, self._log_bytes_since_checkpoint = self._log_bytes_since_checkpoint, 0
            if child is not None:
                await child.wait()
                payload = child.chunks()
            await self._wal.checkpoint(lsn, payload)
            self.checkpoints += 1
            log.info("backend: checkpoint written", extra={"lsn": lsn, "forked": child is not None})
            return lsn
        except BaseException:
            self._log_bytes_since_checkpoint += uncovered
            raise
        finally:
            path.unlink(missing_ok=True)
            self._checkpointing = False

    def _check_room_for_checkpoint(self) -> None:
        """The snapshot file and the checkpoint's temp file each hold about the live data (plus
        encoding overhead) at once; refuse before forking rather than run the disk full."""
        live = self._engine.stats().bytes
        need = live * _CHECKPOINT_SPACE_FACTOR_PERCENT // 100
        if not self._wal.has_room_for(need):
            raise CheckpointNotWritten(f"not enough free space for a checkpoint: it needs about "
                                       f"{need} bytes above the disk reserve")

    def stats(self) -> dict[str, Any]:
        s = self._engine.stats()
        return {
            "backend": {"queues": s.queues, "messages": s.messages, "ready_messages": s.ready,
                        "inflight_messages": s.inflight, "delayed_messages": s.delayed,
                        "waiters": s.waiters, "size_bytes": s.bytes, "consumers": len(self._consumers),
                        "checkpoints": self.checkpoints,
                        "checkpoint_failures": self.checkpoint_failures},
            "queues": self._engine.queue_stats(),
            "wal": self._wal.stats(),
        }

    def status_line(self) -> str:
        s = self._engine.stats()
        w = self._wal.stats()
        return (f"queues={s.queues} depth={s.ready} inflight={s.inflight} delayed={s.delayed} "
                f"waiters={s.waiters} bytes={s.bytes} wal_lsn={w['durable_lsn']}/{w['last_lsn']}")

    def status(self) -> dict[str, Any]:
        """Flat figures for the binary protocol's `status` op and `qnode status`."""
        s = self._engine.stats()
        w = self._wal.stats()
        return {"queues": s.queues, "ready": s.ready, "inflight": s.inflight,
                "delayed": s.delayed, "waiters": s.waiters, "size_bytes": s.bytes,
                "wal_durable_lsn": w["durable_lsn"], "wal_last_lsn": w["last_lsn"],
                "wal_fsyncs": w["fsyncs"], "wal_records": w["records"],
                "wal_fsync_seconds_avg": w["fsync_seconds_avg"]}

    def check_invariants(self) -> None:
        self._engine.check_invariants()


class PushConsumer:
    """Credit-based push subscription: never more than `prefetch` delivered-but-unsettled
    messages. `close()` makes every unsettled message visible again at once."""

    def __init__(self, svc: BackendService, name: str, prefetch: int,
                 visibility_timeout_ms: int | None) -> None:
        self._svc = svc
        self._name = name
        self._prefetch = prefetch
        self._visibility_ms = visibility_timeout_ms
        self._credits = prefetch
        self._buffer: list[ReceivedMessage] = []
        self._unsettled: dict[str, None] = {}    # receipts in delivery order (dict keeps order), <= prefetch
        self._credit_event = asyncio.Event()
        self._poll: asyncio.Future | None = None
        self._closed = False

    @property
    def unsettled(self) -> int:
        return len(self._unsettled)

    async def next(self) -> ReceivedMessage:
        while True:
            if self._closed:
                raise ShuttingDown("the consumer is closed")
            if self._buffer:
                return self._buffer.pop(0)
            if self._credits <= 0:
                self._credit_event.clear()
                await self._credit_event.wait()
                continue
            self._poll = asyncio.ensure_future(self._svc.receive_messages(
                self._name, max_count=min(self._credits, limits.receive_count_max),
                wait_ms=limits.wait_ms_max, visibility_timeout_ms=self._visibility_ms))
            try:
                msgs = await self._poll
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._closed and task is not None and not task.cancelling():
                    raise ShuttingDown("the consumer is closed") from None
                raise
            finally:
                self._poll = None
            if self._closed:
                await self._return(m.receipt for m in msgs)
                raise ShuttingDown("the consumer is closed")
            self._credits -= len(msgs)
            self._unsettled.update((m.receipt, None) for m in msgs if m.receipt)
            self._buffer.extend(msgs)

    def settle(self, count: int = 1, receipts: Sequence[str] = ()) -> None:
        """Settle by receipt when the client names them (acks can come in any order); a bare
        count (the `credit` op) settles the oldest deliveries."""
        if receipts:
            count = 0
            for receipt in receipts:
                if receipt in self._unsettled:
                    del self._unsettled[receipt]
                    count += 1
        else:
            count = max(0, min(count, len(self._unsettled)))
            for receipt in list(self._unsettled)[:count]:
                del self._unsettled[receipt]
        self._credits = min(self._prefetch, self._credits + count)
        self._credit_event.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._credit_event.set()
        if self._poll is not None and not self._poll.done():
            self._poll.cancel()
        receipts, self._unsettled = list(self._unsettled), {}
        self._buffer.clear()
        await self._return(receipts)
        self._svc._consumers.discard(self)

    async def _return(self, receipts: Any) -> None:
        items = [(r, 0) for r in receipts if r]
        for start in range(0, len(items), limits.batch_entries_count_max):
            try:
                await self._svc.change_visibility(self._name, items[start:start + limits.batch_entries_count_max])
            except ShuttingDown:
                return
