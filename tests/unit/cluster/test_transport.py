"""Peer transport and forwarding (qnode/cluster/transport.py, metanode.py) in one process.

Method: three `MetadataNode`s, each behind a real `BinaryServer` on a loopback port with the
peer ops registered (`extra_ops`), linked by `PeerPool`s over the binary protocol; the voter set
is pre-stored (no SWIM). Checks: one leader is elected over TCP, a follower's proposal is
forwarded and applied locally before it returns, the barrier works, and malformed `raft`
requests get typed errors. Waits poll conditions with deadlines."""

from __future__ import annotations

import asyncio
import time

import msgpack
import pytest

from qnode import limits
from qnode.client.connection import ClientConnection
from qnode.cluster import bootstrap, transport
from qnode.cluster.metanode import MetadataNode
from qnode.cluster.transport import PeerPool, decode_batch, wire_encode
from qnode.frontend.server import BinaryServer
from qnode.membership.types import Member, MemberDown, MemberLeft, MemberUp, Meta, State
from qnode.metadata import commands
from qnode.metadata.raft.messages import Heartbeat, InstallSnapshot, Snapshot
from qnode.protocol.errors import InvalidParameter, QueueAlreadyExists, Unavailable
from qnode.protocol.framing import FrameLimits


class _NoApi:
    """The listeners need an API object; these tests only use the peer ops."""


async def wait_until(fn, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while not fn():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)


@pytest.fixture
async def trio(tmp_path):
    ids = ["a", "b", "c"]
    nodes, servers = {}, {}
    for nid in ids:
        bootstrap.store_voters(tmp_path / nid, tuple(ids))
        pool = PeerPool(nid)
        node = MetadataNode(nid, tmp_path / nid, bootstrap_expect=3, has_seeds=True, pool=pool)
        server = BinaryServer(_NoApi(), node_info={"node_id": nid}, extra_ops=node.extra_ops())
        host, port = await server.start("127.0.0.1", 0)
        node.binary_address = f"{host}:{port}"
        nodes[nid], servers[nid] = node, server
    for nid, node in nodes.items():
        for other, o in nodes.items():
            node.pool.set_address(other, o.binary_address)
        await node.start()
    yield nodes
    for nid, node in nodes.items():
        await servers[nid].stop(1000)
        await node.stop()
        await node.pool.close()


async def test_a_group_over_tcp_elects_one_leader_and_forwards_proposals(trio):
    await wait_until(lambda: sum(n.is_leader for n in trio.values()) == 1
                     and len({n.leader for n in trio.values()}) == 1)
    leader = next(n for n in trio.values() if n.is_leader)
    follower = next(n for n in trio.values() if not n.is_leader)
    result = await follower.propose(commands.create_queue("q", {"VisibilityTimeout": "5"}))
    assert follower.store.state.get_queue("q").attributes == {"VisibilityTimeout": "5"}
    assert result.index <= follower.store.driver.applied_index
    with pytest.raises(QueueAlreadyExists):        # decided by the state machine, on the leader
        await follower.propose(commands.create_queue("q", {"VisibilityTimeout": "6"}))
    await leader.propose(commands.create_queue("r"))
    for node in trio.values():
        await node.barrier()
    assert all(n.store.state.list_queues() == ["q", "r"] for n in trio.values())
    status = follower.status()
    assert status["raft"]["leader"] == leader.node_id
    assert status["raft"]["leader_address"] == leader.binary_address
    assert status["raft"]["compaction_failures"] == 0


async def test_malformed_raft_requests_get_typed_errors(trio):
    node = trio["a"]
    host, _, port = node.binary_address.rpartition(":")
    conn = await ClientConnection.open(host, int(port), frame_limits=FrameLimits())
    try:
        for bad in ({}, {"m": "x"}, {"m": [1]}, {"m": [b"\x93\x01"]}, {"m": [[5, 1, "b"]]},
                    {"m": [[7, 1, "b", "a", 1, 1, ["a"], [b"x", 3]]]},
                    {"m": [wire_encode(Heartbeat(1, "b", "z", 0, 0))]}):
            with pytest.raises(InvalidParameter):
                await conn.request("raft", bad)
        assert await conn.request("raft", {"m": []}) == {}
        assert conn.is_open                        # bad input never closes or crashes the node
    finally:
        conn.close()


def test_decode_batch_accepts_messages_for_this_node_only():
    msg = Heartbeat(3, "b", "a", 7, 0)
    assert decode_batch({"m": [wire_encode(msg)]}, "a") == [msg]
    with pytest.raises(InvalidParameter):
        decode_batch({"m": [wire_encode(msg)]}, "b")


def test_a_large_snapshot_travels_in_chunks_below_the_bin_bound():
    data = bytes(range(256)) * 9000                     # 2.3 MB, over the 1 MiB bin bound
    msg = InstallSnapshot(2, "b", "a", Snapshot(40, 2, ("a", "b", "c"), data))
    value = wire_encode(msg)
    assert all(len(chunk) <= transport.snapshot_chunk_size for chunk in value[-1])
    packed = msgpack.packb({"m": [value]}, use_bin_type=True)
    unpacked = msgpack.unpackb(packed, raw=False, max_bin_len=limits.msgpack_bin_len_max)
    assert decode_batch(unpacked, "a") == [msg]


async def test_send_to_an_unknown_or_full_peer_drops_without_blocking():
    pool = PeerPool("a")
    pool.send("nobody", Heartbeat(1, "a", "nobody", 0, 0))
    assert pool.dropped_count == 1
    pool.set_address("b", "127.0.0.1:9")           # nothing listens there
    for _ in range(transport.peer_queue_count_max + 5):
        pool.send("b", Heartbeat(1, "a", "b", 0, 0))
    assert pool.dropped_count >= 6
    await pool.close()


async def test_a_request_that_times_out_forgets_its_reply_and_the_connection():
    """A peer that stops answering (hung, or cut off): the timed-out request used to stay in the
    connection's table of pending replies, and later requests went down the same dead link."""
    gate = asyncio.Event()

    async def hang(args) -> dict:
        await gate.wait()
        return {}

    server = BinaryServer(_NoApi(), node_info={"node_id": "b"}, extra_ops={"hang": hang})
    host, port = await server.start("127.0.0.1", 0)
    pool = PeerPool("a")
    pool.set_address("b", f"{host}:{port}")
    try:
        with pytest.raises(Unavailable, match="did not answer hang"):
            await pool.request("b", "hang", {}, timeout_s=0.2)
        first = pool._peers["b"].conn
        assert first is None or not first.is_open         # dropped; the next request reconnects
        gate.set()
        assert await pool.request("b", "hang", {}, timeout_s=10) == {}
        second = pool._peers["b"].conn
        assert second is not None and second is not first and second.pending_count == 0
    finally:
        gate.set()
        await pool.close()
        await server.stop(1000)


async def test_a_forgotten_peer_frees_its_place_in_the_bounded_table():
    """The peer table is bounded and never shrank: departed (or spoofed) ids filled it for
    good and a real peer learnt later was ignored. SWIM's MemberDown/MemberLeft now forget."""
    pool = PeerPool("a")
    try:
        for i in range(transport.peers_count_max):
            pool.set_address(f"gone{i}", f"127.0.0.1:{10_000 + i}")
        pool.set_address("real", "127.0.0.1:9999")
        assert pool.address_of("real") is None               # the table is full
        tasks = [p.task for p in pool._peers.values()]
        for i in range(transport.peers_count_max):
            pool.forget(f"gone{i}")
        await asyncio.wait(tasks, timeout=5)
        assert all(t.done() for t in tasks)                   # their link tasks ended
        pool.set_address("real", "127.0.0.1:9999")
        assert pool.address_of("real") == "127.0.0.1:9999"
    finally:
        await pool.close()


async def test_metadata_members_down_or_left_are_forgotten_and_relearnt_on_up(tmp_path):
    node = MetadataNode("a", tmp_path, bootstrap_expect=3, has_seeds=True, pool=PeerPool("a"))
    meta = Meta.build(roles=("metadata",), binary_address="127.0.0.1:9999")
    try:
        for gone in (MemberDown, MemberLeft):
            member = Member("b", "127.0.0.1:9998", 1, State.ALIVE, meta)
            node._on_member_event(MemberUp(member))
            assert node.pool.address_of("b") == "127.0.0.1:9999"
            node._on_member_event(gone(member))
            assert node.pool.address_of("b") is None
    finally:
        await node.pool.close()
