"""Issue #4's features through the native `qnode.Client` against a real `qnode start` process.

Goal: every feature beyond plain send/receive (FIFO order, group blocking and deduplication,
dead letters and redrive, nack and its backoff, peek, receive-and-delete, scheduled delivery,
push consumers with credit, disconnect handling, abandoned long polls, the `qnode dlq` CLI)
behaves as docs/design/engine.md and README.md promise when driven over TCP. Method: the `node`
fixture (tests/integration/conftest.py) starts a node on ephemeral ports; each test talks to it
with `qnode.Client`, or runs a client in a subprocess that is SIGKILLed to model a crashed
client. Waits are long polls or deadline loops on observed state, never sleeps.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import qnode
from qnode.protocol.errors import InvalidParameter

LONG_VT = 60          # a visibility timeout no test waits out


async def receive_n(q, n: int, deadline_s: float = 5.0, **kw) -> list:
    """Receive until `n` messages arrived or the deadline passed (long polls of <= 1 s)."""
    got: list = []
    deadline = time.monotonic() + deadline_s
    while len(got) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        got += await q.receive(max_messages=min(10, n - len(got)), wait=min(1.0, left), **kw)
    return got


async def until(pred, deadline_s: float = 10.0, what: str = "condition"):
    """Poll an async predicate until it returns a truthy value (small steps, with a deadline)."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = await pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {deadline_s}s (last: {value!r})")
        await asyncio.sleep(0.05)


async def counts(q) -> tuple[int, int, int]:
    a = await q.attributes()
    return (int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"]),
            int(a["ApproximateNumberOfMessagesDelayed"]))


def client(node) -> qnode.Client:
    return qnode.Client([node.binary])


# --- FIFO --------------------------------------------------------------------------------------

async def test_fifo_order_within_group_and_group_blocking(node):
    async with client(node) as c:
        q = await c.create_queue("orders.fifo", attributes={"ContentBasedDeduplication": "true"})
        sent: dict[str, list] = {"A": [], "B": []}
        in_order = []
        for i in range(4):
            for g in ("A", "B") if i < 3 else ("A",):
                s = await q.send(f"{g}{i}".encode(), group_id=g)
                sent[g].append(s)
                in_order.append(int(s.sequence_number))
        assert in_order == sorted(set(in_order)), "SequenceNumber grows with every send"

        first = (await q.receive(max_messages=1, wait=2, visibility_timeout=LONG_VT))[0]
        g1 = first.system["MessageGroupId"]
        g2 = "B" if g1 == "A" else "A"
        assert first.id == sent[g1][0].id and first.body == f"{g1}0".encode()
        assert first.system["SequenceNumber"] == sent[g1][0].sequence_number

        # g1 is leased by `first`: only g2 flows, from its head, in order.
        other = await q.receive(max_messages=10, wait=2, visibility_timeout=LONG_VT)
        assert [m.system["MessageGroupId"] for m in other] == [g2] * len(other)
        assert [m.id for m in other] == [s.id for s in sent[g2][:len(other)]]
        assert other, "the other group must flow while g1 is in flight"
        # Both groups now have a message in flight: nothing else is delivered.
        assert await q.receive(max_messages=10, wait=0.3) == []

        # Settle g1's head one at a time: the rest of g1 comes strictly in order.
        order = [first]
        cur = first
        for _ in range(len(sent[g1]) - 1):
            await cur.delete()
            got = await q.receive(max_messages=1, wait=2, visibility_timeout=LONG_VT)
            assert len(got) == 1 and got[0].system["MessageGroupId"] == g1
            cur = got[0]
            order.append(cur)
        await cur.delete()
        assert [m.id for m in order] == [s.id for s in sent[g1]]
        assert [int(m.system["SequenceNumber"]) for m in order] == \
            sorted(int(m.system["SequenceNumber"]) for m in order)

        # g2's remainder (if the first receive did not take it all) follows after its lease ends.
        for m in other:
            await m.delete()
        rest = await receive_n(q, len(sent[g2]) - len(other))
        assert [m.id for m in other + rest] == [s.id for s in sent[g2]]


async def test_fifo_deduplication_explicit_and_content_based(node):
    async with client(node) as c:
        q = await c.create_queue("dedup.fifo")
        s1 = await q.send(b"first", group_id="g", dedup_id="d1")
        s2 = await q.send(b"second body", group_id="g", dedup_id="d1")
        assert s2.id == s1.id and s2.sequence_number == s1.sequence_number
        assert await counts(q) == (1, 0, 0)
        got = await q.receive(max_messages=10, wait=2)
        assert [(m.id, m.body) for m in got] == [(s1.id, b"first")]
        await got[0].delete()
        # Still inside the window after deletion: acknowledged, nothing enqueued.
        s3 = await q.send(b"third", group_id="g", dedup_id="d1")
        assert s3.id == s1.id
        assert await counts(q) == (0, 0, 0)
        assert await q.receive(max_messages=10, wait=0.3) == []
        s4 = await q.send(b"fourth", group_id="g", dedup_id="d2")
        assert s4.id != s1.id and int(s4.sequence_number) > int(s1.sequence_number)

        cq = await c.create_queue("content.fifo", attributes={"ContentBasedDeduplication": "true"})
        a = await cq.send(b"same", group_id="g")
        b = await cq.send(b"same", group_id="other-group")     # queue scope: body decides
        d = await cq.send(b"different", group_id="g")
        assert b.id == a.id and d.id != a.id
        assert int(d.sequence_number) > int(a.sequence_number)
        assert await counts(cq) == (2, 0, 0)
        got = await receive_n(cq, 2)
        assert sorted(m.body for m in got) == [b"different", b"same"]


# --- dead letters --------------------------------------------------------------------------------

async def make_dlq_pair(c, src_name: str, dlq_name: str, max_receives: int, **src_attrs):
    dlq = await c.create_queue(dlq_name)
    dlq_arn = (await dlq.attributes("QueueArn"))["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives})
    src = await c.create_queue(src_name, attributes={"RedrivePolicy": policy, **src_attrs})
    src_arn = (await src.attributes("QueueArn"))["QueueArn"]
    return src, dlq, src_arn


async def test_dead_letter_after_max_receives_with_reason_then_move_back(node):
    async with client(node) as c:
        src, dlq, src_arn = await make_dlq_pair(c, "work", "work-dlq", 2)
        sent = await src.send(b"poison", attributes={"kind": "bad"})
        for n in (1, 2):
            got = await src.receive(max_messages=1, wait=2, visibility_timeout=LONG_VT)
            assert [m.id for m in got] == [sent.id]
            assert got[0].system["ApproximateReceiveCount"] == str(n)
            await got[0].nack(delay=0, reason=f"boom {n}")
        # The third receive moves it instead of delivering it.
        assert await src.receive(max_messages=10, wait=0.5) == []
        moved = await dlq.receive(max_messages=10, wait=2)
        assert len(moved) == 1
        m = moved[0]
        assert (m.id, m.body, m.attributes) == (sent.id, b"poison", {"kind": "bad"})
        assert m.system["DeadLetterQueueSourceArn"] == src_arn
        assert m.system["qnode:FailureReason"] == "boom 2"
        assert await counts(src) == (0, 0, 0)

        await m.nack(delay=0)                     # visible again in the DLQ, so it can move
        await c.start_message_move_task("work-dlq")
        back = await until(lambda: src.receive(max_messages=10, wait=1), what="message moved back")
        assert [(b.id, b.body) for b in back] == [(sent.id, b"poison")]
        assert await counts(dlq) == (0, 0, 0)


async def test_dead_letter_after_visibility_expiry(node):
    async with client(node) as c:
        src, dlq, src_arn = await make_dlq_pair(c, "expiring", "expiring-dlq", 2)
        sent = await src.send(b"slow")
        for n in (1, 2):
            got = await src.receive(max_messages=1, wait=3, visibility_timeout=1)
            assert [(m.id, m.system["ApproximateReceiveCount"]) for m in got] == [(sent.id, str(n))]
        # The second lease expires after 1 s; the receive that would be the third moves it.
        t0 = time.monotonic()
        assert await src.receive(max_messages=10, wait=2) == []
        moved = await dlq.receive(max_messages=10, wait=3)
        assert time.monotonic() - t0 < 5
        assert [(m.id, m.body, m.system["DeadLetterQueueSourceArn"]) for m in moved] == \
            [(sent.id, b"slow", src_arn)]


# --- nack ----------------------------------------------------------------------------------------

async def test_nack_now_and_with_delay(node):
    async with client(node) as c:
        q = await c.create_queue("nacks")
        sent = await q.send(b"n")
        m = (await q.receive(max_messages=1, wait=2, visibility_timeout=LONG_VT))[0]
        t0 = time.monotonic()
        await m.nack()
        again = await q.receive(max_messages=1, wait=2, visibility_timeout=LONG_VT)
        assert time.monotonic() - t0 < 1.0
        assert [(x.id, x.system["ApproximateReceiveCount"]) for x in again] == [(sent.id, "2")]

        await again[0].nack(delay=1)
        t0 = time.monotonic()
        assert await q.receive(max_messages=1, wait=0.5) == []
        assert await counts(q) == (0, 1, 0)
        third = await q.receive(max_messages=1, wait=3)
        elapsed = time.monotonic() - t0
        assert [x.id for x in third] == [sent.id]
        assert 0.9 <= elapsed < 2.5, elapsed


async def test_nack_follows_queue_redelivery_backoff(node):
    async with client(node) as c:
        q = await c.create_queue("backoff", attributes={"qnode:RedeliveryBackoff": "0.4,1.2"})
        assert (await q.attributes("qnode:RedeliveryBackoff"))["qnode:RedeliveryBackoff"]
        sent = await q.send(b"b")
        gaps = []
        m = (await q.receive(max_messages=1, wait=3, visibility_timeout=LONG_VT))[0]
        for count in (1, 2, 3):
            assert (m.id, m.system["ApproximateReceiveCount"]) == (sent.id, str(count))
            t0 = time.monotonic()
            await m.nack()
            got = await q.receive(max_messages=1, wait=3, visibility_timeout=LONG_VT)
            gaps.append(time.monotonic() - t0)
            assert [x.id for x in got] == [sent.id]
            m = got[0]
        # steps by receive count: 0.4 s, 1.2 s, then the last step repeats
        assert 0.3 <= gaps[0] < 1.0, gaps
        assert 1.1 <= gaps[1] < 2.2, gaps
        assert 1.1 <= gaps[2] < 2.2, gaps


# --- peek ----------------------------------------------------------------------------------------

async def test_peek_has_no_side_effects_and_cli_shows_it(node):
    async with client(node) as c:
        q = await c.create_queue("peeky")
        ids = [(await q.send(f"p{i}".encode())).id for i in range(3)]
        for _ in range(2):
            seen = await q.peek(10)
            assert sorted(m.id for m in seen) == sorted(ids)
            assert all(m.receipt is None for m in seen)
        with pytest.raises(InvalidParameter):
            await seen[0].delete()
        assert await counts(q) == (3, 0, 0)

        out = await asyncio.to_thread(node.cli, "--json", "queue", "peek", "peeky")
        assert out.returncode == 0, out.stderr
        shown = json.loads(out.stdout)
        assert sorted((d["id"], d["body"]) for d in shown) == sorted(zip(ids, ["p0", "p1", "p2"]))

        got = await receive_n(q, 3, visibility_timeout=LONG_VT)
        assert sorted(m.id for m in got) == sorted(ids)
        assert {m.system["ApproximateReceiveCount"] for m in got} == {"1"}
        await got[0].nack(delay=0)
        assert [m.id for m in await q.peek(10)] == [got[0].id]   # in-flight ones are not shown


# --- receive-and-delete --------------------------------------------------------------------------

async def test_receive_and_delete_never_redelivers_even_after_a_crash(node):
    async with client(node) as c:
        q = await c.create_queue("amo", attributes={"VisibilityTimeout": "1"})
        gone = await q.send(b"once")
        kept = await q.send(b"in flight")
        got = await receive_n(q, 2, visibility_timeout=4)
        by_id = {m.id: m for m in got}
        assert set(by_id) == {gone.id, kept.id}
        # Give `gone` back, then take it with receive-and-delete.
        await by_id[gone.id].nack(delay=0)
        amo = await q.receive(max_messages=10, wait=2, delete=True)
        assert [m.id for m in amo] == [gone.id]
        # Longer than the queue's 1 s visibility timeout: it does not come back.
        assert await q.receive(max_messages=10, wait=1.5) == []
        assert await counts(q) == (0, 1, 0)
    node.kill()
    node.start()
    async with client(node) as c:
        q = c.queue("amo")
        # `kept` (in flight at the crash; its lease is persisted wall-clock time) comes back by
        # the end of its 4 s lease at the latest; `gone` never does.
        after = await receive_n(q, 1, deadline_s=8, visibility_timeout=LONG_VT)
        assert [m.id for m in after] == [kept.id]
        assert await q.receive(max_messages=10, wait=1.5) == []
        assert await counts(q) == (0, 1, 0)


# --- scheduled delivery --------------------------------------------------------------------------

async def test_deliver_at_and_cancel_scheduled(node):
    async with client(node) as c:
        q = await c.create_queue("sched")
        at = time.time() + 0.6
        s = await q.send(b"later", deliver_at=at)
        assert await q.receive(max_messages=1, wait=0.2) == []
        assert time.time() < at, "the check above must run before the delivery time"
        assert await counts(q) == (0, 0, 1)
        got = await q.receive(max_messages=1, wait=3)
        assert [m.id for m in got] == [s.id]
        assert time.time() >= at - 0.05
        await got[0].delete()

        far = await q.send(b"cancel me", deliver_at=time.time() + 60)
        far2 = await q.send(b"beyond 900 s", deliver_at=time.time() + 2_000)
        assert await counts(q) == (0, 0, 2)
        await q.cancel_scheduled(far.id)
        assert await counts(q) == (0, 0, 1)
        assert await q.peek(10) == []

        # README: natively, delays go up to the retention period (`delay=` beyond 900 s too);
        # beyond the retention period they are refused.
        big = await q.send(b"x", delay=1000)
        assert await counts(q) == (0, 0, 2)
        with pytest.raises(InvalidParameter):
            await q.send(b"too far", delay=5 * 24 * 3600)       # default retention: 4 days
        with pytest.raises(InvalidParameter):
            await q.send(b"too far", deliver_at=time.time() + 5 * 24 * 3600)
        assert await counts(q) == (0, 0, 2)
        await q.cancel_scheduled(big.id)
        await q.cancel_scheduled(far2.id)
        assert await counts(q) == (0, 0, 0)


# --- push consumers ------------------------------------------------------------------------------

async def test_consumer_prefetch_bounds_unacked(node):
    async with client(node) as c:
        q = await c.create_queue("push")
        await q.send_batch([f"m{i}".encode() for i in range(10)])
        consumption = q.consume(prefetch=3, visibility_timeout=LONG_VT)
        try:
            held = [await asyncio.wait_for(consumption.__anext__(), 5) for _ in range(3)]
            fourth = asyncio.ensure_future(consumption.__anext__())
            done, _ = await asyncio.wait({fourth}, timeout=0.5)
            assert not done, "a 4th message arrived with 3 unacked (prefetch=3)"
            assert await counts(q) == (7, 3, 0)
            await held[0].delete()
            m4 = await asyncio.wait_for(fourth, 5)
            assert m4.id not in {m.id for m in held}
            fifth = asyncio.ensure_future(consumption.__anext__())
            done, _ = await asyncio.wait({fifth}, timeout=0.5)
            assert not done
            await held[1].nack(delay=LONG_VT)          # a nack settles too
            await asyncio.wait_for(fifth, 5)
        finally:
            await consumption.aclose()


async def test_consumer_close_returns_unacked_at_once(node):
    async with client(node) as c:
        q = await c.create_queue("push-close")
        await q.send_batch([b"c0", b"c1", b"c2"])
        consumption = q.consume(prefetch=3, visibility_timeout=LONG_VT)
        got = [await asyncio.wait_for(consumption.__anext__(), 5) for _ in range(3)]
        await got[1].delete()                       # acked out of order
        await consumption.aclose()
        t0 = time.monotonic()
        back = await receive_n(q, 2, deadline_s=3, visibility_timeout=LONG_VT)
        assert time.monotonic() - t0 < 3
        assert sorted(m.id for m in back) == sorted([got[0].id, got[2].id])
        assert await q.receive(max_messages=10, wait=0.3) == []
        assert await counts(q) == (0, 2, 0)


CONSUMER_SCRIPT = textwrap.dedent("""
    import asyncio, json, sys
    import qnode

    async def main():
        async with qnode.Client([sys.argv[1]]) as c:
            q = c.queue(sys.argv[2])
            consumption = q.consume(prefetch=3, visibility_timeout=60)
            got = [await consumption.__anext__() for _ in range(3)]
            await got[1].delete()
            print(json.dumps([m.id for m in got]), flush=True)
            await asyncio.Event().wait()          # hold the rest until SIGKILLed

    asyncio.run(main())
""")

LONG_POLL_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    import qnode

    async def main():
        async with qnode.Client([sys.argv[1]]) as c:
            q = c.queue(sys.argv[2])
            await q.attributes()                  # connected, queue exists
            poll = asyncio.ensure_future(q.receive(max_messages=1, wait=20))
            await c.ping()                        # sent after the receive on one connection
            print("parked", flush=True)
            print(await poll, flush=True)

    asyncio.run(main())
""")


def spawn(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


async def first_line(proc: subprocess.Popen, timeout_s: float = 20.0) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout_s)
    if not line:
        proc.wait(5)
        raise AssertionError(f"child exited ({proc.returncode}): {proc.stderr.read()}")
    return line.strip()


def sigkill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    proc.stdout.close()
    proc.stderr.close()


async def test_killed_consumer_returns_unacked_at_once(node):
    async with client(node) as c:
        q = await c.create_queue("push-kill")
        await q.send_batch([b"k0", b"k1", b"k2"])
        child = spawn(CONSUMER_SCRIPT, node.binary, "push-kill")
        try:
            ids = json.loads(await first_line(child))
        finally:
            sigkill(child)
        assert len(ids) == 3
        t0 = time.monotonic()
        back = await receive_n(q, 2, deadline_s=3, visibility_timeout=LONG_VT)
        assert time.monotonic() - t0 < 3, "unacked messages waited for their visibility timeout"
        assert sorted(m.id for m in back) == sorted([ids[0], ids[2]])
        assert await q.receive(max_messages=10, wait=0.3) == []
        assert await counts(q) == (0, 2, 0)


async def test_two_consumers_share_a_queue(node):
    async with client(node) as c1, client(node) as c2:
        q1 = await c1.create_queue("shared")
        q2 = c2.queue("shared")
        total = 20
        seen: dict[str, list[str]] = {"c1": [], "c2": []}
        done = asyncio.Event()

        async def run(q, name):
            async with q.consume(prefetch=1, visibility_timeout=LONG_VT) as consumption:
                async for msg in consumption:
                    seen[name].append(msg.id)
                    await msg.delete()
                    if len(seen["c1"]) + len(seen["c2"]) >= total:
                        done.set()

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(run(q1, "c1")), tg.create_task(run(q2, "c2"))]
            ids = []
            for i in range(total):
                ids.append((await q1.send(f"s{i}".encode())).id)
            await asyncio.wait_for(done.wait(), 15)
            for t in tasks:
                t.cancel()
        assert sorted(seen["c1"] + seen["c2"]) == sorted(ids)
        assert min(len(seen["c1"]), len(seen["c2"])) >= 4, {k: len(v) for k, v in seen.items()}


# --- abandoned long poll -------------------------------------------------------------------------

async def test_abandoned_long_poll_does_not_swallow_a_message(node):
    async with client(node) as c:
        q = await c.create_queue("abandoned")
        child = spawn(LONG_POLL_SCRIPT, node.binary, "abandoned")
        try:
            assert await first_line(child) == "parked"
        finally:
            sigkill(child)
        sent = await q.send(b"must not vanish")
        got = await q.receive(max_messages=1, wait=2)
        assert [m.id for m in got] == [sent.id], "the message went to a dead client's long poll"


# --- CLI -----------------------------------------------------------------------------------------

async def test_cli_dlq_redrive_dry_run_and_start(node):
    async with client(node) as c:
        src, dlq, _ = await make_dlq_pair(c, "cli-src", "cli-dlq", 1)
        ids = sorted(s.id for s in await src.send_batch([b"x", b"y"]))
        first = await receive_n(src, 2, visibility_timeout=LONG_VT)
        for m in first:
            await m.nack(delay=0)
        assert await src.receive(max_messages=10, wait=0.5) == []    # this receive moves both
        await until(lambda: _eq(counts(dlq), (2, 0, 0)), what="both in the DLQ")

        dry = await asyncio.to_thread(node.cli, "--json", "dlq", "redrive", "cli-dlq", "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert json.loads(dry.stdout) == {"dry_run": True, "queue": "cli-dlq", "count": 2}
        assert await counts(dlq) == (2, 0, 0)

        run = await asyncio.to_thread(node.cli, "--json", "dlq", "redrive", "cli-dlq")
        assert run.returncode == 0, run.stderr
        out = json.loads(run.stdout)
        assert out["dry_run"] is False and out["task_handle"]
        await until(lambda: _eq(counts(src), (2, 0, 0)), what="both moved back")
        assert await counts(dlq) == (0, 0, 0)
        assert sorted(m.id for m in await src.peek(10)) == ids


async def _eq(coro, expected) -> bool:
    return (await coro) == expected
