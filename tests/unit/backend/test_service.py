"""BackendService on the real WAL (tmp dir, real fsync): long polls wake on durability, restart
keeps what was acknowledged, dedup survives restart, graceful close answers parked waiters.

Method: open the service on `tmp_path`, drive it through the QueueApi, restart by close + open.
Every wait is an awaited future, or a condition polled until a deadline (`wait_for`), bounded
by `asyncio.timeout`; no fixed sleeps."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from qnode.backend.service import BackendConfig, BackendService
from qnode.frontend.api import SendEntry
from qnode.protocol.errors import QueueDoesNotExist, ShuttingDown
from qnode.wal.errors import WalBackpressure, WalFailed
from qnode.wal.writer import WalConfig

CONFIG = BackendConfig(wal=WalConfig(disk_reserve_size=0))


async def open_svc(path: Path) -> BackendService:
    return await BackendService.open(path, CONFIG)


async def wait_for(predicate, timeout_s: float = 10.0) -> None:
    """Poll `predicate` until true or the deadline (a bounded condition wait)."""
    async with asyncio.timeout(timeout_s):
        while not await predicate():
            await asyncio.sleep(0.01)


async def parked(svc: BackendService, count: int) -> None:
    async def check() -> bool:
        return svc.stats()["backend"]["waiters"] == count
    await wait_for(check)


async def test_long_poll_wakes_when_message_is_durable(tmp_path: Path) -> None:
    svc = await open_svc(tmp_path)
    try:
        await svc.create_queue("q")
        poll = asyncio.ensure_future(svc.receive_messages("q", max_count=10, wait_ms=20_000))
        await parked(svc, 1)
        [result] = await svc.send_messages("q", [SendEntry(b"hello")])
        async with asyncio.timeout(5):
            got = await poll
        assert [m.message_id for m in got] == [result.message_id]
        assert svc._wal.durable_lsn >= svc._wal.last_lsn - 1
    finally:
        await svc.close()


async def test_restart_preserves_messages_inflight_and_receipts(tmp_path: Path) -> None:
    svc = await open_svc(tmp_path)
    await svc.create_queue("q", {"VisibilityTimeout": "60"}, {"team": "x"})
    sent = await svc.send_messages("q", [SendEntry(b"%d" % i, entry_id=str(i)) for i in range(5)])
    got = await svc.receive_messages("q", max_count=2)
    await svc.close()
    svc = await open_svc(tmp_path)
    try:
        attrs = await svc.get_queue_attributes("q")
        assert attrs["ApproximateNumberOfMessages"] == "3"
        assert attrs["ApproximateNumberOfMessagesNotVisible"] == "2"
        assert attrs["VisibilityTimeout"] == "60"
        assert await svc.list_queue_tags("q") == {"team": "x"}
        assert await svc.delete_messages("q", [m.receipt for m in got]) == [None, None]
        rest = await svc.receive_messages("q", max_count=10)
        assert {m.message_id for m in rest} | {m.message_id for m in got} == {r.message_id for r in sent}
    finally:
        await svc.close()


async def test_fifo_dedup_survives_restart(tmp_path: Path) -> None:
    svc = await open_svc(tmp_path)
    await svc.create_queue("f.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"})
    [first] = await svc.send_messages("f.fifo", [SendEntry(b"same", group_id="g")])
    await svc.close()
    svc = await open_svc(tmp_path)
    try:
        [again] = await svc.send_messages("f.fifo", [SendEntry(b"same", group_id="g")])
        assert again.duplicate
        assert again.message_id == first.message_id
        assert (await svc.get_queue_attributes("f.fifo"))["ApproximateNumberOfMessages"] == "1"
    finally:
        await svc.close()


async def test_close_answers_parked_waiters_and_refuses_new_calls(tmp_path: Path) -> None:
    svc = await open_svc(tmp_path)
    await svc.create_queue("q")
    polls = [asyncio.ensure_future(svc.receive_messages("q", wait_ms=20_000)) for _ in range(3)]
    await parked(svc, 3)
    await svc.close()
    async with asyncio.timeout(5):
        assert await asyncio.gather(*polls) == [[], [], []]
    with pytest.raises(ShuttingDown):
        await svc.send_messages("q", [SendEntry(b"x")])


async def test_checkpoint_then_restart(tmp_path: Path) -> None:
    svc = await open_svc(tmp_path)
    await svc.create_queue("q")
    await svc.send_messages("q", [SendEntry(b"a")])
    await svc.checkpoint()
    await svc.send_messages("q", [SendEntry(b"b")])
    await svc.close()
    svc = await open_svc(tmp_path)
    try:
        got = await svc.receive_messages("q", max_count=10)
        assert sorted(m.body for m in got) == [b"a", b"b"]
        with pytest.raises(QueueDoesNotExist):
            await svc.receive_messages("nope")
    finally:
        await svc.close()


async def test_push_consumer_respects_prefetch_and_close_returns_messages(tmp_path: Path) -> None:
    svc = await open_svc(tmp_path)
    try:
        await svc.create_queue("q")
        await svc.send_messages("q", [SendEntry(b"%d" % i, entry_id=str(i)) for i in range(5)])
        consumer = await svc.open_consumer("q", prefetch=2)
        async with asyncio.timeout(5):
            first = [await consumer.next(), await consumer.next()]
        blocked = asyncio.ensure_future(consumer.next())
        done, _ = await asyncio.wait({blocked}, timeout=0.05)   # no credit: must not complete
        assert not done
        assert (await svc.get_queue_attributes("q"))["ApproximateNumberOfMessagesNotVisible"] == "2"
        await svc.delete_messages("q", [first[0].receipt])
        consumer.settle(1)
        async with asyncio.timeout(5):
            third = await blocked
        assert third.message_id not in {m.message_id for m in first}
        await consumer.close()
        attrs = await svc.get_queue_attributes("q")
        assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
        assert attrs["ApproximateNumberOfMessages"] == "4"
    finally:
        await svc.close()


async def test_dead_letter_and_move_task_back_through_the_service(tmp_path: Path) -> None:
    import json
    svc = await open_svc(tmp_path)
    try:
        await svc.create_queue("dlq")
        arn = (await svc.get_queue_attributes("dlq", ["QueueArn"]))["QueueArn"]
        await svc.create_queue("src", {"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": arn, "maxReceiveCount": 1})})
        sent = await svc.send_messages("src", [SendEntry(b"%d" % i, entry_id=str(i)) for i in range(3)])
        got = await svc.receive_messages("src", max_count=10)
        await svc.change_visibility("src", [(m.receipt, 0) for m in got])
        assert await svc.receive_messages("src", max_count=10) == []
        assert await svc.list_dead_letter_source_queues("dlq") == ["src"]
        handle = await svc.start_message_move_task("dlq", max_per_second=100)

        async def completed() -> bool:
            [task] = await svc.list_message_move_tasks("dlq")
            return task.status == "COMPLETED"

        await wait_for(completed)
        back: list = []
        async with asyncio.timeout(10):      # moved copies become receivable once durable
            while len(back) < 3:
                back += await svc.receive_messages("src", max_count=10, wait_ms=5_000)
        assert sorted(m.message_id for m in back) == sorted(r.message_id for r in sent)
        [task] = await svc.list_message_move_tasks("dlq")
        assert task.task_handle == handle and task.moved_count == 3
    finally:
        await svc.close()


async def test_interval_durability_is_reported_and_restart_keeps_synced_messages(tmp_path: Path) -> None:
    svc = await open_svc(tmp_path)
    await svc.create_queue("i", {"qnode:Durability": "interval"})
    assert (await svc.get_queue_attributes("i"))["qnode:Durability"] == "interval"
    await svc.send_messages("i", [SendEntry(b"x")])
    await svc.close()            # close flushes and fsyncs
    svc = await open_svc(tmp_path)
    try:
        assert [m.body for m in await svc.receive_messages("i")] == [b"x"]
    finally:
        await svc.close()


async def test_periodic_checkpoint_when_log_outgrows_live_data(tmp_path: Path) -> None:
    config = BackendConfig(wal=WalConfig(disk_reserve_size=0), checkpoint_log_size_min=4096,
                           maintenance_interval_ms=10)
    svc = await BackendService.open(tmp_path, config)
    await svc.create_queue("q")
    for round_index in range(10):
        await svc.send_messages("q", [SendEntry(b"x" * 500, entry_id=str(i)) for i in range(5)])
        got = await svc.receive_messages("q", max_count=10)
        await svc.delete_messages("q", [m.receipt for m in got])
    [kept] = await svc.send_messages("q", [SendEntry(b"keep")])

    async def checkpointed() -> bool:
        return svc.checkpoints >= 1

    await wait_for(checkpointed)
    assert svc._wal.checkpoint_lsn > 0
    await svc.close()
    svc = await BackendService.open(tmp_path, config)
    try:
        [m] = await svc.receive_messages("q", max_count=10)
        assert m.message_id == kept.message_id
    finally:
        await svc.close()


async def test_refused_append_fails_the_send_and_leaves_no_message(tmp_path: Path) -> None:
    svc = await open_svc(tmp_path)
    try:
        await svc.create_queue("q")
        real_append = svc._wal.append_many

        def refuse(records, defer=False, *, admitted=False):
            raise WalFailed("test: the log failed after admission")

        svc._wal.append_many = refuse
        with pytest.raises(WalFailed):
            await svc.send_messages("q", [SendEntry(b"lost")])
        svc._wal.append_many = real_append
        assert (await svc.get_queue_attributes("q"))["ApproximateNumberOfMessages"] == "0"
        [ok] = await svc.send_messages("q", [SendEntry(b"kept")])
        assert [m.message_id for m in await svc.receive_messages("q", max_count=10)] == [ok.message_id]
        svc.check_invariants()
    finally:
        await svc.close()


async def test_push_consumer_settles_by_receipt_and_close_returns_only_unacked(tmp_path: Path) -> None:
    """Acks may come in any order: settling the 2nd of 3 deliveries must leave the 1st and the
    3rd to be returned when the subscription closes (a bare count would settle the oldest)."""
    svc = await open_svc(tmp_path)
    try:
        await svc.create_queue("q", {"VisibilityTimeout": "600"})
        await svc.send_messages("q", [SendEntry(b"%d" % i, entry_id=str(i)) for i in range(3)])
        consumer = await svc.open_consumer("q", prefetch=3)
        async with asyncio.timeout(5):
            got = [await consumer.next() for _ in range(3)]
        await svc.delete_messages("q", [got[1].receipt])
        consumer.settle(1, [got[1].receipt])
        await consumer.close()
        back = await svc.receive_messages("q", max_count=10, wait_ms=0)
        assert sorted(m.body for m in back) == sorted([got[0].body, got[2].body])
    finally:
        await svc.close()


async def test_native_delays_reach_the_retention_period_and_nack_delays_twelve_hours(tmp_path: Path) -> None:
    """Issue #4: delays beyond SQS's 900 s up to the retention period (the SQS gateway still
    caps DelaySeconds at 900); a nack may hide a message as long as a visibility timeout."""
    svc = await open_svc(tmp_path)
    try:
        await svc.create_queue("q", {"MessageRetentionPeriod": "7200"})
        ok = await svc.send_messages("q", [SendEntry(b"later", delay_ms=3_600_000)])
        assert ok[0].message_id
        too_long = await svc.send_messages("q", [SendEntry(b"never", delay_ms=7_300_000)])
        assert too_long[0].code.name == "INVALID_PARAMETER"
        attrs = await svc.get_queue_attributes("q")
        assert attrs["ApproximateNumberOfMessagesDelayed"] == "1"
        assert attrs["ApproximateNumberOfMessages"] == "0"
        await svc.send_messages("q", [SendEntry(b"now", delay_ms=0)])
        [msg] = await svc.receive_messages("q", max_count=1, wait_ms=0)
        await svc.nack("q", msg.receipt, 12 * 3600_000, "later please")
        assert (await svc.get_queue_attributes("q"))["ApproximateNumberOfMessagesNotVisible"] == "1"
    finally:
        await svc.close()


async def test_a_retried_delete_succeeds_and_returns_only_once_the_first_is_durable(
        tmp_path: Path) -> None:
    """Why `delete` needs no request-id cache (qnode/protocol/ops.py CACHED_OPS): the retry of
    a delete answers success without a record of its own, and not before the first attempt's
    record is durable."""
    svc = await open_svc(tmp_path)
    try:
        await svc.create_queue("q")
        await svc.send_messages("q", [SendEntry(b"a"), SendEntry(b"b")])
        got = await svc.receive_messages("q", max_count=10, wait_ms=0)
        receipts = [m.receipt for m in got]
        before = svc._wal.last_lsn
        # Both start in the same loop iteration: the retry runs before the first is durable.
        first = asyncio.ensure_future(svc.delete_messages("q", receipts))
        retry = asyncio.ensure_future(svc.delete_messages("q", receipts))
        done_first = []
        first.add_done_callback(lambda _: done_first.append(svc._wal.durable_lsn))
        retry.add_done_callback(lambda _: done_first.append(svc._wal.durable_lsn))
        async with asyncio.timeout(10):
            results = await asyncio.gather(first, retry)
        assert results == [[None, None], [None, None]]
        assert svc._wal.last_lsn == before + 1         # one DELETE record: the retry wrote none
        assert all(lsn >= before + 1 for lsn in done_first)   # both answered once it was durable
        assert (await svc.get_queue_attributes("q", ["ApproximateNumberOfMessages",
                                                      "ApproximateNumberOfMessagesNotVisible"])
                ) == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
    finally:
        await svc.close()
    svc = await open_svc(tmp_path)
    try:
        assert await svc.receive_messages("q", max_count=10, wait_ms=0) == []
    finally:
        await svc.close()


async def test_a_receive_costs_no_fsync_of_its_own_unless_its_queue_redrives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Receive records are deferred: the delete's batch carries them (one fdatasync for both);
    with a RedrivePolicy the receive count must be durable before the reply, and is."""
    import json
    from qnode.wal import writer
    monkeypatch.setattr(writer, "DEFER_MAX_S", 60.0)   # only the delete may start the batch
    svc = await open_svc(tmp_path)
    try:
        await svc.create_queue("q")
        await svc.send_messages("q", [SendEntry(b"x")])
        fsyncs = svc._wal.stats()["fsyncs"]
        [m] = await svc.receive_messages("q", max_count=1)
        assert svc._wal.durable_lsn == svc._wal.last_lsn - 1     # the receive record waits
        await svc.delete_messages("q", [m.receipt])
        assert svc._wal.stats()["fsyncs"] == fsyncs + 1
        assert svc._wal.durable_lsn == svc._wal.last_lsn

        await svc.create_queue("dlq")
        arn = (await svc.get_queue_attributes("dlq", ["QueueArn"]))["QueueArn"]
        policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 2})
        await svc.create_queue("src", {"RedrivePolicy": policy})
        await svc.send_messages("src", [SendEntry(b"y")])
        [m] = await svc.receive_messages("src", max_count=1)
        assert svc._wal.durable_lsn == svc._wal.last_lsn        # synced before the reply
    finally:
        await svc.close()
    svc = await open_svc(tmp_path)
    try:
        attrs = await svc.get_queue_attributes("src", ["ApproximateNumberOfMessagesNotVisible"])
        assert attrs["ApproximateNumberOfMessagesNotVisible"] == "1"
    finally:
        await svc.close()


MIB = 1 << 20


async def stall_and_fill(svc: BackendService, gate: threading.Event) -> list[asyncio.Future]:
    """Stall the WAL thread on `gate` (a disk that stopped answering) and send fillers until the
    WAL refuses appends as overloaded; returns the parked fillers."""
    svc._wal._thread.call(gate.wait)
    fillers: list[asyncio.Future] = []
    for _ in range(64):
        filler = asyncio.ensure_future(svc.send_messages("fill", [SendEntry(b"f" * (200 << 10))]))
        await asyncio.sleep(0)          # it runs to its fsync wait, or is refused
        if filler.done():
            with pytest.raises(WalBackpressure):
                filler.result()
            return fillers
        fillers.append(filler)
    raise AssertionError("the WAL never refused an append")


async def test_a_request_the_wal_refuses_changes_nothing_and_its_retry_is_logged(tmp_path: Path) -> None:
    """An overloaded WAL (Busy) refuses a request before the engine changes anything. Before,
    the engine had already applied it: a retried delete found the message gone and succeeded
    with nothing logged (the message came back after a restart), and a retried FIFO send was
    acknowledged as a duplicate of a message that did not exist."""
    config = BackendConfig(wal=WalConfig(disk_reserve_size=0, batch_size_max=4 * MIB,
                                         pending_size_max=4 * MIB))
    svc = await BackendService.open(tmp_path, config)
    gate = threading.Event()
    try:
        for name in ("fill", "q"):
            await svc.create_queue(name, {"VisibilityTimeout": "600"})
        await svc.create_queue("q.fifo", {"FifoQueue": "true"})
        await svc.send_messages("q", [SendEntry(b"payload")])
        [m] = await svc.receive_messages("q", max_count=1)
        fifo = [SendEntry(b"order-42", group_id="g", dedup_id="order-42")]
        fillers = await stall_and_fill(svc, gate)
        with pytest.raises(WalBackpressure):
            await svc.delete_messages("q", [m.receipt])
        with pytest.raises(WalBackpressure):
            await svc.send_messages("q.fifo", fifo)
        assert (await svc.get_queue_attributes("q"))["ApproximateNumberOfMessagesNotVisible"] == "1"
        gate.set()
        await asyncio.gather(*fillers)
        assert await svc.delete_messages("q", [m.receipt]) == [None]
        [sent] = await svc.send_messages("q.fifo", fifo)
        assert not sent.duplicate
    finally:
        gate.set()
        await svc.close()
    svc = await BackendService.open(tmp_path, config)
    try:
        attrs = await svc.get_queue_attributes("q")
        assert (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")
        assert [x.body for x in await svc.receive_messages("q.fifo", max_count=10)] == [b"order-42"]
    finally:
        await svc.close()


async def test_a_retried_receive_on_a_redrive_queue_waits_for_the_first_attempts_record(tmp_path: Path) -> None:
    """With a RedrivePolicy a receive replies only once its receive count is durable; a retry
    with the same attempt id used to be answered from the attempt cache at once, before it."""
    svc = await open_svc(tmp_path)
    gate = threading.Event()
    try:
        await svc.create_queue("dlq")
        arn = (await svc.get_queue_attributes("dlq", ["QueueArn"]))["QueueArn"]
        await svc.create_queue("src", {"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": arn, "maxReceiveCount": 1})})
        [sent] = await svc.send_messages("src", [SendEntry(b"poison")])
        svc._wal._thread.call(gate.wait)               # the disk stops answering
        first = asyncio.ensure_future(svc.receive_messages("src", max_count=1, attempt_id="a1"))
        retry = asyncio.ensure_future(svc.receive_messages("src", max_count=1, attempt_id="a1"))
        for _ in range(3):
            await asyncio.sleep(0)                      # both run to their first wait
        assert not first.done() and not retry.done()
        gate.set()
        async with asyncio.timeout(10):
            got = [[x.message_id for x in await f] for f in (first, retry)]
        assert got == [[sent.message_id], [sent.message_id]]
    finally:
        gate.set()
        await svc.close()
