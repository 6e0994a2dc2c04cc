"""FIFO queues, dead-letter queues and message move tasks in the sans-IO engine (issue #4).

Method: as test_engine_standard.py — `Harness` with a virtual clock; each test states one SQS
rule (FIFO ordering and group blocking, the 5-minute dedup window, DLQ after exactly
maxReceiveCount receives, redrive back to the source) and checks it through the engine API."""

from __future__ import annotations

import json

import pytest

from qnode.frontend.api import SendEntry
from qnode.protocol.errors import InvalidParameter, MissingParameter, ResourceNotFound

from .harness import Harness

FIFO = {"FifoQueue": "true"}


@pytest.fixture
def h() -> Harness:
    h = Harness()
    h.create("f.fifo", {**FIFO, "ContentBasedDeduplication": "true"})
    return h


def test_fifo_needs_group_and_dedup(h: Harness) -> None:
    h.create("n.fifo", FIFO)
    [err] = h.send("n.fifo", SendEntry(b"x", dedup_id="d"))
    assert isinstance(err, MissingParameter)
    [err] = h.send("n.fifo", SendEntry(b"x", group_id="g"))
    assert isinstance(err, InvalidParameter)
    [err] = h.send("n.fifo", SendEntry(b"x", group_id="g", dedup_id="d", delay_ms=5))
    assert isinstance(err, InvalidParameter)
    [ok] = h.send("n.fifo", SendEntry(b"x", group_id="g", dedup_id="d"))
    assert ok.sequence_number is not None and ok.sequence_number.isdigit()


def test_fifo_strict_order_and_group_blocked_while_in_flight(h: Harness) -> None:
    for i in range(4):
        h.send_body("f.fifo", b"a%d" % i, group_id="A")
    h.send_body("f.fifo", b"b0", group_id="B")
    first = h.recv("f.fifo", 2)
    assert [m.body for m in first] == [b"a0", b"a1"]
    second = h.recv("f.fifo", 10)
    assert [m.body for m in second] == [b"b0"]      # A is blocked: a0, a1 in flight
    h.delete("f.fifo", first[0].receipt)
    assert h.recv("f.fifo", 10) == []                # a1 still in flight
    h.advance(30_000)                                # a1 (and b0) return; a1 first again
    assert [m.body for m in h.recv("f.fifo", 10)] == [b"a1", b"a2", b"a3", b"b0"]


def test_fifo_sequence_numbers_increase(h: Harness) -> None:
    seqs = [int(r.sequence_number) for r in h.send("f.fifo", *[
        SendEntry(b"%d" % i, group_id="g", entry_id=str(i)) for i in range(5)])]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5


def test_fifo_round_robin_does_not_starve_small_groups(h: Harness) -> None:
    for i in range(50):
        h.send_body("f.fifo", b"big%d" % i, group_id="big")
    h.send_body("f.fifo", b"small", group_id="small")
    got = h.recv("f.fifo", 10)
    h.delete("f.fifo", *[m.receipt for m in got])
    got2 = h.recv("f.fifo", 10)
    assert b"small" in [m.body for m in got + got2]


def test_dedup_window_holds_after_delete_and_expires_after_5_minutes(h: Harness) -> None:
    [r1] = h.send("f.fifo", SendEntry(b"same", group_id="g"))
    [m] = h.recv("f.fifo")
    h.delete("f.fifo", m.receipt)
    h.advance(299_000)
    [r2] = h.send("f.fifo", SendEntry(b"same", group_id="g"))
    assert r2.duplicate and r2.message_id == r1.message_id
    assert h.recv("f.fifo") == []
    h.advance(2_000)
    [r3] = h.send("f.fifo", SendEntry(b"same", group_id="g"))
    assert not r3.duplicate and r3.message_id != r1.message_id


def test_dedup_scope_message_group_changes_the_key(h: Harness) -> None:
    h.create("s.fifo", {**FIFO, "DeduplicationScope": "messageGroup",
                        "FifoThroughputLimit": "perMessageGroupId"})
    [a] = h.send("s.fifo", SendEntry(b"x", group_id="g1", dedup_id="d"))
    [b] = h.send("s.fifo", SendEntry(b"x", group_id="g2", dedup_id="d"))
    [c] = h.send("s.fifo", SendEntry(b"x", group_id="g1", dedup_id="d"))
    assert not a.duplicate and not b.duplicate and c.duplicate
    [d] = h.send("f.fifo", SendEntry(b"y", group_id="g1", dedup_id="d"))
    [e] = h.send("f.fifo", SendEntry(b"z", group_id="g2", dedup_id="d"))
    assert not d.duplicate and e.duplicate


def test_receive_request_attempt_id_returns_same_batch(h: Harness) -> None:
    for i in range(3):
        h.send_body("f.fifo", b"%d" % i, group_id="g")
    first = h.recv("f.fifo", 10, attempt_id="att")
    again = h.recv("f.fifo", 10, attempt_id="att")
    assert [m.receipt for m in again] == [m.receipt for m in first]
    assert again[0].system["ApproximateReceiveCount"] == "1"


def test_fifo_state_survives_restart_with_order(h: Harness) -> None:
    for i in range(3):
        h.send_body("f.fifo", b"%d" % i, group_id="g")
    [m0] = h.recv("f.fifo", 1, vis_ms=10_000)
    h.restart()
    assert h.recv("f.fifo") == []                      # group still blocked by m0
    h.advance(10_000)
    assert [m.body for m in h.recv("f.fifo", 10)] == [b"0", b"1", b"2"]
    [dup] = h.send("f.fifo", SendEntry(b"0", group_id="g"))
    assert dup.duplicate


def _with_dlq(h: Harness, fifo: bool = False, max_receives: int = 2) -> tuple[str, str]:
    suffix = ".fifo" if fifo else ""
    extra = {**FIFO, "ContentBasedDeduplication": "true"} if fifo else {}
    h.create("dlq" + suffix, extra)
    arn = h.engine.queue_arn("dlq" + suffix)
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": max_receives})
    h.create("src" + suffix, {**extra, "RedrivePolicy": policy})
    return "src" + suffix, "dlq" + suffix


def test_dead_letter_after_exactly_max_receive_count(h: Harness) -> None:
    src, dlq = _with_dlq(h, max_receives=2)
    mid = h.send_body(src, b"poison")
    for _ in range(2):
        [m] = h.recv(src, vis_ms=1_000)
        assert m.message_id == mid
        h.advance(1_000)
    out = h.receive(src)
    assert out.messages == ()
    assert out.sync is True
    [d] = h.recv(dlq)
    assert d.message_id == mid and d.body == b"poison"
    assert d.system["DeadLetterQueueSourceArn"] == h.engine.queue_arn(src)
    assert h.engine.list_dead_letter_source_queues(dlq) == [src]
    h.restart()
    assert h.counts(src) == (0, 0, 0)
    assert h.counts(dlq) == (0, 1, 0)


def test_nack_reason_travels_to_the_dead_letter_queue(h: Harness) -> None:
    src, dlq = _with_dlq(h, max_receives=1)
    h.send_body(src, b"x")
    [m] = h.recv(src)
    h.call("nack", src, m.receipt, 0, "bad input", h.now)
    assert h.recv(src) == []
    [d] = h.recv(dlq)
    assert d.system["qnode:FailureReason"] == "bad input"


def test_fifo_dlq_requires_fifo_target(h: Harness) -> None:
    h.create("std")
    policy = json.dumps({"deadLetterTargetArn": h.engine.queue_arn("std"), "maxReceiveCount": 1})
    with pytest.raises(InvalidParameter):
        h.create("x.fifo", {**FIFO, "RedrivePolicy": policy})
    src, dlq = _with_dlq(h, fifo=True, max_receives=1)
    h.send_body(src, b"a", group_id="g")
    h.send_body(src, b"b", group_id="g")
    [m] = h.recv(src, 1, vis_ms=1_000)
    h.advance(1_000)
    assert [x.body for x in h.recv(src, 10)] == [b"b"]   # a went to the DLQ, b follows
    assert [x.body for x in h.recv(dlq, 10)] == [b"a"]


def test_redrive_allow_policy_deny(h: Harness) -> None:
    h.create("deny", {"RedriveAllowPolicy": json.dumps({"redrivePermission": "denyAll"})})
    policy = json.dumps({"deadLetterTargetArn": h.engine.queue_arn("deny"), "maxReceiveCount": 1})
    with pytest.raises(InvalidParameter):
        h.create("s2", {"RedrivePolicy": policy})


def test_move_task_returns_every_message_once_to_its_source(h: Harness) -> None:
    src, dlq = _with_dlq(h, max_receives=1)
    ids = {h.send_body(src, b"%d" % i) for i in range(5)}
    for m in h.recv(src, 10, vis_ms=1_000):
        pass
    h.advance(1_000)
    assert h.recv(src, 10) == []
    assert h.counts(dlq) == (5, 0, 0)
    handle = h.call("start_move_task", dlq, None, 2, h.now)
    with pytest.raises(InvalidParameter):
        h.call("start_move_task", dlq, None, None, h.now)
    running = True
    steps = 0
    while running:
        running = h.call("move_step", handle, 2, h.now)
        steps += 1
    assert steps == 3
    [task] = h.engine.list_move_tasks(dlq, 1)
    assert task.status == "COMPLETED" and task.moved_count == 5
    back = h.recv(src, 10)
    assert {m.message_id for m in back} == ids
    assert h.counts(dlq) == (0, 0, 0)
    with pytest.raises(ResourceNotFound):
        h.call("cancel_move_task", handle)


def test_move_task_cancel_returns_moved_count(h: Harness) -> None:
    src, dlq = _with_dlq(h, max_receives=1)
    for i in range(4):
        h.send_body(src, b"%d" % i)
    h.recv(src, 10, vis_ms=1_000)
    h.advance(1_000)
    h.recv(src, 10)
    handle = h.call("start_move_task", dlq, src, 1, h.now)
    h.call("move_step", handle, 1, h.now)
    assert h.call("cancel_move_task", handle) == 1
    assert h.engine.list_move_tasks(dlq, 1)[0].status == "CANCELLED"


def test_per_group_throughput_needs_group_dedup_scope(h: Harness) -> None:
    from qnode.protocol.errors import InvalidAttributeName, InvalidAttributeValue
    with pytest.raises(InvalidAttributeValue):
        h.create("t.fifo", {**FIFO, "FifoThroughputLimit": "perMessageGroupId"})
    with pytest.raises(InvalidAttributeName):
        h.create("std2", {"ContentBasedDeduplication": "true"})
    h.create("t.fifo", {**FIFO, "FifoThroughputLimit": "perMessageGroupId",
                        "DeduplicationScope": "messageGroup"})
    assert h.attrs("t.fifo")["FifoThroughputLimit"] == "perMessageGroupId"


def test_attempt_id_does_not_replay_a_batch_that_was_redelivered(h: Harness) -> None:
    h.send_body("f.fifo", b"x", group_id="g")
    [first] = h.recv("f.fifo", 10, vis_ms=1_000, attempt_id="att")
    h.advance(1_000)
    [second] = h.recv("f.fifo", 10, vis_ms=60_000)
    assert second.system["ApproximateReceiveCount"] == "2"
    assert h.recv("f.fifo", 10, attempt_id="att") == []      # not the other consumer's batch
    assert first.receipt != second.receipt


def test_redrive_allow_policy_by_queue_admits_only_listed_sources(h: Harness) -> None:
    allowed = h.engine.config.arn("ok-src")
    h.create("byq", {"RedriveAllowPolicy": json.dumps(
        {"redrivePermission": "byQueue", "sourceQueueArns": [allowed]})})
    policy = json.dumps({"deadLetterTargetArn": h.engine.queue_arn("byq"), "maxReceiveCount": 2})
    h.create("ok-src", {"RedrivePolicy": policy})
    with pytest.raises(InvalidParameter):
        h.create("other-src", {"RedrivePolicy": policy})
    assert h.engine.list_dead_letter_source_queues("byq") == ["ok-src"]


def test_fifo_receive_and_delete_keeps_group_order_and_never_redelivers(h: Harness) -> None:
    for i in range(3):
        h.send_body("f.fifo", b"%d" % i, group_id="g")
    assert [m.body for m in h.recv("f.fifo", 2, delete=True)] == [b"0", b"1"]
    assert [m.body for m in h.recv("f.fifo", 2, delete=True)] == [b"2"]
    h.advance(60_000)
    assert h.recv("f.fifo", 10) == []
    h.restart()
    assert h.counts("f.fifo") == (0, 0, 0)
