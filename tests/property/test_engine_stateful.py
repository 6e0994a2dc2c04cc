"""The queue engine against the reference model (tests/sim/model.py), as hypothesis state machines.

Method: `RuleBasedStateMachine`s drive the sans-IO engine through `Harness` (virtual clock,
in-memory log) and the naive model side by side: sends with delays, receives with random
visibility, deletes with current and stale receipts, visibility changes, nacks (delay 0, a delay,
or the queue's redelivery backoff; with and without a failure reason), clock jumps that fire
visibility/delay/retention, dead-letter moves, and crash-restarts (snapshot + replay). After every
step the engine's counts must equal the model's and its own invariants must hold. Redrive (a
move task) must return every dead-lettered message to its source exactly once; a nack reason
travels with the message (qnode:FailureReason) into the DLQ.
The FIFO machine adds: several consumers each holding their own receipts (stale after a
redelivery), per-group order, group blocking while in flight, exactly-once as DESIGN.md defines
it (a dedup id enqueued at most once in its window, also across restarts; a deleted message never
delivered again), and a FIFO DLQ: a message moves after exactly maxReceiveCount receives and the
DLQ hands its dead letters out per group in source order."""

from __future__ import annotations

import json

import pytest

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from qnode.backend.engine import EngineConfig
from qnode.frontend.api import SendEntry
from qnode.protocol.errors import InvalidParameter, MessageNotInflight
from tests.sim.model import ModelQueue
from tests.unit.backend.harness import Harness

RETENTION_MS = 60_000
MAX_RECEIVES = 3
CONFIG = EngineConfig(sweep_interval_ms=1, timers_compact_min=16)   # exercise heap compaction
BACKOFF = "1,5,30"                       # qnode:RedeliveryBackoff: a nack without delay uses it
BACKOFF_MS = (1_000, 5_000, 30_000)
NACK_DELAYS = st.sampled_from([None, 0, 0, 700, 3_000])
NACK_REASONS = st.sampled_from([None, "boom", "timeout: upstream 503", "x" * 1_500])
FIFO, FIFO_DLQ = "f.fifo", "dlq.fifo"
FIFO_MAX_RECEIVES = 2
CONSUMERS = ["c0", "c1", "c2"]
SETTINGS = settings(max_examples=100, stateful_step_count=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
SLOW_SETTINGS = settings(SETTINGS, max_examples=1_000, stateful_step_count=80)   # -m slow


def recent_or_any(receipts: list) -> st.SearchStrategy:
    """Mostly one of the latest receipts (likely still current), sometimes any (likely stale)."""
    return st.one_of(st.sampled_from(receipts[-3:]), st.sampled_from(receipts))


def check_nack(h: Harness, name: str, receipt: str, delay: int | None, reason: str | None,
               expected: str, model: ModelQueue, mid: str) -> None:
    """Nack through the engine; the model said "ok" | "invalid" | "not_inflight". After an "ok"
    the message's new visibility time and failure reason are the model's."""
    try:
        h.call("nack", name, receipt, delay, reason, h.now)
    except InvalidParameter:
        assert expected == "invalid", expected
    except MessageNotInflight:
        assert expected == "not_inflight", expected
    else:
        assert expected == "ok", expected
        [m] = [m for m in h.engine._queues[name].messages.values() if m.message_id == mid]
        assert (m.visible_at_ms, m.reason) == (model.messages[mid].visible_at_ms, model.messages[mid].reason)


class StandardQueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(CONFIG)
        self.h.create("dlq")
        policy = json.dumps({"deadLetterTargetArn": self.h.engine.queue_arn("dlq"),
                             "maxReceiveCount": MAX_RECEIVES})
        self.h.create("q", {"MessageRetentionPeriod": str(RETENTION_MS // 1000),
                            "RedrivePolicy": policy, "qnode:RedeliveryBackoff": BACKOFF})
        self.model = ModelQueue(RETENTION_MS)
        self.dead: set[str] = set()
        self.dead_sent_ms: dict[str, tuple[bytes, int]] = {}
        self.receipts: list[tuple[str, str, int]] = []     # (receipt, message id, count)
        self.n = 0

    @initialize(count=st.integers(3, 8))
    def backlog(self, count: int) -> None:
        """Start with a backlog so that receives (and so nacks and dead letters) happen early."""
        self.send(None, min(count, 4))
        self.send(0, count - min(count, 4))

    @rule(delay=st.sampled_from([None, 0, 1_000, 5_000]), count=st.integers(1, 3))
    def send(self, delay: int | None, count: int) -> None:
        if not count:
            return
        entries = [SendEntry(b"m%d" % (self.n + i), delay_ms=delay, entry_id=str(i)) for i in range(count)]
        self.n += count
        for entry, result in zip(entries, self.h.send("q", *entries)):
            self.model.send(result.message_id, entry.body, self.h.now, delay or 0)

    @rule(n=st.integers(1, 10), vis=st.sampled_from([0, 500, 2_000, 30_000]))
    def receive(self, n: int, vis: int) -> None:
        before = {m.message_id for m in self.model.visible(self.h.now)}
        got = self.h.recv("q", n, vis_ms=vis)
        seen = {m.message_id for m in got}
        assert seen <= before
        for m in got:
            count = self.model.receive(m.message_id, self.h.now, vis)
            assert m.system["ApproximateReceiveCount"] == str(count)
            assert m.system.get("qnode:FailureReason") == self.model.messages[m.message_id].reason
            assert count <= MAX_RECEIVES
            self.receipts.append((m.receipt, m.message_id, count))
        self._sync_dead_letters()
        eligible = [mid for mid in before if self.model.messages.get(mid) is not None
                    and mid not in seen]
        assert len(got) == n or not eligible, "receive returned fewer than it could"

    def _sync_dead_letters(self) -> None:
        present = {m.message_id for m in self.h.engine._queues["q"].messages.values()}
        dlq = {m.message_id for m in self.h.engine._queues["dlq"].messages.values()}
        for mid in [mid for mid in self.model.messages if mid not in present]:
            gone = self.model.messages[mid]
            assert gone.receive_count == MAX_RECEIVES
            assert mid in dlq
            [copy] = [m for m in self.h.engine._queues["dlq"].messages.values() if m.message_id == mid]
            assert copy.reason == gone.reason        # the last nack reason travels to the DLQ
            del self.model.messages[mid]
            self.dead.add(mid)
            self.dead_sent_ms[mid] = (gone.body, gone.sent_ms)
        assert dlq == self.dead

    @precondition(lambda self: self.receipts)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        receipt, mid, count = data.draw(st.sampled_from(self.receipts))
        assert self.h.delete("q", receipt) == [None]
        self.model.delete(mid, count)

    @precondition(lambda self: self.receipts)
    @rule(data=st.data(), vis=st.sampled_from([0, 1_000, 10_000]))
    def change_visibility(self, data: st.DataObject, vis: int) -> None:
        receipt, mid, count = data.draw(st.sampled_from(self.receipts))
        [result] = self.h.call("change_visibility", "q", [(receipt, vis)], self.h.now)
        expected = self.model.change_visibility(mid, count, vis, self.h.now)
        if expected == "ok":
            assert result is None
        elif expected == "invalid":
            assert isinstance(result, InvalidParameter)
        else:
            assert isinstance(result, MessageNotInflight)

    @precondition(lambda self: self.receipts)
    @rule(data=st.data(), delay=NACK_DELAYS, reason=NACK_REASONS)
    def nack(self, data: st.DataObject, delay: int | None, reason: str | None) -> None:
        receipt, mid, count = data.draw(recent_or_any(self.receipts))
        expected = self.model.nack(mid, count, delay, reason, self.h.now, BACKOFF_MS)
        check_nack(self.h, "q", receipt, delay, reason, expected, self.model, mid)

    @rule(ms=st.sampled_from([1, 499, 500, 1_000, 2_000, 5_000, 30_000, 61_000]))
    def advance(self, ms: int) -> None:
        self.h.advance(ms)
        self.model.expire(self.h.now)
        self.dead = {mid for mid in self.dead
                     if any(m.message_id == mid for m in self.h.engine._queues["dlq"].messages.values())}

    @precondition(lambda self: self.dead)
    @rule(rate=st.integers(1, 4))
    def redrive(self, rate: int) -> None:
        """A move task returns every dead-lettered message to its source exactly once."""
        handle = self.h.call("start_move_task", "dlq", None, None, self.h.now)
        for _ in range(len(self.dead) + 2):
            if not self.h.call("move_step", handle, rate, self.h.now):
                break
        [task] = self.h.engine.list_move_tasks("dlq", 1)
        assert task.status == "COMPLETED" and task.moved_count == len(self.dead)
        src = [m for m in self.h.engine._queues["q"].messages.values() if m.message_id in self.dead]
        # a copy keeps its SentTimestamp: one already past the source's retention is dropped
        alive = {mid for mid in self.dead if self.dead_sent_ms[mid][1] + RETENTION_MS > self.h.now}
        assert sorted(m.message_id for m in src) == sorted(alive)
        for mid in alive:
            body, sent_ms = self.dead_sent_ms[mid]
            self.model.send(mid, body, sent_ms)
            self.model.messages[mid].visible_at_ms = self.h.now
        # Receipts from before the move name the old copy: stale from now on (never match).
        self.receipts = [(r, mid, -1 if mid in self.dead else c) for r, mid, c in self.receipts]
        self.dead = set()
        assert not self.h.engine._queues["dlq"].messages

    @rule()
    def restart(self) -> None:
        before = self.h.engine.persistent_state()
        if self.n % 2:
            self.h.take_checkpoint()
        self.h.restart()
        assert self.h.engine.persistent_state() == before

    @invariant()
    def counts_match_model(self) -> None:
        self.h.engine.check_invariants()
        now = self.h.now
        assert self.h.counts("q") == (len(self.model.visible(now)), len(self.model.inflight(now)),
                                      len(self.model.delayed(now)))


class FifoQueueMachine(RuleBasedStateMachine):
    """Several consumers share one FIFO queue with a FIFO DLQ (maxReceiveCount FIFO_MAX_RECEIVES).

    Each consumer keeps the receipts it was given; only the holder acks or nacks with them, and a
    receipt goes stale when the message is redelivered (to anyone). Independent ledgers (not the
    model) check exactly-once as DESIGN.md defines it: a deleted message is never delivered
    again, a dedup id is enqueued at most once per window, a dead-lettered message was received
    exactly FIFO_MAX_RECEIVES times and never comes back from the source."""

    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(CONFIG)
        retention = str(RETENTION_MS // 1000)
        self.h.create(FIFO_DLQ, {"FifoQueue": "true", "MessageRetentionPeriod": retention})
        policy = json.dumps({"deadLetterTargetArn": self.h.engine.queue_arn(FIFO_DLQ),
                             "maxReceiveCount": FIFO_MAX_RECEIVES})
        self.h.create(FIFO, {"FifoQueue": "true", "MessageRetentionPeriod": retention,
                             "RedrivePolicy": policy, "qnode:RedeliveryBackoff": BACKOFF})
        self.source_arn = self.h.engine.queue_arn(FIFO)
        self.model = ModelQueue(RETENTION_MS, fifo=True)
        self.dlq = ModelQueue(RETENTION_MS, fifo=True)
        self.held: dict[str, list[tuple[str, str, int]]] = {c: [] for c in CONSUMERS}
        self.deleted: set[str] = set()                 # acked: never delivered again
        self.dead: set[str] = set()                    # moved to the DLQ: never delivered from FIFO again
        self.deliveries: dict[str, int] = {}           # message id -> deliveries seen by consumers
        self.enqueued: dict[str, list[int]] = {}       # dedup key -> times it was enqueued
        self.n = 0

    @rule(batch=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 15)),
                         min_size=1, max_size=4))
    def send(self, batch: list[tuple[str, int]]) -> None:
        self._send(batch)

    @initialize(batch=st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 15)),
                               min_size=4, max_size=8))
    def backlog(self, batch: list[tuple[str, int]]) -> None:
        """Start with a backlog so that receives (and so dead letters) happen early."""
        self._send(batch[:4])
        self._send(batch[4:])

    def _send(self, batch: list[tuple[str, int]]) -> None:
        """One SendMessageBatch; a key repeated inside the batch is a duplicate of its first use."""
        if not batch:
            return
        now = self.h.now
        entries = [SendEntry(b"m%d" % (self.n + i), group_id=g, dedup_id=str(d), entry_id=str(i))
                   for i, (g, d) in enumerate(batch)]
        self.n += len(batch)
        for (group, dedup), result in zip(batch, self.h.send(FIFO, *entries)):
            key = str(dedup)
            original = self.model.dedup_hit(key, now)
            if original is not None:
                assert result.duplicate and result.message_id == original
                continue
            assert not result.duplicate
            times = self.enqueued.setdefault(key, [])
            assert all(t + CONFIG.dedup_window_ms <= now for t in times), "dedup id enqueued twice in its window"
            times.append(now)
            self.model.send(result.message_id, b"", now, 0, group)
            self.model.remember(key, result.message_id, now, CONFIG.dedup_window_ms)

    @rule(consumer=st.sampled_from(CONSUMERS), n=st.integers(1, 10),
          vis=st.sampled_from([0, 500, 2_000, 30_000]))
    def receive(self, consumer: str, n: int, vis: int) -> None:
        now = self.h.now
        open_groups = {g: [m.message_id for m in self.model.group_queue(g)]
                       for g in {m.group_id for m in self.model.messages.values()}
                       if not self.model.group_blocked(g, now)}
        deliverable = sum(1 for ids in open_groups.values() for mid in ids
                          if self.model.messages[mid].receive_count < FIFO_MAX_RECEIVES)
        got = self.h.recv(FIFO, n, vis_ms=vis)
        assert len(got) == min(n, deliverable)
        moved = self._sync_dead_letters()
        touched: dict[str, list[str]] = {}
        for mid in moved:
            touched.setdefault(self.dlq.messages[mid].group_id, []).append(mid)
        for m in got:
            assert m.message_id not in self.deleted, "a deleted message was delivered again"
            assert m.message_id not in self.dead, "a dead-lettered message was delivered from the source"
            touched.setdefault(m.system["MessageGroupId"], []).append(m.message_id)
        for group, ids in touched.items():   # dead letters first (they head their group), then deliveries
            assert group in open_groups, group
            assert ids == open_groups[group][:len(ids)], (group, ids, open_groups[group])
        for m in got:
            mm = self.model.messages[m.message_id]
            assert m.system.get("qnode:FailureReason") == mm.reason
            count = self.model.receive(m.message_id, now, vis)
            assert m.system["ApproximateReceiveCount"] == str(count)
            self.deliveries[m.message_id] = self.deliveries.get(m.message_id, 0) + 1
            assert self.deliveries[m.message_id] == count
            self.held[consumer].append((m.receipt, m.message_id, count))

    def _sync_dead_letters(self) -> list[str]:
        """Messages the last receive moved to the DLQ, in DLQ order; each was received exactly
        FIFO_MAX_RECEIVES times and is appended to its DLQ group in source order."""
        dlq_msgs = sorted(self.h.engine._queues[FIFO_DLQ].messages.values(), key=lambda m: m.seq)
        moved = [m for m in dlq_msgs if m.message_id not in self.dlq.messages
                 and m.message_id not in self.dead]
        for copy in moved:
            mid = copy.message_id
            gone = self.model.messages.pop(mid)
            assert gone.receive_count == FIFO_MAX_RECEIVES == self.deliveries.get(mid)
            assert copy.receive_count == 0 and copy.dlq_source_arn == self.source_arn
            assert copy.reason == gone.reason and copy.sent_ms == gone.sent_ms
            self.dlq.send(mid, b"", gone.sent_ms, 0, gone.group_id)
            self.dlq.messages[mid].visible_at_ms = self.h.now
            self.dead.add(mid)
            self.dlq.messages[mid].reason = gone.reason
        return [m.message_id for m in moved]

    @precondition(lambda self: self.dlq.messages)
    @rule(n=st.integers(1, 10))
    def drain_dead_letters(self, n: int) -> None:
        """The DLQ hands dead letters out per group in the order they died, then they are acked."""
        now = self.h.now
        expected = {g: [m.message_id for m in self.dlq.group_queue(g)]
                    for g in {m.group_id for m in self.dlq.messages.values()}}
        got = self.h.recv(FIFO_DLQ, n, vis_ms=30_000)
        assert len(got) == min(n, len(self.dlq.messages))
        by_group: dict[str, list[str]] = {}
        for m in got:
            by_group.setdefault(m.system["MessageGroupId"], []).append(m.message_id)
            assert m.system["DeadLetterQueueSourceArn"] == self.source_arn
            assert m.system.get("qnode:FailureReason") == self.dlq.messages[m.message_id].reason
            assert m.system["ApproximateReceiveCount"] == "1"
        for group, ids in by_group.items():
            assert ids == expected[group][:len(ids)], (group, ids, expected[group])
        assert self.h.delete(FIFO_DLQ, *(m.receipt for m in got)) == [None] * len(got)
        for m in got:
            assert self.dlq.delete(m.message_id, self.dlq.receive(m.message_id, now, 30_000))

    @precondition(lambda self: any(self.held.values()))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        consumer = data.draw(st.sampled_from([c for c in CONSUMERS if self.held[c]]))
        receipt, mid, count = data.draw(st.sampled_from(self.held[consumer]))
        assert self.h.delete(FIFO, receipt) == [None]
        if self.model.delete(mid, count):
            self.deleted.add(mid)
        self.held[consumer].remove((receipt, mid, count))

    @precondition(lambda self: any(self.held.values()))
    @rule(data=st.data(), delay=NACK_DELAYS, reason=NACK_REASONS)
    def nack(self, data: st.DataObject, delay: int | None, reason: str | None) -> None:
        consumer = data.draw(st.sampled_from([c for c in CONSUMERS if self.held[c]]))
        receipt, mid, count = data.draw(recent_or_any(self.held[consumer]))
        expected = self.model.nack(mid, count, delay, reason, self.h.now, BACKOFF_MS)
        check_nack(self.h, FIFO, receipt, delay, reason, expected, self.model, mid)

    @rule(ms=st.sampled_from([1, 500, 700, 1_000, 2_000, 30_000, 61_000, 299_999, 300_000]))
    def advance(self, ms: int) -> None:
        self.h.advance(ms)
        self.model.expire(self.h.now)
        self.dlq.expire(self.h.now)

    @rule(checkpoint=st.booleans())
    def restart(self, checkpoint: bool) -> None:
        before = self.h.engine.persistent_state()
        if checkpoint:
            self.h.take_checkpoint()
        self.h.restart()
        assert self.h.engine.persistent_state() == before

    @invariant()
    def counts_match_model(self) -> None:
        self.h.engine.check_invariants()
        now = self.h.now
        assert self.h.counts(FIFO) == (len(self.model.visible(now)), len(self.model.inflight(now)), 0)
        assert self.h.counts(FIFO_DLQ) == (len(self.dlq.visible(now)), len(self.dlq.inflight(now)), 0)


TestStandardQueue = StandardQueueMachine.TestCase
TestStandardQueue.settings = SETTINGS
TestFifoQueue = FifoQueueMachine.TestCase
TestFifoQueue.settings = SETTINGS


@pytest.mark.slow
class TestStandardQueueLong(StandardQueueMachine.TestCase):
    settings = SLOW_SETTINGS


@pytest.mark.slow
class TestFifoQueueLong(FifoQueueMachine.TestCase):
    settings = SLOW_SETTINGS
