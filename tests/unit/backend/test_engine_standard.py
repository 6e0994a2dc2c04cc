"""Standard-queue semantics of the sans-IO engine (issue #2), one behaviour per test.

Method: drive `Engine` through `Harness` with a virtual wall clock (`now_ms`) and an in-memory
log; durability is signalled explicitly where a test is about it. Expected values come from the
SQS documentation (limits, error names, attribute formats)."""

from __future__ import annotations

import json

import pytest

from qnode import limits
from qnode.backend.engine import EngineConfig
from qnode.backend.md5 import md5_of_attributes
from qnode.frontend.api import MessageAttribute, SendEntry
from qnode.protocol.errors import (
    BatchEntryIdsNotDistinct,
    BatchRequestTooLong,
    EmptyBatchRequest,
    ErrorCode,
    InvalidAttributeName,
    InvalidAttributeValue,
    InvalidParameter,
    InvalidQueueName,
    MessageNotInflight,
    OverLimit,
    PurgeQueueInProgress,
    QueueAlreadyExists,
    QueueDoesNotExist,
    QueueFull,
    ReceiptHandleIsInvalid,
    TooManyEntriesInBatch,
    TooManyWaiters,
)

from .harness import Harness


@pytest.fixture
def h() -> Harness:
    h = Harness()
    h.create("q")
    return h


def test_send_receive_delete_roundtrip(h: Harness) -> None:
    mid = h.send_body("q", b"hello", attributes={"a": MessageAttribute("String", "x")})
    [m] = h.recv("q")
    assert m.message_id == mid
    assert m.body == b"hello"
    assert m.md5_attributes == md5_of_attributes({"a": MessageAttribute("String", "x")})
    assert m.system["ApproximateReceiveCount"] == "1"
    assert m.system["SentTimestamp"] == str(h.now)
    assert m.system["ApproximateFirstReceiveTimestamp"] == str(h.now)
    assert m.system["SenderId"] == "000000000000"
    assert h.counts("q") == (0, 1, 0)
    assert h.delete("q", m.receipt) == [None]
    assert h.counts("q") == (0, 0, 0)
    h.advance(60_000)
    assert h.recv("q") == []


def test_md5_of_number_attribute_matches_sqs_reference() -> None:
    # Reference digest published with moto's SQS tests for this exact attribute.
    attrs = {"timestamp": MessageAttribute("Number", "1493147359900")}
    assert md5_of_attributes(attrs) == "235c5c510d26fb653d073faed50ae77c"


def test_message_is_not_receivable_until_durable() -> None:
    h = Harness(auto_durable=False)
    h.create("q")
    h.make_durable()
    h.send_body("q", b"x")
    assert h.recv("q") == []
    h.make_durable()
    assert [m.body for m in h.recv("q")] == [b"x"]


def test_long_poll_waiters_are_served_in_arrival_order_when_durable() -> None:
    h = Harness(auto_durable=False)
    h.create("q")
    h.make_durable()
    w1 = h.receive("q", 1, wait_ms=20_000).waiter_id
    w2 = h.receive("q", 1, wait_ms=20_000).waiter_id
    assert w1 is not None and w2 is not None
    h.send_body("q", b"a")
    h.send_body("q", b"b")
    assert h.deliveries == {}
    h.make_durable()
    assert [m.body for m in h.deliveries[w1].messages] == [b"a"]
    assert [m.body for m in h.deliveries[w2].messages] == [b"b"]


def test_long_poll_deadline_answers_empty(h: Harness) -> None:
    wid = h.receive("q", 1, wait_ms=1_000).waiter_id
    h.advance(999)
    assert wid not in h.deliveries
    h.advance(1)
    assert h.deliveries[wid].messages == ()


def test_wait_over_20s_is_invalid(h: Harness) -> None:
    with pytest.raises(InvalidParameter):
        h.receive("q", 1, wait_ms=20_001)
    with pytest.raises(InvalidParameter):
        h.receive("q", 11)


def test_too_many_waiters() -> None:
    h = Harness(EngineConfig(waiters_per_queue_max=2))
    h.create("q")
    h.receive("q", 1, wait_ms=5_000)
    h.receive("q", 1, wait_ms=5_000)
    with pytest.raises(TooManyWaiters):
        h.receive("q", 1, wait_ms=5_000)


def test_visibility_timeout_expiry_redelivers_with_higher_count(h: Harness) -> None:
    h.send_body("q", b"x")
    [m1] = h.recv("q", vis_ms=5_000)
    h.advance(4_999)
    assert h.recv("q") == []
    h.advance(1)
    [m2] = h.recv("q")
    assert m2.system["ApproximateReceiveCount"] == "2"
    assert m2.system["ApproximateFirstReceiveTimestamp"] == m1.system["ApproximateFirstReceiveTimestamp"]
    assert m2.receipt != m1.receipt


def test_stale_handle_cannot_change_visibility_and_delete_leaves_message(h: Harness) -> None:
    h.send_body("q", b"x")
    [m1] = h.recv("q", vis_ms=1_000)
    h.advance(1_000)
    [m2] = h.recv("q", vis_ms=1_000)
    [err] = h.call("change_visibility", "q", [(m1.receipt, 5_000)], h.now)
    assert isinstance(err, InvalidParameter)
    assert h.delete("q", m1.receipt) == [None]
    assert h.counts("q") == (0, 1, 0)
    assert h.delete("q", m2.receipt) == [None]
    assert h.counts("q") == (0, 0, 0)


def test_latest_handle_deletes_after_visibility_expired(h: Harness) -> None:
    h.send_body("q", b"x")
    [m] = h.recv("q", vis_ms=1_000)
    h.advance(2_000)
    assert h.counts("q") == (1, 0, 0)
    assert h.delete("q", m.receipt) == [None]
    assert h.counts("q") == (0, 0, 0)


def test_change_visibility_zero_makes_visible_and_not_inflight_errors(h: Harness) -> None:
    h.send_body("q", b"x")
    [m] = h.recv("q")
    assert h.call("change_visibility", "q", [(m.receipt, 0)], h.now) == [None]
    assert h.counts("q") == (1, 0, 0)
    [err] = h.call("change_visibility", "q", [(m.receipt, 10)], h.now)
    assert isinstance(err, MessageNotInflight)
    [err] = h.call("change_visibility", "q", [(m.receipt, 12 * 3600_000 + 1)], h.now)
    assert isinstance(err, InvalidParameter)


def test_forged_and_foreign_receipts_are_invalid(h: Harness) -> None:
    h.create("other")
    h.send_body("other", b"x")
    [m] = h.recv("other")
    forged = m.receipt[:-4] + ("AAAA" if not m.receipt.endswith("AAAA") else "BBBB")
    for bad in (forged, "garbage", "", m.receipt):
        [err] = h.delete("q", bad)
        assert isinstance(err, ReceiptHandleIsInvalid), bad


def test_per_message_and_queue_delay(h: Harness) -> None:
    h.send_body("q", b"x", delay_ms=10_000)
    assert h.counts("q") == (0, 0, 1)
    h.advance(9_999)
    assert h.recv("q") == []
    h.advance(1)
    assert len(h.recv("q")) == 1
    h.create("d", {"DelaySeconds": "5"})
    h.send_body("d", b"y")
    assert h.counts("d") == (0, 0, 1)
    h.advance(5_000)
    assert len(h.recv("d")) == 1
    # Native delays may exceed SQS's 900 s up to the retention period (4 days by default).
    h.send_body("q", b"z", delay_ms=900_001)
    with pytest.raises(AssertionError):
        h.send_body("q", b"z", delay_ms=4 * 86400_000 + 1)


def test_retention_drops_expired_messages_even_in_flight(h: Harness) -> None:
    h.create("r", {"MessageRetentionPeriod": "60"})
    h.send_body("r", b"a")
    h.recv("r", vis_ms=120_000)
    h.send_body("r", b"b")
    h.advance(61_000)
    assert h.counts("r") == (0, 0, 0)


def test_batch_level_errors(h: Harness) -> None:
    with pytest.raises(EmptyBatchRequest):
        h.call("send", "q", [], h.now)
    with pytest.raises(TooManyEntriesInBatch):
        h.call("send", "q", [SendEntry(b"x", entry_id=str(i)) for i in range(11)], h.now)
    with pytest.raises(BatchEntryIdsNotDistinct):
        h.call("send", "q", [SendEntry(b"x", entry_id="a"), SendEntry(b"y", entry_id="a")], h.now)
    with pytest.raises(BatchRequestTooLong):
        h.call("send", "q", [SendEntry(b"x" * 600_000, entry_id="a"),
                             SendEntry(b"y" * 600_000, entry_id="b")], h.now)


def test_per_entry_errors_do_not_fail_the_batch(h: Harness) -> None:
    h.call("set_queue_attributes", "q", {"MaximumMessageSize": "1024"}, h.now)
    results = h.send("q", SendEntry(b"ok", entry_id="a"), SendEntry(b"x" * 1025, entry_id="b"),
                     SendEntry(b"y", entry_id="c", attributes={"AWS.x": MessageAttribute("String", "v")}),
                     SendEntry(b"z", entry_id="d", attributes={"n": MessageAttribute("Number", "abc")}))
    assert results[0].entry_id == "a"
    assert results[1].code == ErrorCode.MESSAGE_TOO_LARGE
    assert results[2].code == ErrorCode.INVALID_PARAMETER
    assert results[3].code == ErrorCode.INVALID_PARAMETER
    assert h.counts("q") == (1, 0, 0)


@pytest.mark.parametrize("name", ["a..b", ".a", "a.", "Amazon.x", "x" * 257, "a b"])
def test_message_attribute_name_rules(h: Harness, name: str) -> None:
    [err] = h.send("q", SendEntry(b"x", attributes={name: MessageAttribute("String", "v")}))
    assert isinstance(err, InvalidParameter)


def test_too_many_message_attributes(h: Harness) -> None:
    attrs = {f"a{i}": MessageAttribute("String", "v") for i in range(11)}
    [err] = h.send("q", SendEntry(b"x", attributes=attrs))
    assert isinstance(err, InvalidParameter)
    attrs.pop("a10")
    attrs.pop("a9")
    attrs["b"] = MessageAttribute("Binary.png", binary_value=b"\x00")
    [ok] = h.send("q", SendEntry(b"x", attributes={**attrs}))
    assert ok.md5_attributes == md5_of_attributes(attrs)


def test_queue_attributes_defaults_validation_and_read_only(h: Harness) -> None:
    a = h.attrs("q")
    assert a["VisibilityTimeout"] == "30"
    assert a["MessageRetentionPeriod"] == "345600"
    assert a["MaximumMessageSize"] == "1048576"
    assert a["QueueArn"] == "arn:aws:sqs:us-east-1:000000000000:q"
    assert a["qnode:Durability"] == "fsync"
    assert int(a["CreatedTimestamp"]) == h.now // 1000
    with pytest.raises(InvalidAttributeValue):
        h.call("set_queue_attributes", "q", {"MessageRetentionPeriod": "59"}, h.now)
    with pytest.raises(InvalidAttributeName):
        h.call("set_queue_attributes", "q", {"QueueArn": "x"}, h.now)
    with pytest.raises(InvalidAttributeName):
        h.call("set_queue_attributes", "q", {"Bogus": "1"}, h.now)
    h.advance(5_000)
    h.call("set_queue_attributes", "q", {"VisibilityTimeout": "7"}, h.now)
    a = h.engine.get_queue_attributes("q", ["VisibilityTimeout", "LastModifiedTimestamp"], h.now)
    assert a == {"VisibilityTimeout": "7", "LastModifiedTimestamp": str(h.now // 1000)}


def test_create_queue_idempotent_or_already_exists(h: Harness) -> None:
    h.create("c", {"VisibilityTimeout": "10"})
    assert h.create("c", {"VisibilityTimeout": "10"}).name == "c"
    assert h.create("c").name == "c"
    with pytest.raises(QueueAlreadyExists):
        h.create("c", {"VisibilityTimeout": "11"})
    with pytest.raises(InvalidQueueName):
        h.create("bad name")
    with pytest.raises(InvalidParameter):
        h.create("x.fifo")


def test_purge_once_per_minute(h: Harness) -> None:
    for i in range(3):
        h.send_body("q", b"%d" % i)
    h.recv("q", 1)
    h.call("purge_queue", "q", h.now)
    assert h.counts("q") == (0, 0, 0)
    with pytest.raises(PurgeQueueInProgress):
        h.call("purge_queue", "q", h.now + 59_999)
    h.advance(60_000)
    h.call("purge_queue", "q", h.now)


def test_inflight_cap_is_over_limit() -> None:
    h = Harness(EngineConfig(inflight_per_queue_max=3))
    h.create("q")
    for i in range(5):
        h.send_body("q", b"%d" % i)
    assert len(h.recv("q", 10)) == 3
    with pytest.raises(OverLimit):
        h.recv("q")


def test_backlog_and_memory_caps_are_queue_full() -> None:
    h = Harness(EngineConfig(queue_backlog_count_max=2, node_memory_budget_size=100_000))
    h.create("q")
    h.send_body("q", b"a")
    h.send_body("q", b"b")
    [err] = h.send("q", SendEntry(b"c"))
    assert isinstance(err, QueueFull)
    assert err.retriable and err.retry_after_ms == 100
    h.create("big")
    [err] = h.send("big", SendEntry(b"x" * 99_000))
    assert isinstance(err, QueueFull)


def test_memory_budget_charges_each_message_its_overhead() -> None:
    # Bodies alone (3 bytes) would fit a budget of a few KiB any number of times; with the
    # per-message overhead, three 1-byte messages fill it and the fourth is refused.
    overhead = limits.message_overhead_size
    h = Harness(EngineConfig(node_memory_budget_size=3 * (overhead + 1)))
    h.create("q")
    for body in (b"a", b"b"):
        h.send_body("q", body)
    [ok] = h.send("q", SendEntry(b"c", delay_ms=0))            # the general send path
    assert not isinstance(ok, Exception), ok
    for entry in (SendEntry(b"d"), SendEntry(b"d", delay_ms=0)):     # fast path, general path
        [err] = h.send("q", entry)
        assert isinstance(err, QueueFull)
    # Deleting one message frees its body and its overhead.
    [m] = h.recv("q", 1)
    h.delete("q", m.receipt)
    h.send_body("q", b"e")


def test_tags_and_permissions_policy(h: Harness) -> None:
    h.call("tag_queue", "q", {"team": "a", "env": "dev"})
    h.call("untag_queue", "q", ["env"])
    assert h.engine.list_queue_tags("q") == {"team": "a"}
    h.call("add_permission", "q", "l1", ["111122223333"], ["SendMessage"], h.now)
    policy = json.loads(h.attrs("q")["Policy"])
    [stmt] = policy["Statement"]
    assert stmt["Sid"] == "l1"
    assert stmt["Principal"] == {"AWS": "arn:aws:iam::111122223333:root"}
    assert stmt["Action"] == "SQS:SendMessage"
    with pytest.raises(InvalidParameter):
        h.call("add_permission", "q", "l1", ["1"], ["SendMessage"], h.now)
    h.call("remove_permission", "q", "l1", h.now)
    assert "Policy" not in h.attrs("q")


def test_delete_queue_answers_waiters_and_forgets_queue(h: Harness) -> None:
    wid = h.receive("q", 1, wait_ms=10_000).waiter_id
    h.call("delete_queue", "q", h.now)
    assert h.deliveries[wid].messages == ()
    with pytest.raises(QueueDoesNotExist):
        h.recv("q")
    assert h.engine.list_queues() == []


def test_durability_attribute_memory_logs_no_messages(h: Harness) -> None:
    h.create("m", {"qnode:Durability": "memory"})
    before = len(h.log)
    h.send_body("m", b"x")
    [m] = h.recv("m")
    h.delete("m", m.receipt)
    assert len(h.log) == before
    with pytest.raises(InvalidAttributeValue):
        h.create("bad", {"qnode:Durability": "sometimes"})


def test_fair_standard_queue_round_robins_tenants(h: Harness) -> None:
    for i in range(6):
        h.send_body("q", b"a%d" % i, group_id="A")
    h.send_body("q", b"b0", group_id="B")
    h.send_body("q", b"c0", group_id="C")
    bodies = [m.body for m in h.recv("q", 3)]
    assert sorted(bodies) == [b"a0", b"b0", b"c0"]


def test_replay_and_snapshot_restore_equal_state(h: Harness) -> None:
    h.create("z", {"VisibilityTimeout": "40"}, {"t": "1"})
    ids = [h.send_body("z", b"m%d" % i) for i in range(5)]
    [m] = h.recv("z", 1)
    h.delete("z", m.receipt)
    h.recv("z", 2, vis_ms=100_000)
    h.send_body("z", b"late", delay_ms=50_000)
    expected = h.engine.persistent_state()
    assert h.recovered().persistent_state() == expected
    h.take_checkpoint()
    h.send_body("z", b"after")
    assert h.recovered().persistent_state() == h.engine.persistent_state()
    h.restart()
    assert h.counts("z") == (3, 2, 1)
    assert m.message_id == ids[0]


def test_snapshot_pieces_join_to_the_one_document_checkpoint(h: Harness) -> None:
    """`snapshot_chunks` (what the checkpoint child writes) is the documented one-document
    payload, cut into pieces of at most 1,000 messages."""
    from qnode.backend import records as rec
    h.create("z", {"VisibilityTimeout": "40"}, {"t": "1"})
    h.create("f.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"})
    for i in range(2_500):
        h.send_body("z", b"m%d" % i)
    h.send("f.fifo", SendEntry(b"g", group_id="g1"))
    h.recv("z", 3)
    e = h.engine
    pieces = list(e.snapshot_chunks())
    queues = [[q.queue_id, q.name, q.fifo, q.attrs, q.tags, q.created_ms, q.modified_ms,
               q.last_purge_ms, [rec.encode_message(m) for m in q.messages.values()],
               [[k, *v] for k, v in q.dedup.items()]] for q in e._queues.values()]
    document = rec.pack({"v": 1, "secret": e._secret, "next_seq": e._next_seq,
                         "next_qid": e._next_qid, "queues": queues,
                         "tasks": [t.encode() for t in e._tasks.values()]})
    assert b"".join(pieces) == document == e.snapshot()
    assert len(pieces) >= 2_500 // 1_000 + 4
    assert max(len(p) for p in pieces) < 1_000 * 1_200


def test_receipts_survive_restart(h: Harness) -> None:
    h.send_body("q", b"x")
    [m] = h.recv("q")
    h.restart()
    assert h.counts("q") == (0, 1, 0)
    assert h.delete("q", m.receipt) == [None]
    assert h.counts("q") == (0, 0, 0)


def test_peek_has_no_side_effects(h: Harness) -> None:
    h.send_body("q", b"x")
    before = len(h.log)
    [p] = h.engine.peek("q", 10, h.now)
    assert p.receipt is None
    assert p.system["ApproximateReceiveCount"] == "0"
    assert len(h.log) == before
    assert h.counts("q") == (1, 0, 0)


def test_receive_and_delete_is_at_most_once(h: Harness) -> None:
    h.send_body("q", b"x")
    out = h.receive("q", 10, delete=True)
    assert [m.body for m in out.messages] == [b"x"]
    assert out.sync is True
    h.restart()
    assert h.counts("q") == (0, 0, 0)


def test_scheduled_delivery_and_cancel(h: Harness) -> None:
    mid = h.send_body("q", b"later", deliver_at_ms=h.now + 3_600_000)
    other = h.send_body("q", b"other", deliver_at_ms=h.now + 1_000)
    assert h.counts("q") == (0, 0, 2)
    h.call("cancel_scheduled", "q", mid, h.now)
    h.advance(1_000)
    [m] = h.recv("q")
    assert m.message_id == other
    h.delete("q", m.receipt)
    h.advance(3_600_000)
    assert h.recv("q") == []


def test_nack_with_backoff_schedule(h: Harness) -> None:
    h.create("b", {"qnode:RedeliveryBackoff": "1,5"})
    h.send_body("b", b"x")
    [m] = h.recv("b")
    h.call("nack", "b", m.receipt, None, "boom", h.now)
    h.advance(999)
    assert h.recv("b") == []
    h.advance(1)
    [m] = h.recv("b")
    h.call("nack", "b", m.receipt, None, None, h.now)
    h.advance(4_999)
    assert h.recv("b") == []
    h.advance(1)
    [m] = h.recv("b")
    assert m.system["qnode:FailureReason"] == "boom"
    h.call("nack", "b", m.receipt, 0, None, h.now)
    assert len(h.recv("b")) == 1


def test_list_queues_by_prefix_and_unknown_attribute_name(h: Harness) -> None:
    h.create("alpha")
    h.create("alps")
    h.create("beta")
    assert h.engine.list_queues("al") == ["alpha", "alps"]
    assert h.engine.list_queues() == ["alpha", "alps", "beta", "q"]
    with pytest.raises(InvalidAttributeName):
        h.engine.get_queue_attributes("q", ["NoSuchAttribute"], h.now)


def test_deleted_queue_stays_deleted_after_restart_and_name_is_reusable(h: Harness) -> None:
    h.send_body("q", b"x")
    h.call("delete_queue", "q", h.now)
    h.restart()
    assert h.engine.list_queues() == []
    h.create("q")
    assert h.counts("q") == (0, 0, 0)


def test_timer_heap_stays_bounded_with_long_visibility_and_fast_deletes() -> None:
    h = Harness(EngineConfig(timers_compact_min=64))
    h.create("q")
    for _ in range(100):
        h.send_body("q", b"x")
        [m] = h.recv("q", vis_ms=12 * 3600_000)
        h.delete("q", m.receipt)
    assert len(h.engine._timers) <= 2 * 64
    h.send_body("q", b"y")
    [m] = h.recv("q", vis_ms=1_000)
    h.advance(1_000)
    assert len(h.recv("q")) == 1                      # live timers survive compaction


def test_a_message_logged_with_a_body_digest_replays_as_one_logged_without() -> None:
    """Logs and checkpoints written before the engine stopped digesting bodies carry the MD5
    in a message's fifth slot; it is read and ignored, and new records write None there."""
    from qnode.backend import records as rec
    old = [7, "id-7", b"hello", None, "5d41402abc4b2a76b9719d911017c592", None, None, None,
           1_000, 1_000, 0, 0, None, None, 0, None, None, 5]
    m = rec.decode_message(rec.unpack(rec.pack(old)))
    assert (m.seq, m.message_id, m.body, m.sent_ms, m.size) == (7, "id-7", b"hello", 1_000, 5)
    assert rec.encode_message(m) == [*old[:4], None, *old[5:]]
