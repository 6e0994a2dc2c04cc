"""The queue engine: a sans-IO core holding every queue of one node (SQS semantics).

Owns: queues, messages, visibility/delay/retention timers, long-poll waiters, FIFO groups and
the deduplication window, dead-letter moves and move tasks, and the WAL records that make all of
it durable. Never imports asyncio/os/time/random; time comes in as `now_ms` (wall-clock epoch ms,
the unit persisted), randomness from an injected `rng` (`getrandbits`).

Model: "apply, then log, gate on durability". Each operation mutates state synchronously and
queues the WAL records that describe it. The shell MUST, after every call, in this order:
  1. `records = engine.take_records()`; append them to the WAL; `engine.logged(last_lsn)`
     (even when the list is empty nothing is lost by calling it);
  2. when the WAL reports durability: `engine.on_durable(lsn, now_ms)`;
  3. `engine.take_deliveries()` and complete each parked long poll (a `Delivery` with
     `sync=True` is answered only after the WAL is durable up to the LSN logged in step 1);
  4. re-arm its timer for `engine.next_deadline_ms()` and call `engine.tick(now_ms)` then.
A sent message on an `fsync` queue stays PENDING (not receivable) until `on_durable` covers its
record, so a long poll gets it the moment it is durable. Results carry `sync`: the reply must wait
for the fsync of everything logged so far. Retention drops and timer expiries are not logged: they
follow deterministically from persisted wall-clock times.

Recovery: `restore(snapshot)` (optional), then `apply_record()` for each later WAL record, then
`start(now_ms)` rebuilds the indexes and timers. Before `start()` no operation is allowed.
Invariants (`check_invariants()`): per-queue counters match the messages; node byte usage equals
the sum over queues; every waiter in a queue's deque that is not done is counted.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import msgpack

from qnode import limits
from qnode.backend import attributes as qattrs
from qnode.backend import records as rec
from qnode.backend.md5 import md5_of_attributes
from qnode.backend.message import DELAYED, GONE, INFLIGHT, PENDING, READY, Message
from qnode.backend.queue import Queue, Waiter
from qnode.backend.receipt import SECRET_SIZE, ReceiptCodec
from qnode.frontend.api import MoveTask, QueueInfo, ReceivedMessage, SendEntry, SendResult
from qnode.protocol.errors import (
    BatchEntryIdsNotDistinct,
    BatchRequestTooLong,
    EmptyBatchRequest,
    InvalidBatchEntryId,
    InvalidParameter,
    MessageNotFound,
    MessageNotInflight,
    MessageTooLarge,
    MissingParameter,
    OverLimit,
    PurgeQueueInProgress,
    QnodeError,
    QueueAlreadyExists,
    QueueDoesNotExist,
    QueueFull,
    ReceiptHandleIsInvalid,
    ResourceNotFound,
    TooManyEntriesInBatch,
    TooManyWaiters,
)


class Rng(Protocol):
    def getrandbits(self, k: int) -> int: ...


@dataclass(frozen=True, slots=True)
class EngineConfig:
    region: str = "us-east-1"
    account_id: str = "000000000000"
    inflight_per_queue_max: int = limits.inflight_per_queue_max
    inflight_per_fifo_queue_max: int = limits.inflight_per_fifo_queue_max
    queue_backlog_count_max: int = limits.queue_backlog_count_max
    queue_backlog_size_max: int = limits.queue_backlog_size_max
    node_memory_budget_size: int = limits.node_memory_budget_size
    waiters_per_queue_max: int = limits.waiters_per_queue_max
    queue_full_retry_after_ms: int = limits.queue_full_retry_after_ms
    purge_interval_ms: int = limits.purge_interval_ms
    dedup_window_ms: int = limits.dedup_window_ms
    receive_attempt_window_ms: int = limits.receive_attempt_window_ms
    sweep_interval_ms: int = 1000          # retention / dedup-window sweep period
    tick_work_max: int = 100_000           # timer entries handled per tick (bounded loop)
    peek_scan_max: int = 10_000            # messages looked at by one peek / move step
    timers_compact_min: int = 16_384       # timer heap size below which stale entries stay

    def arn(self, name: str) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account_id}:{name}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """Answer for parked long poll `waiter_id`. `sync`: reply only after the WAL is durable up
    to the last LSN logged when this delivery was taken."""

    waiter_id: int
    messages: tuple[ReceivedMessage, ...]
    sync: bool


@dataclass(frozen=True, slots=True)
class SendOutcome:
    results: list
    sync: bool


@dataclass(frozen=True, slots=True)
class ReceiveOutcome:
    messages: tuple[ReceivedMessage, ...]
    waiter_id: int | None          # not None: parked, wait for the Delivery with this id
    sync: bool


@dataclass(frozen=True, slots=True)
class EngineStats:
    queues: int
    messages: int
    ready: int
    inflight: int
    delayed: int
    pending: int
    waiters: int
    bytes: int


class MoveTaskState:
    __slots__ = ("handle", "source_qid", "source_arn", "destination_arn", "max_per_second",
                 "status", "moved", "to_move", "started_ms", "reason")

    def __init__(self, handle: str, source_qid: int, source_arn: str, destination_arn: str | None,
                 max_per_second: int | None, status: str, moved: int, to_move: int,
                 started_ms: int, reason: str | None) -> None:
        self.handle = handle
        self.source_qid = source_qid
        self.source_arn = source_arn
        self.destination_arn = destination_arn
        self.max_per_second = max_per_second
        self.status = status
        self.moved = moved
        self.to_move = to_move
        self.started_ms = started_ms
        self.reason = reason

    def encode(self) -> list:
        return [self.handle, self.source_qid, self.source_arn, self.destination_arn,
                self.max_per_second, self.status, self.moved, self.to_move, self.started_ms,
                self.reason]

    def public(self) -> MoveTask:
        return MoveTask(self.handle, self.status, self.source_arn, self.destination_arn,
                        self.max_per_second, self.moved, self.to_move, self.started_ms,
                        self.reason)


class _Usage:
    """What the node's stored messages weigh: body bytes and message count. The memory budget
    charges each message its body plus limits.message_overhead_size (its objects and index
    entries), so a million 1-byte messages are not taken for 1 MB."""
    __slots__ = ("bytes", "count")

    def __init__(self) -> None:
        self.bytes = 0
        self.count = 0

    def charged(self) -> int:
        return self.bytes + self.count * limits.message_overhead_size


_TRACE = "AWSTraceHeader"
_COUNT_STR = tuple(str(i) for i in range(64))


_EMPTY: Mapping = {}
_FINISHED_TASKS_KEPT = 10          # finished move tasks remembered per source queue
_ATTEMPTS_KEPT = 10_000            # ReceiveRequestAttemptIds remembered per queue
_SNAPSHOT_GROUP_COUNT = 1_000      # messages per piece of `snapshot_chunks`
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID_SET = (0x4000 << 64) | (0x8000 << 48)


class Engine:
    def __init__(self, config: EngineConfig, rng: Rng) -> None:
        self.config = config
        self._rng = rng
        self._codec: ReceiptCodec | None = None
        self._secret: bytes | None = None
        self._queues: dict[str, Queue] = {}
        self._by_id: dict[int, Queue] = {}
        self._by_arn: dict[str, Queue] = {}
        self._next_qid = 1
        self._next_seq = 1
        self._next_waiter = 1
        self._tie = itertools.count()
        self._timers: list[tuple] = []       # (due_ms, tie, Message|Waiter, Queue, receive_count)
        self._waiters: dict[int, Waiter] = {}
        self._records: list[tuple[int, bytes]] = []
        self._deliveries: list[Delivery] = []
        self._unbound: list[tuple[Queue, Message]] = []
        self._pending: deque[tuple[int, list[tuple[Queue, Message]]]] = deque()
        self._dirty: dict[int, Queue] = {}
        self._tasks: dict[str, MoveTaskState] = {}
        self._usage = _Usage()
        self._sweep_at_ms = 0
        self._timers_compact_at = config.timers_compact_min
        self._started = False
        self._str_cache: dict[int, str] = {}

    # ================================================================ recovery / lifecycle
    @property
    def has_secret(self) -> bool:
        return self._secret is not None

    def init_secret(self, secret: bytes) -> None:
        """First open of a data directory: adopt `secret` (from the OS CSPRNG) and log it."""
        assert self._secret is None
        assert len(secret) == SECRET_SIZE
        self._set_secret(secret)
        self._log(rec.SECRET, [secret])

    def _set_secret(self, secret: bytes) -> None:
        self._secret = secret
        self._codec = ReceiptCodec(secret)

    def start(self, now_ms: int) -> None:
        """End of recovery: rebuild ready indexes, timers and per-queue maps from messages."""
        assert not self._started
        assert self._secret is not None, "init_secret() or a SECRET record must come first"
        self._started = True
        for q in self._queues.values():
            msgs = list(q.messages.values())
            q.messages.clear()
            q.counts = [0, 0, 0, 0, 0]
            q.bytes = 0
            q.clear_index()
            q.scheduled.clear()
            q.late = []
            q.newest_sent_ms = 0
            if q.fifo:
                for m in msgs:
                    m.state = PENDING
                    q.add(m)
                    self._usage.bytes += m.size
                    self._usage.count += 1
                    self._place(q, m, now_ms, restoring=True)
            else:
                self._rebuild_standard(q, msgs, now_ms)
        heapq.heapify(self._timers)
        self._sweep(now_ms)
        self._sweep_at_ms = now_ms + self.config.sweep_interval_ms
        self._check_invariants()

    def _rebuild_standard(self, q: Queue, msgs: list[Message], now_ms: int) -> None:
        """`start()` for a standard queue: the same placement as `add` + `_place`, in bulk
        (restart time is bounded by this loop). Timers are heapified by the caller."""
        messages, groups, rr, scheduled = q.messages, q.groups, q.rr, q.scheduled
        timers, tie = self._timers, self._tie
        counts = [0, 0, 0, 0, 0]
        size = 0
        newest = 0
        late: list[tuple[int, int]] = []
        for m in msgs:
            messages[m.seq] = m
            size += m.size
            if m.sent_ms < newest:
                late.append((m.sent_ms, m.seq))
            else:
                newest = m.sent_ms
            if m.visible_at_ms <= now_ms:
                m.state = READY
                d = groups.get(m.group_id)
                if d is None:
                    d = groups[m.group_id] = deque()
                    rr.append(m.group_id)
                d.append(m)
            else:
                if m.receive_count == 0:
                    m.state = DELAYED
                    scheduled[m.message_id] = m
                else:
                    m.state = INFLIGHT
                timers.append((m.visible_at_ms, next(tie), m, q, m.receive_count))
            counts[m.state] += 1
        heapq.heapify(late)
        q.late = late
        q.newest_sent_ms = newest
        q.counts = counts
        q.bytes = size
        self._usage.bytes += size
        self._usage.count += len(msgs)

    def apply_record(self, kind: int, body: bytes) -> None:
        """Replay one WAL record (recovery only, before `start`). Unknown kinds are ignored
        (they belong to other components sharing the log)."""
        assert not self._started
        if kind not in rec.KINDS:
            return
        data = rec.unpack(body)
        if kind == rec.SECRET:
            self._set_secret(data[0])
        elif kind == rec.QUEUE_CREATE:
            qid, name, fifo, attrs, tags, created_ms = data
            self._install_queue(Queue(qid, name, fifo, attrs, tags, created_ms, self.config.arn(name)))
        elif kind == rec.QUEUE_ATTRS:
            q = self._by_id.get(data[0])
            if q is not None:
                q.set_attrs(data[1])
                q.modified_ms = data[2]
        elif kind == rec.QUEUE_DELETE:
            q = self._by_id.get(data[0])
            if q is not None:
                self._uninstall_queue(q)
        elif kind == rec.QUEUE_TAGS:
            q = self._by_id.get(data[0])
            if q is not None:
                q.tags = dict(data[1])
        elif kind == rec.PURGE:
            q = self._by_id.get(data[0])
            if q is not None:
                q.messages.clear()
                q.last_purge_ms = data[1]
        elif kind == rec.SEND:
            self._replay_send(data)
        elif kind == rec.RECEIVE:
            q = self._by_id.get(data[0])
            if q is not None:
                for seq, count, visible_at_ms, first_ms in data[1]:
                    m = q.messages.get(seq)
                    if m is not None:
                        m.receive_count = count
                        m.visible_at_ms = visible_at_ms
                        m.first_receive_ms = first_ms
        elif kind == rec.DELETE:
            q = self._by_id.get(data[0])
            if q is not None:
                for seq in data[1]:
                    q.messages.pop(seq, None)
        elif kind == rec.VISIBILITY:
            q = self._by_id.get(data[0])
            if q is not None:
                for seq, visible_at_ms, reason in data[1]:
                    m = q.messages.get(seq)
                    if m is not None:
                        m.visible_at_ms = visible_at_ms
                        if reason is not None:
                            m.reason = reason
        elif kind == rec.MOVE:
            src, dst = self._by_id.get(data[0]), self._by_id.get(data[1])
            for src_seq, raw in data[2]:
                if src is not None:
                    src.messages.pop(src_seq, None)
                if dst is not None:
                    m = rec.decode_message(raw)
                    dst.messages[m.seq] = m
                    self._next_seq = max(self._next_seq, m.seq + 1)
        elif kind == rec.MOVE_TASK:
            task = MoveTaskState(*data)
            self._tasks[task.handle] = task
        else:  # pragma: no cover - KINDS and this table are kept in sync
            assert False, kind

    def _replay_send(self, data: list) -> None:
        qid, raws, dedups = data
        q = self._by_id.get(qid)
        if q is None:
            return
        messages = q.messages
        decode = rec.decode_message
        for raw in raws:
            m = decode(raw)
            messages[m.seq] = m
        if raws:
            self._next_seq = max(self._next_seq, raws[-1][0] + 1)   # seqs grow within a record
        for key, mid, seqno, expiry_ms in dedups:
            q.dedup[key] = (mid, seqno, expiry_ms)
            q.dedup.move_to_end(key)       # the sweep relies on expiry order

    def snapshot(self) -> bytes:
        """Checkpoint payload of the whole state. Call only right after the outbox was logged
        (`take_records()` empty): the payload then equals the log up to the last LSN."""
        return b"".join(self.snapshot_chunks())

    def snapshot_chunks(self) -> Iterator[bytes]:
        """`snapshot()` in pieces, built as they are consumed, so that whoever writes them out
        never holds the whole payload (the checkpoint child: `snapshot_child.py`). One msgpack
        document: {"v": 1, "secret", "next_seq", "next_qid", "queues": [[qid, name, fifo, attrs,
        tags, created_ms, modified_ms, last_purge_ms, [message...], [dedup...]]...], "tasks"}.
        The state must not change until the iterator is exhausted."""
        assert not self._records, "log the outbox before taking a snapshot"
        pk = msgpack.Packer(use_bin_type=True)
        yield pk.pack_map_header(6) + pk.pack("v") + pk.pack(1) + pk.pack("secret") \
            + pk.pack(self._secret) + pk.pack("next_seq") + pk.pack(self._next_seq) \
            + pk.pack("next_qid") + pk.pack(self._next_qid) + pk.pack("queues") \
            + pk.pack_array_header(len(self._queues))
        encode = rec.encode_message
        for q in self._queues.values():
            msgs = [] if q.durability == "memory" else q.messages.values()
            yield pk.pack_array_header(10) + b"".join(pk.pack(x) for x in (
                q.queue_id, q.name, q.fifo, q.attrs, q.tags, q.created_ms, q.modified_ms,
                q.last_purge_ms)) + pk.pack_array_header(len(msgs))
            it = iter(msgs)
            while group := list(itertools.islice(it, _SNAPSHOT_GROUP_COUNT)):
                yield b"".join([pk.pack(encode(m)) for m in group])
            yield pk.pack([[k, v[0], v[1], v[2]] for k, v in q.dedup.items()])
        yield pk.pack("tasks") + pk.pack([t.encode() for t in self._tasks.values()])

    def restore(self, payload: bytes) -> None:
        assert not self._started
        data = rec.unpack(payload)
        assert data["v"] == 1, data["v"]
        self._set_secret(data["secret"])
        self._next_seq = data["next_seq"]
        for qid, name, fifo, attrs, tags, created, modified, last_purge, msgs, dedup in data["queues"]:
            q = Queue(qid, name, fifo, attrs, tags, created, self.config.arn(name))
            q.modified_ms = modified
            q.last_purge_ms = last_purge
            for raw in msgs:
                m = rec.decode_message(raw)
                q.messages[m.seq] = m
            for key, mid, seqno, expiry_ms in dedup:
                q.dedup[key] = (mid, seqno, expiry_ms)
            self._install_queue(q)
        self._next_qid = max(self._next_qid, data["next_qid"])
        for raw in data["tasks"]:
            task = MoveTaskState(*raw)
            self._tasks[task.handle] = task

    # ================================================================ shell interface
    def take_records(self) -> list[tuple[int, bytes]]:
        out, self._records = self._records, []
        return out

    def take_deliveries(self) -> list[Delivery]:
        out, self._deliveries = self._deliveries, []
        return out

    def logged(self, lsn: int) -> None:
        """The records taken so far were appended; the last one has `lsn`."""
        if self._unbound:
            self._pending.append((lsn, self._unbound))
            self._unbound = []

    def abort_unlogged(self) -> None:
        """The WAL refused the records just taken (DiskFull/Busy): forget the sends they carried
        (never acknowledged, never receivable)."""
        for q, m in self._unbound:
            if m.state == PENDING and not q.deleted:
                q.scheduled.pop(m.message_id, None)
                self._drop(q, m)
        self._unbound = []

    def on_durable(self, lsn: int, now_ms: int) -> None:
        """The WAL is durable up to `lsn`: sends it covers become receivable."""
        pending = self._pending
        while pending and pending[0][0] <= lsn:
            for q, m in pending.popleft()[1]:
                if m.state == PENDING and not q.deleted:
                    if q.fifo or m.visible_at_ms > now_ms:
                        self._place(q, m, now_ms)
                        continue
                    # inline `_place` -> `make_ready` for a standard queue, visible now
                    if q.scheduled:
                        q.scheduled.pop(m.message_id, None)
                    counts = q.counts
                    counts[PENDING] -= 1
                    counts[READY] += 1
                    m.state = READY
                    key = m.group_id
                    d = q.groups.get(key)
                    if d is None:
                        d = q.groups[key] = deque()
                        q.rr.append(key)
                    d.append(m)
                    if q.waiter_count:
                        self._dirty[q.queue_id] = q
        self._serve_dirty(now_ms)

    def next_deadline_ms(self) -> int:
        due = self._sweep_at_ms
        if self._timers and self._timers[0][0] < due:
            due = self._timers[0][0]
        return due

    def tick(self, now_ms: int) -> None:
        """Fire due timers: visibility/delay expiry, long-poll deadlines, retention sweep."""
        timers = self._timers
        budget = self.config.tick_work_max
        while timers and timers[0][0] <= now_ms and budget > 0:
            budget -= 1
            due, _, obj, q, count = heapq.heappop(timers)
            if q is None:
                self._expire_waiter(obj)
                continue
            m = obj
            if (q.deleted or m.visible_at_ms != due or m.receive_count != count
                    or m.state not in (DELAYED, INFLIGHT)):
                continue
            if m.state == DELAYED:
                q.scheduled.pop(m.message_id, None)
            q.make_ready(m)
            self._mark_dirty(q)
        if now_ms >= self._sweep_at_ms:
            self._sweep(now_ms)
            self._sweep_at_ms = now_ms + self.config.sweep_interval_ms
        self._serve_dirty(now_ms)

    def cancel_waiter(self, waiter_id: int) -> None:
        """The caller of a parked receive went away; forget the waiter (idempotent)."""
        w = self._waiters.pop(waiter_id, None)
        if w is not None and not w.done:
            w.done = True
            w.queue.waiter_count -= 1

    # ================================================================ queues
    def create_queue(self, name: str, attributes: Mapping[str, str] | None,
                     tags: Mapping[str, str] | None, now_ms: int) -> QueueInfo:
        attributes = dict(attributes or {})
        fifo = attributes.get("FifoQueue") == "true" or name.endswith(".fifo")
        qattrs.validate_queue_name(name, fifo)
        if name.endswith(".fifo") and attributes.get("FifoQueue") != "true":
            raise InvalidParameter("a .fifo queue needs the attribute FifoQueue=true")
        stored = qattrs.normalise(attributes, fifo, creating=True)
        self._check_tags(tags or {})
        existing = self._queues.get(name)
        if existing is not None:
            current = qattrs.effective(existing.attrs, existing.fifo)
            if any(current.get(k) != v for k, v in stored.items()):
                raise QueueAlreadyExists(f"queue {name} exists with other attributes")
            return self._info(existing)
        self._check_redrive(name, fifo, stored)
        self._check_fifo_attrs(fifo, stored)
        q = Queue(self._next_qid, name, fifo, stored, tags or {}, now_ms, self.config.arn(name))
        self._install_queue(q)
        self._log(rec.QUEUE_CREATE, [q.queue_id, name, fifo, q.attrs, q.tags, now_ms])
        return self._info(q)

    def delete_queue(self, name: str, now_ms: int) -> None:
        q = self._get(name)
        for w in q.waiters:
            if not w.done:
                w.done = True
                self._waiters.pop(w.waiter_id, None)
                self._deliveries.append(Delivery(w.waiter_id, (), False))
        q.waiters.clear()
        q.waiter_count = 0
        self._uninstall_queue(q)
        self._log(rec.QUEUE_DELETE, [q.queue_id])

    def get_queue(self, name: str) -> QueueInfo:
        return self._info(self._get(name))

    def list_queues(self, prefix: str | None = None) -> list[str]:
        return sorted(n for n in self._queues if prefix is None or n.startswith(prefix))

    def queue_arn(self, name: str) -> str:
        return self._get(name).arn

    def get_queue_attributes(self, name: str, names: Sequence[str], now_ms: int) -> dict[str, str]:
        q = self._get(name)
        wanted = set(names) if names else {"All"}
        for n in wanted:
            if n != "All" and n not in qattrs.ALL_NAMES:
                raise qattrs.InvalidAttributeName(f"unknown attribute {n!r}")
        out = qattrs.effective(q.attrs, q.fifo)
        counts = q.counts
        out.update({
            "QueueArn": q.arn,
            "ApproximateNumberOfMessages": str(counts[READY] + counts[PENDING]),
            "ApproximateNumberOfMessagesNotVisible": str(counts[INFLIGHT]),
            "ApproximateNumberOfMessagesDelayed": str(counts[DELAYED]),
            "CreatedTimestamp": str(q.created_ms // 1000),
            "LastModifiedTimestamp": str(q.modified_ms // 1000),
        })
        if "All" in wanted:
            return out
        return {k: v for k, v in out.items() if k in wanted}

    def set_queue_attributes(self, name: str, attributes: Mapping[str, str], now_ms: int) -> None:
        q = self._get(name)
        stored = qattrs.normalise(attributes, q.fifo, creating=False)
        self._check_redrive(name, q.fifo, stored)
        merged = dict(q.attrs)
        for k, v in stored.items():
            if v == "" and k in ("Policy", "RedrivePolicy", "RedriveAllowPolicy", qattrs.REDELIVERY_BACKOFF):
                merged.pop(k, None)
            else:
                merged[k] = v
        self._check_fifo_attrs(q.fifo, merged)
        self._set_attrs(q, merged, now_ms)

    def _set_attrs(self, q: Queue, merged: dict[str, str], now_ms: int) -> None:
        q.set_attrs(merged)
        q.modified_ms = now_ms
        self._log(rec.QUEUE_ATTRS, [q.queue_id, q.attrs, now_ms])

    def purge_queue(self, name: str, now_ms: int) -> None:
        q = self._get(name)
        if q.last_purge_ms is not None and now_ms - q.last_purge_ms < self.config.purge_interval_ms:
            raise PurgeQueueInProgress(f"queue {name} was purged less than 60 s ago")
        for m in list(q.messages.values()):
            self._drop(q, m)
        q.clear_index()
        q.scheduled.clear()
        q.last_purge_ms = now_ms
        self._log(rec.PURGE, [q.queue_id, now_ms])

    def tag_queue(self, name: str, tags: Mapping[str, str]) -> None:
        q = self._get(name)
        merged = {**q.tags, **tags}
        self._check_tags(merged)
        q.tags = merged
        self._log(rec.QUEUE_TAGS, [q.queue_id, q.tags])

    def untag_queue(self, name: str, keys: Sequence[str]) -> None:
        q = self._get(name)
        q.tags = {k: v for k, v in q.tags.items() if k not in set(keys)}
        self._log(rec.QUEUE_TAGS, [q.queue_id, q.tags])

    def list_queue_tags(self, name: str) -> dict[str, str]:
        return dict(self._get(name).tags)

    def add_permission(self, name: str, label: str, account_ids: Sequence[str],
                       actions: Sequence[str], now_ms: int) -> None:
        q = self._get(name)
        policy = qattrs.policy_with_permission(q.attrs.get("Policy"), q.arn, label, account_ids, actions)
        self._set_attrs(q, {**q.attrs, "Policy": policy}, now_ms)

    def remove_permission(self, name: str, label: str, now_ms: int) -> None:
        q = self._get(name)
        policy = qattrs.policy_without_permission(q.attrs.get("Policy"), label)
        merged = dict(q.attrs)
        if policy:
            merged["Policy"] = policy
        else:
            merged.pop("Policy", None)
        self._set_attrs(q, merged, now_ms)

    def list_dead_letter_source_queues(self, name: str) -> list[str]:
        q = self._get(name)
        return sorted(s.name for s in self._queues.values() if s.redrive and s.redrive[0] == q.arn)

    # ================================================================ messages
    def send(self, name: str, entries: Sequence[SendEntry], now_ms: int) -> SendOutcome:
        q = self._get(name)
        self._check_batch([e.entry_id for e in entries])
        if sum(len(e.body) for e in entries) > limits.batch_size_max:
            raise BatchRequestTooLong("the batch is larger than 1 MiB")
        results: list = []
        raws: list[list] = []
        dedups: list[list] = []
        # Fast path for the common entry (standard queue, bytes body within limits, no
        # attributes, no delay/schedule, no group/dedup id, capacity left): the same effects
        # as `_send_one`, with the per-queue lookups hoisted. Anything else, including every
        # entry that would fail a check, takes `_send_one` (which raises the typed error).
        plain = not q.fifo and q.delay_ms == 0
        size_min, size_max = limits.message_size_min, q.size_max
        cfg = self.config
        count_max, qsize_max = cfg.queue_backlog_count_max, cfg.queue_backlog_size_max
        # Node budget left for bodies, after every stored message's and this one's overhead.
        overhead = limits.message_overhead_size
        node_max = cfg.node_memory_budget_size - overhead
        usage = self._usage
        durable = q.durability != "memory"
        fsync = q.durability == "fsync"
        unbound = self._unbound
        messages = q.messages
        for e in entries:
            body = e.body
            if (plain and type(body) is bytes and e.delay_ms is None and e.deliver_at_ms is None
                    and not e.attributes and not e.system_attributes and e.group_id is None
                    and e.dedup_id is None):
                size = len(body)
                if (size_min <= size <= size_max and len(messages) < count_max
                        and q.bytes + size <= qsize_max
                        and usage.bytes + usage.count * overhead + size <= node_max):
                    seq = self._next_seq
                    self._next_seq = seq + 1
                    mid = self._new_id()
                    m = Message(seq, mid, body, _EMPTY, None, _EMPTY, None, now_ms, now_ms,
                                0, 0, None, None, 0, None, None, size)
                    q.add(m)
                    usage.bytes += size
                    usage.count += 1
                    if durable:
                        raws.append([seq, mid, body, None, None, None, None, None, now_ms, now_ms,
                                     0, 0, None, None, 0, None, None, size])
                    if fsync:
                        unbound.append((q, m))
                    else:
                        self._place(q, m, now_ms)
                    results.append(SendResult(mid, None, None, None, e.entry_id, False))
                    continue
            try:
                results.append(self._send_one(q, e, now_ms, raws, dedups))
            except QnodeError as err:
                results.append(err)
        if raws and q.durability != "memory":
            self._log(rec.SEND, [q.queue_id, raws, dedups])
        self._serve_dirty(now_ms)
        return SendOutcome(results, q.durability == "fsync")

    def _send_one(self, q: Queue, e: SendEntry, now_ms: int, raws: list, dedups: list) -> SendResult:
        body = e.body
        if not isinstance(body, (bytes, bytearray)) or len(body) < limits.message_size_min:
            raise MissingParameter("the message body must be 1 byte or more")
        size = len(body) + (qattrs.validate_message_attributes(e.attributes) if e.attributes else 0)
        if size > q.size_max:
            raise MessageTooLarge(f"message of {size} bytes exceeds MaximumMessageSize {q.size_max}")
        sys_attrs = e.system_attributes
        if sys_attrs:
            for k, a in sys_attrs.items():
                if k != _TRACE or a.data_type != "String" or not a.string_value:
                    raise InvalidParameter("the only message system attribute is AWSTraceHeader (String)")
        if e.deliver_at_ms is None and e.delay_ms is None:
            visible_at = now_ms + q.delay_ms
        else:
            visible_at = self._visible_at(q, e, now_ms)
        if q.fifo or e.group_id is not None or e.dedup_id is not None:
            group_id, dedup_id, dedup_key = self._fifo_keys(q, e, body)
        else:
            group_id = dedup_id = dedup_key = None
        if dedup_key is not None:
            hit = q.dedup.get(dedup_key)
            if hit is not None and hit[2] > now_ms:
                return SendResult(hit[0], md5_of_attributes(e.attributes),
                                  md5_of_attributes(sys_attrs), str(hit[1]), e.entry_id, True)
        self._check_capacity(q, size)
        seq = self._next_seq
        self._next_seq = seq + 1
        mid = self._new_id()
        attrs = e.attributes
        md5_attrs = md5_of_attributes(attrs) if attrs else None
        md5_sys = md5_of_attributes(sys_attrs) if sys_attrs else None
        m = Message(seq, mid, bytes(body), dict(attrs) if attrs else _EMPTY, md5_attrs,
                    dict(sys_attrs) if sys_attrs else _EMPTY, md5_sys, now_ms, visible_at,
                    0, 0, group_id, dedup_id, seq if q.fifo else 0, None, None, size)
        q.add(m)
        self._usage.bytes += size
        self._usage.count += 1
        if visible_at > now_ms:
            q.scheduled[mid] = m
        if q.durability != "memory":
            raws.append(rec.encode_message(m))
        if dedup_key is not None:
            expiry = now_ms + self.config.dedup_window_ms
            q.dedup[dedup_key] = (mid, seq, expiry)
            q.dedup.move_to_end(dedup_key)
            dedups.append([dedup_key, mid, seq, expiry])
        if q.durability == "fsync":
            self._unbound.append((q, m))
        else:
            self._place(q, m, now_ms)
        return SendResult(mid, md5_attrs, md5_sys, str(seq) if q.fifo else None,
                          e.entry_id, False)

    def _new_id(self) -> str:
        """A random (version 4) UUID string from the injected rng."""
        bits = (self._rng.getrandbits(128) & _UUID_CLEAR) | _UUID_SET
        h = bits.to_bytes(16, "big").hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _visible_at(self, q: Queue, e: SendEntry, now_ms: int) -> int:
        if e.deliver_at_ms is not None:
            if q.fifo:
                raise InvalidParameter("scheduled delivery is not supported on FIFO queues")
            if not isinstance(e.deliver_at_ms, int) or e.deliver_at_ms > now_ms + q.retention_ms:
                raise InvalidParameter("deliver_at_ms must be within the retention period")
            return max(e.deliver_at_ms, now_ms)
        if e.delay_ms is None:
            return now_ms + q.delay_ms
        if q.fifo:
            raise InvalidParameter("per-message DelaySeconds is not supported on FIFO queues")
        # SQS caps DelaySeconds at 900 (the SQS gateway enforces that); the native protocol
        # allows delays up to the queue's retention period (issue #4), like deliver_at.
        if not isinstance(e.delay_ms, int) or not 0 <= e.delay_ms <= q.retention_ms:
            raise InvalidParameter("the delay must be between 0 and the retention period")
        return now_ms + e.delay_ms

    def _fifo_keys(self, q: Queue, e: SendEntry, body: bytes) -> tuple[str | None, str | None, str | None]:
        group_id = e.group_id
        if group_id is not None:
            qattrs.validate_group_or_dedup_id(group_id, "MessageGroupId")
        if not q.fifo:
            if e.dedup_id is not None:
                raise InvalidParameter("MessageDeduplicationId is only valid on FIFO queues")
            return group_id, None, None
        if group_id is None:
            raise MissingParameter("MessageGroupId is required on FIFO queues")
        dedup_id = e.dedup_id
        if dedup_id is not None:
            qattrs.validate_group_or_dedup_id(dedup_id, "MessageDeduplicationId")
        elif q.content_dedup:
            dedup_id = hashlib.sha256(body).hexdigest()
        else:
            raise InvalidParameter("the queue needs ContentBasedDeduplication or a MessageDeduplicationId")
        key = f"{group_id}\x00{dedup_id}" if q.dedup_by_group else dedup_id
        return group_id, dedup_id, key

    def _check_capacity(self, q: Queue, size: int) -> None:
        cfg = self.config
        if (len(q.messages) >= cfg.queue_backlog_count_max
                or q.bytes + size > cfg.queue_backlog_size_max
                or self._usage.charged() + size + limits.message_overhead_size
                > cfg.node_memory_budget_size):
            raise QueueFull(f"queue {q.name} is full", retry_after_ms=cfg.queue_full_retry_after_ms)

    def receive(self, name: str, max_count: int, wait_ms: int | None,
                visibility_timeout_ms: int | None, attempt_id: str | None, delete: bool,
                now_ms: int) -> ReceiveOutcome:
        q = self._get(name)
        if not isinstance(max_count, int) or not 1 <= max_count <= limits.receive_count_max:
            raise InvalidParameter("MaxNumberOfMessages must be 1..10")
        wait = q.wait_ms if wait_ms is None else wait_ms
        if not isinstance(wait, int) or not 0 <= wait <= limits.wait_ms_max:
            raise InvalidParameter("WaitTimeSeconds must be 0..20")
        vis = q.visibility_ms if visibility_timeout_ms is None else visibility_timeout_ms
        if not isinstance(vis, int) or not 0 <= vis <= limits.visibility_timeout_ms_max:
            raise InvalidParameter("VisibilityTimeout must be 0..43200")
        if attempt_id is not None:
            cached = self._attempt_replay(q, attempt_id, now_ms)
            if cached:
                # With a redrive policy the first attempt's RECEIVE must be durable before any
                # reply; the retry may arrive while it is not yet.
                return ReceiveOutcome(cached, None, q.durability == "fsync" and q.redrive is not None)
        if not delete and q.counts[INFLIGHT] >= self._inflight_max(q):
            raise OverLimit(f"queue {name} has too many messages in flight")
        msgs, sync = self._receive_now(q, max_count, vis, delete, attempt_id, now_ms)
        if msgs or wait == 0:
            return ReceiveOutcome(msgs, None, sync)
        if q.waiter_count >= self.config.waiters_per_queue_max:
            raise TooManyWaiters(f"queue {name} has too many long polls waiting", retry_after_ms=wait)
        wid = self._next_waiter
        self._next_waiter += 1
        w = Waiter(wid, q, max_count, vis, now_ms + wait, delete, attempt_id)
        self._waiters[wid] = w
        q.waiters.append(w)
        q.waiter_count += 1
        if len(q.waiters) > 2 * q.waiter_count + 64:
            q.waiters = deque(x for x in q.waiters if not x.done)
        heapq.heappush(self._timers, (w.deadline_ms, next(self._tie), w, None, -1))
        return ReceiveOutcome((), wid, sync)

    def _inflight_max(self, q: Queue) -> int:
        return self.config.inflight_per_fifo_queue_max if q.fifo else self.config.inflight_per_queue_max

    def _receive_now(self, q: Queue, n: int, vis_ms: int, delete: bool, attempt_id: str | None,
                     now_ms: int) -> tuple[tuple[ReceivedMessage, ...], bool]:
        if not delete:
            n = min(n, self._inflight_max(q) - q.counts[INFLIGHT])
            if n <= 0:
                return (), False
        received: list[list] = []
        deleted: list[int] = []
        moved: list[bool] = []
        redrive = q.redrive
        dlq = self._by_arn.get(redrive[0]) if redrive else None
        if dlq is not None and (dlq.fifo != q.fifo or dlq is q):
            dlq = None
        max_receives = redrive[1] if redrive else 0
        timers = self._timers
        tie = self._tie
        visible_at = now_ms + vis_ms

        def accept(m: Message) -> bool:
            if dlq is not None and m.receive_count >= max_receives:
                self._move(q, m, dlq, now_ms, keep_source=True)
                moved.append(True)
                return False
            m.receive_count += 1
            if not m.first_receive_ms:
                m.first_receive_ms = now_ms
            if delete:
                self._drop(q, m)
                deleted.append(m.seq)
                return True
            m.visible_at_ms = visible_at
            q.set_state(m, INFLIGHT)
            heapq.heappush(timers, (visible_at, next(tie), m, q, m.receive_count))
            received.append([m.seq, m.receive_count, visible_at, m.first_receive_ms])
            return True

        if q.fifo or delete or dlq is not None:
            taken = q.take(n, accept)
        else:
            # Standard queue, leasing, no dead-letter diversion: `q.take(n, accept)` with the
            # round-robin pop and `accept` inlined (the same order and effects).
            taken = []
            rr, groups, counts = q.rr, q.groups, q.counts
            heappush = heapq.heappush
            while len(taken) < n and rr:
                key = rr[0]
                d = groups[key]
                m = d.popleft()
                if not d:
                    rr.popleft()
                    del groups[key]
                elif len(rr) > 1:
                    rr.rotate(-1)
                if m.state != READY:
                    continue
                count = m.receive_count = m.receive_count + 1
                if not m.first_receive_ms:
                    m.first_receive_ms = now_ms
                m.visible_at_ms = visible_at
                counts[READY] -= 1                  # = q.set_state(m, INFLIGHT)
                counts[INFLIGHT] += 1
                m.state = INFLIGHT
                heappush(timers, (visible_at, next(tie), m, q, count))
                received.append([m.seq, count, visible_at, m.first_receive_ms])
                taken.append(m)
        if len(timers) > self._timers_compact_at:
            self._compact_timers()
        if vis_ms == 0 and not delete:
            for m in taken:                  # visible again at once (SQS VisibilityTimeout=0)
                q.make_ready(m)
            if taken:
                self._mark_dirty(q)
        durable = q.durability != "memory"
        if received and durable:
            self._log(rec.RECEIVE, [q.queue_id, received])
        if deleted and durable:
            self._log(rec.DELETE, [q.queue_id, deleted])
        if q.fifo:
            out = tuple(self._present(q, m) for m in taken)
        else:
            out = self._present_standard(q, taken)
        if attempt_id is not None and out and not delete:
            q.attempts[attempt_id] = (now_ms + self.config.receive_attempt_window_ms,
                                      [(m, m.receive_count) for m in taken])
            q.attempts.move_to_end(attempt_id)
            if len(q.attempts) > _ATTEMPTS_KEPT:
                q.attempts.popitem(last=False)
        sync = q.durability == "fsync" and (bool(deleted) or bool(moved) or (redrive is not None and bool(taken)))
        return out, sync

    def _attempt_replay(self, q: Queue, attempt_id: str, now_ms: int) -> tuple[ReceivedMessage, ...]:
        hit = q.attempts.get(attempt_id)
        if hit is None or hit[0] <= now_ms:
            return ()
        live = [m for m, count in hit[1]
                if m.state == INFLIGHT and m.receive_count == count and q.messages.get(m.seq) is m]
        return tuple(self._present(q, m) for m in live)

    def _ms_str(self, ms: int) -> str:
        """str(ms), memoised: a batch's messages share SentTimestamp and first-receive times."""
        cache = self._str_cache
        s = cache.get(ms)
        if s is None:
            if len(cache) >= 64:
                cache.clear()
            s = cache[ms] = str(ms)
        return s

    def _present_standard(self, q: Queue, taken: list[Message]) -> tuple[ReceivedMessage, ...]:
        """`tuple(self._present(q, m) for m in taken)` for a standard queue, with the common
        message (no group, no dead-letter source, no reason, no trace header) built inline."""
        ms_str = self._ms_str
        make = self._codec.make
        account = self.config.account_id
        qid = q.queue_id
        out = []
        for m in taken:
            count = m.receive_count
            if (m.group_id is not None or m.dlq_source_arn is not None or m.reason is not None
                    or m.sys_attrs or not m.first_receive_ms):
                out.append(self._present(q, m))
                continue
            system = {
                "SenderId": account,
                "SentTimestamp": ms_str(m.sent_ms),
                "ApproximateReceiveCount": _COUNT_STR[count] if count < 64 else str(count),
                "ApproximateFirstReceiveTimestamp": ms_str(m.first_receive_ms),
            }
            out.append(ReceivedMessage(m.message_id, make(qid, m.seq, count), m.body, m.md5_attrs,
                                       m.attrs, system))
        return tuple(out)

    def _present(self, q: Queue, m: Message, peek: bool = False) -> ReceivedMessage:
        ms_str = self._ms_str
        count = m.receive_count
        system = {
            "SenderId": self.config.account_id,
            "SentTimestamp": ms_str(m.sent_ms),
            "ApproximateReceiveCount": _COUNT_STR[count] if count < 64 else str(count),
        }
        if m.first_receive_ms:
            system["ApproximateFirstReceiveTimestamp"] = ms_str(m.first_receive_ms)
        if m.group_id is not None:
            system["MessageGroupId"] = m.group_id
        if q.fifo:
            system["MessageDeduplicationId"] = m.dedup_id or ""
            system["SequenceNumber"] = str(m.sequence_number)
        if m.dlq_source_arn is not None:
            system["DeadLetterQueueSourceArn"] = m.dlq_source_arn
        if m.reason is not None:
            system["qnode:FailureReason"] = m.reason
        trace = m.sys_attrs.get(_TRACE)
        if trace is not None:
            system[_TRACE] = trace.string_value or ""
        receipt = None if peek else self._codec.make(q.queue_id, m.seq, m.receive_count)
        return ReceivedMessage(m.message_id, receipt, m.body, m.md5_attrs, m.attrs, system)

    def delete(self, name: str, receipts: Sequence[str], now_ms: int) -> tuple[list, bool]:
        """-> (per-receipt None | QnodeError, sync). A stale handle (the message was received
        again since) succeeds and leaves the message, as SQS does."""
        q = self._get(name)
        self._check_batch(None if len(receipts) else [])
        results: list = []
        seqs: list[int] = []
        open_receipt = self._codec.open
        qid = q.queue_id
        messages = q.messages
        usage = self._usage
        for receipt in receipts:
            try:
                rqid, seq, count = open_receipt(receipt)      # = self._open, inlined
                if rqid != qid:
                    raise ReceiptHandleIsInvalid("the receipt handle belongs to another queue")
            except QnodeError as err:
                results.append(err)
                continue
            m = messages.get(seq)
            if m is not None and m.receive_count == count and (m.state == READY or m.state == INFLIGHT):
                usage.bytes -= m.size                         # = self._drop (state is not GONE)
                usage.count -= 1
                q.drop(m)
                # Deleted for good: nothing reads the body again, but stale timer-heap entries
                # keep `m` until compaction (up to timers_compact_min of them): not its body.
                m.body = b""
                seqs.append(m.seq)
            results.append(None)
        if seqs and q.durability != "memory":
            self._log(rec.DELETE, [q.queue_id, seqs])
        return results, q.durability == "fsync"

    def change_visibility(self, name: str, items: Sequence[tuple[str, int]], now_ms: int) -> list:
        q = self._get(name)
        self._check_batch(None if len(items) else [])
        results: list = []
        logged: list[list] = []
        for receipt, vis_ms in items:
            try:
                if not isinstance(vis_ms, int) or not 0 <= vis_ms <= limits.visibility_timeout_ms_max:
                    raise InvalidParameter("VisibilityTimeout must be 0..43200")
                m = self._inflight(q, receipt)
                self._set_visible_at(q, m, now_ms + vis_ms, now_ms)
                logged.append([m.seq, m.visible_at_ms, None])
                results.append(None)
            except QnodeError as err:
                results.append(err)
        if logged and q.durability != "memory":
            self._log(rec.VISIBILITY, [q.queue_id, logged])
        self._serve_dirty(now_ms)
        return results

    def nack(self, name: str, receipt: str, delay_ms: int | None, reason: str | None,
             now_ms: int) -> None:
        q = self._get(name)
        m = self._inflight(q, receipt)
        if delay_ms is None:
            steps = q.backoff_ms
            delay_ms = steps[min(m.receive_count, len(steps)) - 1] if steps else 0
        if not isinstance(delay_ms, int) or not 0 <= delay_ms <= limits.visibility_timeout_ms_max:
            raise InvalidParameter("delay must be 0..43200 s")
        if reason is not None:
            m.reason = str(reason)[:1024]
        self._set_visible_at(q, m, now_ms + delay_ms, now_ms)
        if q.durability != "memory":
            self._log(rec.VISIBILITY, [q.queue_id, [[m.seq, m.visible_at_ms, m.reason]]])
        self._serve_dirty(now_ms)

    def _open(self, q: Queue, receipt: str) -> tuple[Message | None, int]:
        qid, seq, count = self._codec.open(receipt)
        if qid != q.queue_id:
            raise ReceiptHandleIsInvalid("the receipt handle belongs to another queue")
        return q.messages.get(seq), count

    def _inflight(self, q: Queue, receipt: str) -> Message:
        m, count = self._open(q, receipt)
        if m is None or m.receive_count != count:
            raise InvalidParameter("the message does not exist or is not available for a visibility change")
        if m.state != INFLIGHT:
            raise MessageNotInflight("the message is not in flight")
        return m

    def _set_visible_at(self, q: Queue, m: Message, visible_at: int, now_ms: int) -> None:
        m.visible_at_ms = visible_at
        if visible_at <= now_ms:
            q.make_ready(m)
            self._mark_dirty(q)
        else:
            heapq.heappush(self._timers, (visible_at, next(self._tie), m, q, m.receive_count))

    def peek(self, name: str, max_count: int, now_ms: int) -> list[ReceivedMessage]:
        q = self._get(name)
        if not 1 <= max_count <= limits.receive_count_max:
            raise InvalidParameter("max_count must be 1..10")
        out: list[ReceivedMessage] = []
        for scanned, m in enumerate(q.messages.values()):
            if len(out) >= max_count or scanned >= self.config.peek_scan_max:
                break
            if m.state == READY:
                out.append(self._present(q, m, peek=True))
        return out

    def cancel_scheduled(self, name: str, message_id: str, now_ms: int) -> bool:
        """-> sync. MessageNotFound unless the message is still delayed/scheduled."""
        q = self._get(name)
        m = q.scheduled.pop(message_id, None)
        if m is None or m.state not in (PENDING, DELAYED):
            raise MessageNotFound(f"no scheduled message {message_id}")
        self._drop(q, m)
        if q.durability != "memory":
            self._log(rec.DELETE, [q.queue_id, [m.seq]])
        return q.durability == "fsync"

    # ================================================================ dead letters / moves
    def _move(self, src: Queue, m: Message, dst: Queue, now_ms: int, keep_source: bool) -> None:
        """Move `m` from `src` to `dst` as ONE record; the copy keeps id, body, attributes and
        SentTimestamp. A message already past the destination's retention is dropped instead."""
        self._drop(src, m)
        if m.sent_ms + dst.retention_ms <= now_ms:
            if src.durability != "memory":
                self._log(rec.DELETE, [src.queue_id, [m.seq]])
            return
        seq = self._next_seq
        self._next_seq = seq + 1
        copy = Message(seq, m.message_id, m.body, m.attrs, m.md5_attrs, m.sys_attrs,
                       m.md5_sys, m.sent_ms, now_ms, 0, 0, m.group_id, m.dedup_id,
                       seq if dst.fifo else 0, src.arn if keep_source else None,
                       m.reason if keep_source else None, m.size)
        dst.add(copy)
        self._usage.bytes += copy.size
        self._usage.count += 1
        if src.durability != "memory" or dst.durability != "memory":
            self._log(rec.MOVE, [src.queue_id, dst.queue_id, [[m.seq, rec.encode_message(copy)]]])
        if dst.durability == "fsync":
            self._unbound.append((dst, copy))
        else:
            self._place(dst, copy, now_ms)

    def start_move_task(self, source: str, destination: str | None, max_per_second: int | None,
                        now_ms: int) -> str:
        q = self._get(source)
        if not any(s.redrive and s.redrive[0] == q.arn for s in self._queues.values()):
            raise InvalidParameter("the source queue is not a dead-letter queue of any queue")
        if any(t.source_qid == q.queue_id and t.status == "RUNNING" for t in self._tasks.values()):
            raise InvalidParameter("a message move task is already running on this queue")
        dst_arn = None
        if destination is not None:
            dst = self._get(destination)
            if dst.fifo != q.fifo:
                raise InvalidParameter("FIFO queues move to FIFO queues only")
            dst_arn = dst.arn
        if max_per_second is not None and not 1 <= max_per_second <= 500:
            raise InvalidParameter("MaxNumberOfMessagesPerSecond must be 1..500")
        handle = self._new_id()
        task = MoveTaskState(handle, q.queue_id, q.arn, dst_arn, max_per_second, "RUNNING", 0,
                             q.counts[READY] + q.counts[DELAYED], now_ms, None)
        self._tasks[handle] = task
        self._log(rec.MOVE_TASK, task.encode())
        return handle

    def move_step(self, handle: str, max_count: int, now_ms: int) -> bool:
        """Move up to `max_count` visible messages of a RUNNING task. -> True while running."""
        task = self._tasks.get(handle)
        if task is None or task.status != "RUNNING":
            return False
        q = self._by_id.get(task.source_qid)
        if q is None:
            return self._finish_task(task, "FAILED", "the source queue was deleted")
        fixed = self._by_arn.get(task.destination_arn) if task.destination_arn else None
        if task.destination_arn and fixed is None:
            return self._finish_task(task, "FAILED", "the destination queue does not exist")
        batch = []
        for scanned, m in enumerate(q.messages.values()):
            if len(batch) >= max_count or scanned >= self.config.peek_scan_max:
                break
            if m.state == READY:
                batch.append(m)
        for m in batch:
            dst = fixed or self._by_arn.get(m.dlq_source_arn or "")
            if dst is None or dst is q or dst.fifo != q.fifo:
                return self._finish_task(task, "FAILED", "a message's source queue does not exist")
            self._move(q, m, dst, now_ms, keep_source=False)
            task.moved += 1
        self._serve_dirty(now_ms)
        if not batch or task.moved >= task.to_move:
            return self._finish_task(task, "COMPLETED", None)
        return True

    def _finish_task(self, task: MoveTaskState, status: str, reason: str | None) -> bool:
        task.status = status
        task.reason = reason
        self._log(rec.MOVE_TASK, task.encode())
        done = [t for t in self._tasks.values()
                if t.source_qid == task.source_qid and t.status != "RUNNING"]
        for old in done[:max(0, len(done) - _FINISHED_TASKS_KEPT)]:   # bounded history
            del self._tasks[old.handle]
        return False

    def cancel_move_task(self, handle: str) -> int:
        task = self._tasks.get(handle)
        if task is None or task.status != "RUNNING":
            raise ResourceNotFound("no running message move task with this handle")
        self._finish_task(task, "CANCELLED", None)
        return task.moved

    def list_move_tasks(self, source: str, max_results: int) -> list[MoveTask]:
        q = self._get(source)
        if not 1 <= max_results <= 10:
            raise InvalidParameter("MaxResults must be 1..10")
        # newest first; tasks started in the same ms: the later-created first (dict order)
        tasks = [t for t in reversed(self._tasks.values()) if t.source_arn == q.arn]
        tasks.sort(key=lambda t: t.started_ms, reverse=True)
        return [t.public() for t in tasks[:max_results]]

    def running_move_tasks(self) -> list[tuple[str, int]]:
        """(handle, max_per_second or 0) of every RUNNING task, for the shell's pacing loop."""
        return [(t.handle, t.max_per_second or 0) for t in self._tasks.values() if t.status == "RUNNING"]

    # ================================================================ internals
    def _get(self, name: str) -> Queue:
        assert self._started, "start() must be called after recovery"
        q = self._queues.get(name)
        if q is None:
            raise QueueDoesNotExist(f"queue {name} does not exist")
        return q

    def _info(self, q: Queue) -> QueueInfo:
        return QueueInfo(q.name, qattrs.effective(q.attrs, q.fifo), dict(q.tags))

    def _install_queue(self, q: Queue) -> None:
        self._queues[q.name] = q
        self._by_id[q.queue_id] = q
        self._by_arn[q.arn] = q
        self._next_qid = max(self._next_qid, q.queue_id + 1)

    def _uninstall_queue(self, q: Queue) -> None:
        q.deleted = True
        self._usage.bytes -= q.bytes                # 0 during replay: start() counts usage
        if self._started:
            self._usage.count -= len(q.messages)
        del self._queues[q.name]
        del self._by_id[q.queue_id]
        del self._by_arn[q.arn]
        for t in self._tasks.values():
            if t.source_qid == q.queue_id and t.status == "RUNNING":
                t.status = "FAILED"
                t.reason = "the source queue was deleted"

    def _check_batch(self, entry_ids: list | None) -> None:
        if entry_ids is None:
            return
        if not entry_ids:
            raise EmptyBatchRequest("the batch has no entries")
        if len(entry_ids) > limits.batch_entries_count_max:
            raise TooManyEntriesInBatch("at most 10 entries per batch")
        given = [i for i in entry_ids if i is not None]
        for i in given:
            if not isinstance(i, str) or not qattrs.validate_batch_entry_id(i):
                raise InvalidBatchEntryId(f"invalid batch entry id {i!r}")
        if len(set(given)) != len(given):
            raise BatchEntryIdsNotDistinct("two batch entries share an id")

    def _check_tags(self, tags: Mapping[str, str]) -> None:
        if len(tags) > 50:
            raise InvalidParameter("a queue has at most 50 tags")
        for k, v in tags.items():
            if not isinstance(k, str) or not 1 <= len(k) <= 128 or not isinstance(v, str) or len(v) > 256:
                raise InvalidParameter("tag keys are 1..128 characters, values up to 256")

    def _check_fifo_attrs(self, fifo: bool, attrs: Mapping[str, str]) -> None:
        if not fifo:
            return
        eff = qattrs.effective(attrs, fifo)
        if eff["FifoThroughputLimit"] == "perMessageGroupId" and eff["DeduplicationScope"] != "messageGroup":
            raise qattrs.InvalidAttributeValue(
                "FifoThroughputLimit=perMessageGroupId needs DeduplicationScope=messageGroup")

    def _check_redrive(self, name: str, fifo: bool, stored: Mapping[str, str]) -> None:
        policy = stored.get("RedrivePolicy")
        if not policy:
            return
        arn, _ = qattrs.parse_redrive_policy(policy)
        dlq = self._by_arn.get(arn)
        if dlq is None or dlq.name == name:
            raise InvalidParameter("the dead-letter target queue does not exist")
        if dlq.fifo != fifo:
            raise InvalidParameter("a FIFO queue's dead-letter queue must be FIFO, and vice versa")
        allow = dlq.attrs.get("RedriveAllowPolicy")
        if allow:
            permission, sources = qattrs.parse_redrive_allow_policy(allow)
            if permission == "denyAll" or (permission == "byQueue" and self.config.arn(name) not in sources):
                raise InvalidParameter("the dead-letter queue's RedriveAllowPolicy denies this source")

    def _log(self, kind: int, body: Any) -> None:
        self._records.append((kind, rec.pack(body)))

    def _drop(self, q: Queue, m: Message) -> None:
        if m.state != GONE:
            self._usage.bytes -= m.size
            self._usage.count -= 1
            q.drop(m)

    def _place(self, q: Queue, m: Message, now_ms: int, restoring: bool = False) -> None:
        """A durable (or non-fsync) message enters DELAYED, INFLIGHT or READY by its times."""
        assert m.state == PENDING, m
        if m.visible_at_ms > now_ms:
            if m.receive_count == 0:
                q.set_state(m, DELAYED)
                q.scheduled[m.message_id] = m
            else:
                assert restoring, m
                q.set_state(m, INFLIGHT)
                if q.fifo:
                    q.lease_on_restore(m)
            heapq.heappush(self._timers, (m.visible_at_ms, next(self._tie), m, q, m.receive_count))
            return
        q.scheduled.pop(m.message_id, None)
        q.make_ready(m)
        self._mark_dirty(q)

    def _compact_timers(self) -> None:
        """Drop stale timer entries (deleted messages, changed visibility, answered waiters):
        a 12 h visibility timeout must not keep every deleted message's entry for 12 h.
        Amortised O(1): runs when the heap doubled since the last compaction."""
        live = []
        for entry in self._timers:
            due, _, obj, q, count = entry
            if q is None:
                if not obj.done:
                    live.append(entry)
            elif (not q.deleted and obj.visible_at_ms == due and obj.receive_count == count
                  and obj.state in (DELAYED, INFLIGHT)):
                live.append(entry)
        heapq.heapify(live)
        self._timers = live
        self._timers_compact_at = max(2 * len(live), self.config.timers_compact_min)

    def _mark_dirty(self, q: Queue) -> None:
        if q.waiter_count:
            self._dirty[q.queue_id] = q

    def _serve_dirty(self, now_ms: int) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        for q in dirty.values():
            if not q.deleted:
                self._serve(q, now_ms)

    def _serve(self, q: Queue, now_ms: int) -> None:
        """Answer parked long polls in arrival order while messages are ready."""
        while q.waiter_count and q.has_ready():
            w = q.waiters.popleft()
            if w.done:
                continue
            msgs, sync = self._receive_now(q, w.max_count, w.visibility_ms, w.delete, w.attempt_id, now_ms)
            if not msgs:
                q.waiters.appendleft(w)
                break
            w.done = True
            q.waiter_count -= 1
            self._waiters.pop(w.waiter_id, None)
            self._deliveries.append(Delivery(w.waiter_id, msgs, sync))

    def _expire_waiter(self, w: Waiter) -> None:
        if w.done:
            return
        w.done = True
        w.queue.waiter_count -= 1
        self._waiters.pop(w.waiter_id, None)
        self._deliveries.append(Delivery(w.waiter_id, (), False))

    def _sweep(self, now_ms: int) -> None:
        """Retention (drop messages older than MessageRetentionPeriod, in flight or not), the
        FIFO dedup window and receive-attempt ids. Bounded per call."""
        budget = self.config.tick_work_max
        for q in list(self._queues.values()):
            cutoff = now_ms - q.retention_ms
            while q.messages and budget > 0:
                m = next(iter(q.messages.values()))
                if m.sent_ms > cutoff:
                    break
                q.scheduled.pop(m.message_id, None)
                self._drop(q, m)
                budget -= 1
            late = q.late
            while late and late[0][0] <= cutoff and budget > 0:
                m = q.messages.get(heapq.heappop(late)[1])
                if m is not None:
                    q.scheduled.pop(m.message_id, None)
                    self._drop(q, m)
                budget -= 1
            while q.dedup and budget > 0:
                key, entry = next(iter(q.dedup.items()))
                if entry[2] > now_ms:
                    break
                del q.dedup[key]
                budget -= 1
            while q.attempts and budget > 0:
                key, entry = next(iter(q.attempts.items()))
                if entry[0] > now_ms:
                    break
                del q.attempts[key]
                budget -= 1

    # ================================================================ observability
    def stats(self) -> EngineStats:
        qs = self._queues.values()
        return EngineStats(len(self._queues), sum(len(q.messages) for q in qs),
                           sum(q.counts[READY] for q in qs), sum(q.counts[INFLIGHT] for q in qs),
                           sum(q.counts[DELAYED] for q in qs), sum(q.counts[PENDING] for q in qs),
                           sum(q.waiter_count for q in qs), self._usage.bytes)

    def queue_stats(self) -> dict[str, dict[str, int]]:
        return {q.name: {"depth_messages": q.counts[READY] + q.counts[PENDING],
                         "inflight_messages": q.counts[INFLIGHT],
                         "delayed_messages": q.counts[DELAYED], "waiters": q.waiter_count,
                         "size_bytes": q.bytes} for q in self._queues.values()}

    def check_invariants(self) -> None:
        self._check_invariants()

    def _check_invariants(self) -> None:
        total = count = 0
        for q in self._queues.values():
            q.check()
            total += q.bytes
            count += len(q.messages)
            assert q.waiter_count == sum(1 for w in q.waiters if not w.done), q.name
        assert total == self._usage.bytes, (total, self._usage.bytes)
        assert count == self._usage.count, (count, self._usage.count)

    def persistent_state(self) -> dict:
        """A comparable view of everything that must survive a restart (tests)."""
        out = {}
        for q in self._queues.values():
            msgs = {} if q.durability == "memory" else {
                m.message_id: (m.body, m.receive_count, m.visible_at_ms, m.group_id, m.sent_ms)
                for m in q.messages.values() if m.state != PENDING}
            out[q.name] = (q.attrs, q.tags, msgs, {k: v[0] for k, v in q.dedup.items()})
        return out
