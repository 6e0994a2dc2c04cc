"""The asyncio UDP shell on 127.0.0.1: three real `Membership` instances in one process.

Goal: the shell drives the core over real datagrams: members find each other through a seed, a
stopped member is declared down by the others, a leaving member is seen as left, and metadata
updates reach subscribers. Method: `SwimConfig.local_test()` (100 ms probe period), ephemeral
ports, and a subscriber per member feeding a bounded asyncio.Queue; every wait is an await on
those events with a deadline (never a sleep)."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest

from qnode.membership import codec
from qnode.membership.config import SwimConfig
from qnode.membership.types import MemberDown, MemberLeft, MemberUp, MemberUpdated, Meta, State
from qnode.membership.udp import Membership

DEADLINE_S = 20.0


class Watcher:
    """Collects one member's events; `wait(pred)` awaits the first matching one."""

    def __init__(self, membership: Membership) -> None:
        self.membership = membership
        self.queue: asyncio.Queue = asyncio.Queue(maxsize=10_000)
        self.seen: list = []
        membership.subscribe(self.queue.put_nowait)

    async def wait(self, predicate, timeout_s: float = DEADLINE_S):
        for event in self.seen:
            if predicate(event):
                return event
        async with asyncio.timeout(timeout_s):
            while True:
                event = await self.queue.get()
                self.seen.append(event)
                if predicate(event):
                    return event


def is_(kind, node_id):
    return lambda e: isinstance(e, kind) and e.member.node_id == node_id


async def start_three():
    config = SwimConfig.local_test()
    a = await Membership.start("a", "127.0.0.1", 0, Meta.build(roles=("metadata",)), [], config,
                               rng=random.Random(1))
    wa = Watcher(a)
    b = await Membership.start("b", "127.0.0.1", 0, Meta.build(roles=("backend",)), [a.address],
                               config, rng=random.Random(2))
    wb = Watcher(b)
    c = await Membership.start("c", "127.0.0.1", 0, Meta.build(roles=("frontend",)), [a.address],
                               config, rng=random.Random(3))
    wc = Watcher(c)
    for watcher, others in ((wa, "bc"), (wb, "ac"), (wc, "ab")):
        for other in others:
            await watcher.wait(is_(MemberUp, other))
    return (a, b, c), (wa, wb, wc)


async def stop_all(members):
    for m in members:
        await m.stop()


async def test_stopped_member_is_declared_down_by_the_others():
    (a, b, c), (wa, wb, wc) = await start_three()
    try:
        assert a.joined and b.joined and c.joined
        assert {m.node_id for m in a.members() if m.state == State.ALIVE} == {"a", "b", "c"}
        await c.stop()                     # no leave: to the others this is a crash
        down_at_a = await wa.wait(is_(MemberDown, "c"))
        down_at_b = await wb.wait(is_(MemberDown, "c"))
        assert down_at_a.member.state == State.DEAD
        assert down_at_b.member.state == State.DEAD
        assert {m.node_id for m in b.members() if m.state == State.ALIVE} == {"a", "b"}
    finally:
        await stop_all((a, b, c))


async def test_leaving_member_is_seen_as_left_and_metadata_updates_arrive():
    (a, b, c), (wa, wb, wc) = await start_three()
    try:
        b.update_meta(Meta.build(roles=("backend",), cell="c9", load={"queues": 7}))
        updated = await wa.wait(is_(MemberUpdated, "b"))
        assert updated.member.meta.load_map() == {"queues": 7}
        await b.leave()
        await b.stop()
        left_at_a = await wa.wait(is_(MemberLeft, "b"))
        await wc.wait(is_(MemberLeft, "b"))
        assert left_at_a.member.state == State.LEFT
        assert not [e for e in wa.seen if is_(MemberDown, "b")(e)]
    finally:
        await stop_all((a, b, c))


async def test_wildcard_bind_needs_an_advertised_host():
    with pytest.raises(ValueError):
        await Membership.start("x", "0.0.0.0", 0, Meta(), [], SwimConfig.local_test())


def test_down_detection_under_uvloop():
    """The node runs on uvloop: the same crash scenario on a uvloop event loop."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        (a, b, c), (wa, wb, wc) = await start_three()
        try:
            await b.stop()
            await wa.wait(is_(MemberDown, "b"))
            await wc.wait(is_(MemberDown, "b"))
        finally:
            await stop_all((a, b, c))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())


def test_host_names_in_seeds_and_gossip_under_uvloop():
    """uvloop's sendto refuses a host name (ValueError). A seed given as a name is resolved at
    start; a member gossiped with a name (any peer can send one) used to end the probe loop."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario() -> None:
        config = SwimConfig.local_test()
        a = await Membership.start("a", "127.0.0.1", 0, Meta.build(roles=("metadata",)), [], config,
                                   rng=random.Random(1))
        wa = Watcher(a)
        port = int(a.address.rsplit(":", 1)[1])
        b = await Membership.start("b", "127.0.0.1", 0, Meta.build(roles=("backend",)),
                                   [f"localhost:{port}"], config, rng=random.Random(2))
        members = [a, b]
        try:
            await wa.wait(is_(MemberUp, "b"))
            named = codec.Update("named", "localhost:9", 1, State.ALIVE, Meta.build(roles=("backend",)), "named")
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with sender:
                sender.sendto(codec.encode(codec.Gossip("named", (named,))), ("127.0.0.1", port))
            await wa.wait(is_(MemberUp, "named"))
            async with asyncio.timeout(DEADLINE_S):    # a probes it: the send fails, is counted
                while a.send_errors == 0:
                    await asyncio.sleep(0.01)           # a condition poll with a deadline
            c = await Membership.start("c", "127.0.0.1", 0, Meta.build(roles=("frontend",)),
                                       [a.address], config, rng=random.Random(3))
            members.append(c)
            await wa.wait(is_(MemberUp, "c"))           # a's loop still runs
            assert not a._task.done()
        finally:
            await stop_all(members)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())
