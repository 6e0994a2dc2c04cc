"""The asyncio client against real BinaryServers (TCP on 127.0.0.1, port 0) over the FakeApi.

Goal: the client surface and its failure handling. Method: start one or two servers per test;
break connections from the server side (abort transports) or point the client at ports nobody
listens on; await results and poll conditions with deadlines. Covers: queue and message calls,
batches, seconds->ms conversion, long-poll deadline = wait + margin, per-call timeout, retry with
the same request id after a lost connection (applied once), failover across two servers,
`Unavailable` with a one-line message, bounded attempts with an injected RNG, push consumption
with credit, auto-extend and resubscribe.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket

import pytest

import qnode
from qnode.protocol.errors import ErrorCode
from tests.unit.frontend.fake_api import FakeApi
from tests.unit.frontend.helpers import start_server, wait_for


def addr(server) -> str:
    return f"{server.address[0]}:{server.address[1]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def abort_connections(server) -> None:
    for conn in list(server._connections):
        conn._transport.abort()


@pytest.fixture
async def served():
    api = FakeApi()
    server = await start_server(api)
    yield api, server
    await server.stop(1000)


async def test_queue_and_message_round_trip(served):
    api, server = served
    async with qnode.Client([addr(server)]) as c:
        q = await c.create_queue("jobs", visibility_timeout=30, delay=0)
        assert api.created_attributes[-1] == {"VisibilityTimeout": "30", "DelaySeconds": "0"}
        assert (await c.create_queue("jobs", visibility_timeout=30, delay=0)).name == "jobs"
        with pytest.raises(qnode.QueueAlreadyExists):
            await c.create_queue("jobs", visibility_timeout=31)
        sent = await q.send(b"hello", attributes={"n": 7, "s": "x", "b": b"\x01"})
        batch = await q.send_batch([b"a", "b", {"body": b"c", "delay": 5, "id": "e3"}])
        assert [type(r) for r in batch] == [qnode.Sent] * 3
        assert batch[2].entry_id == "e3"
        assert api.queues["jobs"].ready[-1].entry.delay_ms == 5000
        assert len(await q.peek(10)) == 4
        msgs = await q.receive(max_messages=10, wait=0)
        assert [m.body for m in msgs] == [b"hello", b"a", b"b", b"c"]
        assert msgs[0].id == sent.id
        # The node sends no body digests; the client computes SQS's MD5OfBody on demand.
        assert sent.md5_body == msgs[0].md5_body == "5d41402abc4b2a76b9719d911017c592"
        assert batch[1].md5_body == msgs[2].md5_body == hashlib.md5(b"b").hexdigest()
        assert msgs[0].attributes == {"n": 7, "s": "x", "b": b"\x01"}
        assert msgs[0].system["ApproximateReceiveCount"] == "1"
        await msgs[0].delete()
        await msgs[1].change_visibility(0)           # back to the queue now
        await msgs[2].nack()
        assert await q.delete_batch(msgs[3:]) == [None]
        results = await q.change_visibility_batch(msgs[3:], 10)
        assert results[0].code is ErrorCode.RECEIPT_HANDLE_IS_INVALID
        with pytest.raises(qnode.ReceiptHandleIsInvalid):
            await msgs[0].delete()
        assert sorted(m.body for m in await q.receive(wait=0)) == [b"a", b"b"]
        attrs = await q.attributes()
        assert attrs["VisibilityTimeout"] == "30"
        await q.set_attributes(visibility_timeout=60)
        assert (await q.attributes())["VisibilityTimeout"] == "60"
        await q.purge()
        assert await c.list_queues(prefix="j") == ["jobs"]
        assert (await c.status())["node_id"] == "test-node"
        await c.delete_queue("jobs")
        with pytest.raises(qnode.QueueDoesNotExist):
            await c.get_queue("jobs")


async def test_receive_delete_true_is_at_most_once(served):
    api, server = served
    async with qnode.Client([addr(server)]) as c:
        q = await c.create_queue("amo")
        await q.send(b"x")
        [m] = await q.receive(wait=0, delete=True)
        assert m.body == b"x"
        assert api.queues["amo"].inflight == {}


async def test_long_poll_is_not_timed_out_before_wait_plus_margin(served):
    api, server = served
    async with qnode.Client([addr(server)], request_timeout=0.2) as c:
        q = await c.create_queue("lp")
        assert await q.receive(wait=0.5) == []


async def test_per_call_timeout_raises_request_timeout(served):
    api, server = served
    async with qnode.Client([addr(server)], request_timeout=0.2) as c:
        q = await c.create_queue("slow")
        api.send_gate = asyncio.Event()
        with pytest.raises(qnode.RequestTimeout):
            await q.send(b"x")
        api.send_gate.set()


async def test_lost_connection_retry_uses_the_same_request_id(served):
    api, server = served
    async with qnode.Client([addr(server)], rng=random.Random(1), backoff_base=0.001) as c:
        q = await c.create_queue("once")
        api.send_gate = asyncio.Event()
        sending = asyncio.ensure_future(q.send(b"only once"))
        await api.send_started.wait()
        abort_connections(server)                 # the reply can never come on this connection
        await wait_for(lambda: server.request_cache.hit_count >= 1)
        api.send_gate.set()
        sent = await sending
        assert api.send_calls == 1
        assert [m.message_id for m in api.queues["once"].ready] == [sent.id]


async def test_failover_to_the_second_server():
    api_a, api_b = FakeApi(), FakeApi()
    a = await start_server(api_a)
    b = await start_server(api_b)
    try:
        async with qnode.Client([addr(a), addr(b)], rng=random.Random(2), backoff_base=0.001) as c:
            await c.create_queue("q")
            assert c.connected_address == addr(a)
            await a.stop(1000)
            await c.create_queue("q")             # lost connection -> retry -> next address
            assert c.connected_address == addr(b)
            assert "q" in api_b.queues
    finally:
        await b.stop(1000)


async def test_unavailable_when_no_node_answers_is_one_line():
    ports = [free_port(), free_port()]
    addresses = [f"127.0.0.1:{p}" for p in ports]
    async with qnode.Client(addresses, attempts_max=2, backoff_base=0.001, rng=random.Random(3)) as c:
        with pytest.raises(qnode.Unavailable) as info:
            await c.ping()
    message = str(info.value)
    assert "\n" not in message
    assert "no qnode node answered at " + ", ".join(addresses) in message


async def test_attempts_are_bounded():
    accepted = []

    async def hang_up(reader, writer):
        accepted.append(1)
        writer.close()

    listener = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with qnode.Client([f"127.0.0.1:{port}"], attempts_max=3, backoff_base=0.001,
                                rng=random.Random(4)) as c:
            with pytest.raises(qnode.Unavailable):
                await c.ping()
        assert len(accepted) == 3
    finally:
        listener.close()
        await listener.wait_closed()


async def test_backoff_is_jittered_from_the_injected_rng(monkeypatch):
    delays = []

    async def fake_sleep(d):
        delays.append(d)

    def run(seed):
        delays.clear()
        c = qnode.Client(["127.0.0.1:1"], backoff_base=0.1, backoff_max=0.4, rng=random.Random(seed))
        return c

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    c = run(5)
    for attempt in range(1, 6):
        await c._backoff(attempt, None)
    first = list(delays)
    c = run(5)
    for attempt in range(1, 6):
        await c._backoff(attempt, None)
    assert delays == first                       # same seed, same jitter
    caps = [0.1, 0.2, 0.4, 0.4, 0.4]
    assert all(cap / 2 <= d <= cap for d, cap in zip(first, caps)), first


async def test_consume_with_credit_and_ack(served):
    api, server = served
    async with qnode.Client([addr(server)]) as c:
        q = await c.create_queue("push")
        await q.send_batch([b"%d" % i for i in range(5)])
        got = []
        async with q.consume(prefetch=2) as stream:
            async for msg in stream:
                got.append(msg.body)
                await msg.delete()
                if len(got) == 5:
                    break
        assert got == [b"0", b"1", b"2", b"3", b"4"]
        await wait_for(lambda: api.consumers_closed == 1)
        assert not api.queues["push"].inflight


async def test_consume_auto_extend_keeps_extending_until_settled(served):
    api, server = served
    async with qnode.Client([addr(server)]) as c:
        q = await c.create_queue("extend")
        await q.send(b"held")
        async with q.consume(prefetch=1, visibility_timeout=1, auto_extend=True) as stream:
            msg = await stream.__anext__()
            await wait_for(lambda: api.visibility_changes >= 2, timeout=5)
            await msg.delete()
            settled_at = api.visibility_changes
            assert not stream._extenders
        assert api.visibility_changes == settled_at


async def test_consume_resubscribes_after_a_lost_connection(served):
    api, server = served
    async with qnode.Client([addr(server)], backoff_base=0.001, rng=random.Random(6)) as c:
        q = await c.create_queue("resub")
        await q.send(b"first")
        async with q.consume(prefetch=1) as stream:
            first = await stream.__anext__()
            assert first.body == b"first"
            abort_connections(server)
            # The unacked message returns to the queue when the server closes the consumer,
            # and the resubscribed stream delivers it again.
            again = await asyncio.wait_for(stream.__anext__(), 10)
            assert again.body == b"first"
            await again.delete()


async def test_oversized_body_is_refused_locally_and_the_connection_survives(served):
    api, server = served
    async with qnode.Client([addr(server)]) as c:
        q = await c.create_queue("big")
        limit = c.server_info["limits"]["message_size_max"]
        await q.send(b"x" * limit)
        with pytest.raises(qnode.MessageTooLarge):
            await q.send(b"x" * (limit + 1))
        await c.ping()
        assert server.stats.protocol_errors == 0


async def test_list_queues_follows_pages_beyond_one_reply(served):
    api, server = served
    for i in range(1205):
        await api.create_queue(f"q{i:05d}")
    async with qnode.Client([addr(server)]) as c:
        names = await c.list_queues()
    assert names == [f"q{i:05d}" for i in range(1205)]


async def test_not_leader_hint_sends_the_retry_to_the_named_node():
    class Redirecting(FakeApi):
        def __init__(self, hint):
            super().__init__()
            self.hint = hint

        async def create_queue(self, name, attributes=None, tags=None):
            raise qnode.NotLeader("ask the leader", leader_hint=self.hint)

    leader_api = FakeApi()
    leader = await start_server(leader_api)
    follower = await start_server(Redirecting(addr(leader)))
    try:
        async with qnode.Client([addr(follower)], backoff_base=0.001, rng=random.Random(8)) as c:
            await c.create_queue("routed")
            assert c.connected_address == addr(leader)
            assert "routed" in leader_api.queues
    finally:
        await follower.stop(1000)
        await leader.stop(1000)


async def test_timeout_keyword_bounds_one_call_below_the_client_default(served):
    """Per-call timeouts: `timeout=` on a call overrides the client's request_timeout."""
    api, server = served
    async with qnode.Client([addr(server)], request_timeout=30) as c:
        q = await c.create_queue("slow")
        api.send_gate = asyncio.Event()           # the server holds every send until released
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(qnode.RequestTimeout):
            await q.send(b"x", timeout=0.2)
        assert loop.time() - started < 5           # far below the client's 30 s default
        api.send_gate.set()
