"""The queue engine against the reference model (tests/sim/model.py), as hypothesis state machines.

Method: `RuleBasedStateMachine`s drive the sans-IO engine through `Harness` (virtual clock,
in-memory log) and the naive model side by side: sends with delays, receives with random
visibility, deletes with current and stale receipts, visibility changes, clock jumps that fire
visibility/delay/retention, dead-letter moves, and crash-restarts (snapshot + replay). After every
step the engine's counts must equal the model's and its own invariants must hold. Redrive (a
move task) must return every dead-lettered message to its source exactly once.
The FIFO machine adds: per-group order, group blocking while in flight, exactly-once sends within
the dedup window."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from qnode.backend.engine import EngineConfig
from qnode.frontend.api import SendEntry
from qnode.protocol.errors import InvalidParameter, MessageNotInflight
from tests.sim.model import ModelQueue
from tests.unit.backend.harness import Harness

RETENTION_MS = 60_000
MAX_RECEIVES = 3
CONFIG = EngineConfig(sweep_interval_ms=1, timers_compact_min=16)   # exercise heap compaction
SETTINGS = settings(max_examples=40, stateful_step_count=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


class StandardQueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(CONFIG)
        self.h.create("dlq")
        policy = json.dumps({"deadLetterTargetArn": self.h.engine.queue_arn("dlq"),
                             "maxReceiveCount": MAX_RECEIVES})
        self.h.create("q", {"MessageRetentionPeriod": str(RETENTION_MS // 1000),
                            "RedrivePolicy": policy})
        self.model = ModelQueue(RETENTION_MS)
        self.dead: set[str] = set()
        self.dead_sent_ms: dict[str, tuple[bytes, int]] = {}
        self.receipts: list[tuple[str, str, int]] = []     # (receipt, message id, count)
        self.n = 0

    @rule(delay=st.sampled_from([None, 0, 1_000, 5_000]), count=st.integers(1, 3))
    def send(self, delay: int | None, count: int) -> None:
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
    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(CONFIG)
        self.h.create("f.fifo", {"FifoQueue": "true", "MessageRetentionPeriod": str(RETENTION_MS // 1000)})
        self.model = ModelQueue(RETENTION_MS, fifo=True)
        self.receipts: list[tuple[str, str, int]] = []
        self.n = 0

    @rule(group=st.sampled_from(["a", "b", "c"]), dedup=st.integers(0, 15))
    def send(self, group: str, dedup: int) -> None:
        key = str(dedup)
        [result] = self.h.send("f.fifo", SendEntry(b"m%d" % self.n, group_id=group, dedup_id=key))
        self.n += 1
        original = self.model.dedup_hit(key, self.h.now)
        if original is not None:
            assert result.duplicate and result.message_id == original
            return
        assert not result.duplicate
        self.model.send(result.message_id, b"", self.h.now, 0, group)
        self.model.remember(key, result.message_id, self.h.now, CONFIG.dedup_window_ms)

    @rule(n=st.integers(1, 10), vis=st.sampled_from([0, 500, 2_000, 30_000]))
    def receive(self, n: int, vis: int) -> None:
        now = self.h.now
        receivable = self.model.fifo_receivable(now)
        got = self.h.recv("f.fifo", n, vis_ms=vis)
        assert len(got) == min(n, receivable)
        by_group: dict[str, list[str]] = {}
        for m in got:
            by_group.setdefault(m.system["MessageGroupId"], []).append(m.message_id)
        for group, ids in by_group.items():
            assert not self.model.group_blocked(group, now)
            expected = [m.message_id for m in self.model.group_queue(group)][:len(ids)]
            assert ids == expected, (group, ids, expected)
        for m in got:
            count = self.model.receive(m.message_id, now, vis)
            self.receipts.append((m.receipt, m.message_id, count))

    @precondition(lambda self: self.receipts)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        receipt, mid, count = data.draw(st.sampled_from(self.receipts))
        assert self.h.delete("f.fifo", receipt) == [None]
        self.model.delete(mid, count)

    @rule(ms=st.sampled_from([1, 500, 2_000, 30_000, 61_000, 300_000]))
    def advance(self, ms: int) -> None:
        self.h.advance(ms)
        self.model.expire(self.h.now)

    @rule()
    def restart(self) -> None:
        before = self.h.engine.persistent_state()
        self.h.restart()
        assert self.h.engine.persistent_state() == before

    @invariant()
    def counts_match_model(self) -> None:
        self.h.engine.check_invariants()
        now = self.h.now
        assert self.h.counts("f.fifo") == (len(self.model.visible(now)), len(self.model.inflight(now)), 0)


TestStandardQueue = StandardQueueMachine.TestCase
TestStandardQueue.settings = SETTINGS
TestFifoQueue = FifoQueueMachine.TestCase
TestFifoQueue.settings = SETTINGS
