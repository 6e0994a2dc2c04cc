"""BinaryServer over real TCP on 127.0.0.1 (port 0) with the in-memory FakeApi.

Goal: the connection shell's promises. Method: raw frame clients (tests/unit/frontend/helpers.py)
pipeline requests, send garbage, or stop reading, and the tests await replies, events and
polled conditions with deadlines. Covers: out-of-order pipelining (a long poll never blocks a
ping), inbound backpressure (never more than the in-flight max at the API), slow-consumer close,
a protocol violation closing only its own connection, version refusal, the connection bound,
the request cache across connections, push subscriptions, and orderly stop.
"""

from __future__ import annotations

import asyncio
import socket
import struct

from qnode.protocol.errors import ErrorCode
from qnode.protocol.messages import ErrorResponse, Goodbye, Hello, Push, Response
from tests.unit.frontend.fake_api import FakeApi
from tests.unit.frontend.helpers import RawClient, expect_goodbye, start_server, wait_for


async def test_hello_reply_carries_server_info():
    server = await start_server(frame_size_max=1 << 20)
    try:
        c = await RawClient.connect(server)
        info = c.core.peer_version
        assert info == 1
        status = (await c.call("status")).result
        assert status["node_id"] == "test-node"
        assert status["limits"] == {"frame_size_max": 1 << 20, "message_size_max": 1 << 20}
        assert status["durability"] == "fsync"
        await c.close()
    finally:
        await server.stop(1000)


async def test_long_poll_does_not_block_a_ping_on_the_same_connection():
    api = FakeApi()
    server = await start_server(api)
    try:
        await api.create_queue("q")
        c = await RawClient.connect(server)
        poll = c.send("receive", {"queue": "q", "wait_ms": 20_000})
        ping = c.send("ping")
        first = await c.event()
        assert (type(first), first.cid) == (Response, ping)       # out of order
        sender = await RawClient.connect(server)
        await sender.call("send", {"queue": "q", "entries": [{"body": b"wake"}]})
        second = await c.event()
        assert second.cid == poll
        assert second.result["messages"][0]["body"] == b"wake"
        await c.close()
        await sender.close()
    finally:
        await server.stop(1000)


async def test_inflight_requests_are_bounded_by_pausing_reads():
    api = FakeApi()
    server = await start_server(api, inflight_requests_per_connection_max=4,
                                inflight_requests_per_connection_low=2)
    try:
        await api.create_queue("q")
        api.send_gate = asyncio.Event()
        c = await RawClient.connect(server)
        cids = [c.send("send", {"queue": "q", "entries": [{"body": b"%d" % i}]}) for i in range(20)]
        await wait_for(lambda: api.send_calls == 4)
        [conn] = list(server._connections)
        assert conn.inflight == 4
        assert conn._reading_paused
        assert server.stats.reads_paused_total >= 1
        # Nothing beyond the bound reaches the API while the gate holds the first four.
        assert api.send_calls == 4
        api.send_gate.set()
        got = [await c.event() for _ in cids]
        assert sorted(ev.cid for ev in got) == cids
        assert all(type(ev) is Response for ev in got)
        assert api.send_calls == 20
        await c.close()
    finally:
        await server.stop(1000)


async def test_slow_consumer_is_closed_and_counted():
    api = FakeApi()
    server = await start_server(api, outbound_pending_size_high=64 * 1024,
                                outbound_pending_size_max=256 * 1024)
    try:
        await api.create_queue("q")
        body = b"x" * 200_000
        c = await RawClient.connect(server)
        await c.call("send", {"queue": "q", "entries": [{"body": body}]})
        # Shrink our receive buffer and never read: peek replies pile up on the server.
        c.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        for _ in range(200):
            c.send("peek", {"queue": "q", "max_count": 1})
        await wait_for(lambda: server.stats.slow_consumers_closed == 1, timeout=10)
        assert server.connection_count == 0
        other = await RawClient.connect(server)
        assert type(await other.call("ping")) is Response
        await other.close()
        c.writer.close()
    finally:
        await server.stop(1000)


async def test_garbage_gets_an_error_frame_and_closes_only_that_connection():
    server = await start_server()
    try:
        good = await RawClient.connect(server)
        bad = await RawClient.connect(server)
        bad.writer.write(struct.pack(">I", 3) + b"\xc1\xc1\xc1")
        await expect_goodbye(bad, ErrorCode.PROTOCOL_ERROR)
        assert type(await good.call("ping")) is Response
        assert server.stats.protocol_errors == 1
        await good.close()
        await bad.close()
    finally:
        await server.stop(1000)


async def test_oversized_frame_header_gets_frame_too_large():
    server = await start_server(frame_size_max=1024, msgpack_bin_len_max=512, msgpack_str_len_max=512)
    try:
        c = await RawClient.connect(server)
        c.writer.write(struct.pack(">I", 1 << 30))
        ev = await c.event()
        assert type(ev) is Goodbye
        assert ev.code == ErrorCode.FRAME_TOO_LARGE
        await c.close()
    finally:
        await server.stop(1000)


async def test_unsupported_version_is_refused():
    server = await start_server()
    try:
        c = await RawClient.connect(server, hello=False)
        c.writer.write(c.core.send(Hello(99)))
        ev = await c.event()
        assert type(ev) is Goodbye
        assert ev.code == ErrorCode.UNSUPPORTED_VERSION
        await c.close()
    finally:
        await server.stop(1000)


async def test_unknown_op_is_a_typed_error_and_the_connection_stays_open():
    server = await start_server()
    try:
        c = await RawClient.connect(server)
        ev = await c.call("frobnicate")
        assert type(ev) is ErrorResponse
        assert ev.error["code"] == ErrorCode.UNKNOWN_OPERATION
        assert type(await c.call("ping")) is Response
        await c.close()
    finally:
        await server.stop(1000)


async def test_connection_bound():
    server = await start_server(connections_max=2)
    try:
        a = await RawClient.connect(server)
        b = await RawClient.connect(server)
        c = await RawClient.connect(server, hello=False)
        ev = await c.event()
        assert type(ev) is Goodbye
        assert ev.code == ErrorCode.OVER_LIMIT
        assert server.stats.connections_rejected == 1
        assert server.stats.protocol_errors == 0
        await a.close()
        await wait_for(lambda: server.connection_count == 1)
        d = await RawClient.connect(server)
        assert type(await d.call("ping")) is Response
        for x in (b, c, d):
            await x.close()
    finally:
        await server.stop(1000)


async def test_retry_on_a_new_connection_while_first_attempt_runs_enqueues_once():
    api = FakeApi()
    server = await start_server(api)
    try:
        await api.create_queue("q")
        api.send_gate = asyncio.Event()
        first = await RawClient.connect(server)
        args = {"queue": "q", "entries": [{"body": b"once"}]}
        first.send("send", args, rid="rid-1")
        await api.send_started.wait()
        first.writer.close()                 # the client gives up on this connection
        second = await RawClient.connect(server)
        cid = second.send("send", args, rid="rid-1")
        await wait_for(lambda: server.request_cache.hit_count == 1)
        api.send_gate.set()
        ev = await second.event()
        assert ev.cid == cid
        assert type(ev) is Response
        assert api.send_calls == 1
        assert len(api.queues["q"].ready) == 1
        await second.close()
    finally:
        await server.stop(1000)


async def test_push_subscription_respects_credit_and_closes_on_disconnect():
    api = FakeApi()
    server = await start_server(api)
    try:
        await api.create_queue("q")
        c = await RawClient.connect(server)
        sid = (await c.call("subscribe", {"queue": "q", "prefetch": 2})).result["subscription"]
        await c.call("send", {"queue": "q", "entries": [{"body": b"%d" % i} for i in range(3)]})
        pushes = [await c.event(), await c.event()]
        assert all(type(p) is Push and p.sid == sid for p in pushes)
        assert [p.message["body"] for p in pushes] == [b"0", b"1"]
        # Out of credit: the third message waits until one is acked.
        ack = c.send("delete", {"queue": "q", "receipts": [pushes[0].message["receipt"]], "subscription": sid})
        events = [await c.event(), await c.event()]
        by_type = {type(e): e for e in events}
        assert by_type[Response].cid == ack
        assert by_type[Push].message["body"] == b"2"
        await c.close()
        await wait_for(lambda: api.consumers_closed == 1)
        # Unacked messages went back to the queue.
        assert sorted(m.entry.body for m in api.queues["q"].ready) == [b"1", b"2"]
    finally:
        await server.stop(1000)


async def test_stop_answers_parked_long_polls_and_finishes_running_requests():
    api = FakeApi()
    server = await start_server(api)
    await api.create_queue("q")
    api.send_gate = asyncio.Event()
    c = await RawClient.connect(server)
    poll = c.send("receive", {"queue": "q", "wait_ms": 20_000})
    send = c.send("send", {"queue": "q", "entries": [{"body": b"x"}]}, rid="r")
    await api.send_started.wait()
    stopping = asyncio.ensure_future(server.stop(5000))
    ev = await c.event()
    assert (ev.cid, ev.result) == (poll, {"messages": []})
    api.send_gate.set()
    ev = await c.event()
    assert ev.cid == send
    assert type(ev) is Response
    await stopping
    assert await c.reader.read() == b""
    await c.close()


async def test_peer_closing_its_side_still_gets_inflight_replies():
    server = await start_server()
    try:
        c = await RawClient.connect(server)
        cids = [c.send("ping") for _ in range(5)]
        c.writer.write_eof()
        got = [await c.event() for _ in cids]
        assert sorted(e.cid for e in got) == cids
        await wait_for(lambda: server.connection_count == 0)
        await c.close()
    finally:
        await server.stop(1000)


async def test_connection_without_hello_is_closed_after_the_hello_timeout():
    server = await start_server(hello_timeout_ms=50)
    try:
        c = await RawClient.connect(server, hello=False)
        ev = await c.event()
        assert type(ev) is Goodbye
        assert ev.code == ErrorCode.PROTOCOL_ERROR
        assert await c.reader.read() == b""
        await c.close()
    finally:
        await server.stop(1000)


async def test_a_correlation_id_already_in_flight_closes_only_that_connection():
    api = FakeApi()
    server = await start_server(api)
    try:
        await api.create_queue("q")
        c = await RawClient.connect(server)
        other = await RawClient.connect(server)
        cid = c.send("receive", {"queue": "q", "wait_ms": 20_000})      # parked: cid in flight
        c.next_cid = cid                                                  # reuse it
        c.send("ping")
        await expect_goodbye(c, ErrorCode.PROTOCOL_ERROR, "already in flight")
        assert type(await other.call("ping")) is Response               # others unaffected
        await wait_for(lambda: api.receives_cancelled == 1)              # its parked poll ended
        await other.close()
        await c.close()
    finally:
        await server.stop(1000)


async def test_a_frame_left_incomplete_is_closed_after_the_frame_timeout_but_idle_ones_stay():
    server = await start_server(frame_timeout_ms=50)
    try:
        idle = await RawClient.connect(server)                           # between frames
        stalled = await RawClient.connect(server)
        stalled.writer.write(struct.pack(">I", 100) + b"\x93\x02")       # 6 of 104 bytes
        await expect_goodbye(stalled, ErrorCode.PROTOCOL_ERROR, "incomplete")
        # The idle connection outlived the frame timeout (the stalled one took longer than it).
        assert type(await idle.call("ping")) is Response
        assert server.stats.protocol_errors == 1
        await idle.close()
        await stalled.close()
    finally:
        await server.stop(1000)


async def test_a_receive_cancelled_before_it_started_still_lets_the_connection_finish():
    """Data and EOF in one read (uvloop delivers both before any task runs): the long poll is
    cancelled before its task ran a step; the connection must still finish and close."""
    from benchmarks.bench_request_path import MemoryTransport
    from qnode.frontend.connection import ServerConnection
    from qnode.protocol.framing import encode_frame

    api = FakeApi()
    server = await start_server(api)
    try:
        await api.create_queue("q")
        conn = ServerConnection(server)
        transport = MemoryTransport(lambda data: None)
        conn.connection_made(transport)
        conn.data_received(encode_frame([0, 1, None, "t"]))                       # HELLO
        conn.data_received(encode_frame([2, 1, "receive", {"queue": "q", "wait_ms": 20_000}, None]))
        conn.eof_received()                       # before the receive task's first step
        await wait_for(lambda: transport.closed)
        conn.connection_lost(None)
    finally:
        await server.stop(1000)
