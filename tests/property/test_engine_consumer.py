"""Push-consumer flow control never exceeds prefetch, and close() returns unsettled messages.

Method: hypothesis draws a prefetch per consumer and a sequence of actions (take the next pushed
message, ack-and-settle some, close-and-reopen a consumer) run against a BackendService on a
temporary WAL (fsync off: durability is not what is tested here). After every action: each
consumer holds at most `prefetch` unsettled messages, and the queue's in-flight count equals the
sum of what the consumers hold (nothing leaks, nothing is double-delivered).
Sharing: K consumers with the same prefetch drain M messages (a backlog sent before they start,
or sent while all K are parked), acking each (or nacking a drawn subset once, which must come back
exactly once more). Each consumer acks at least M/(2K); the union of acks is exactly the M
messages; no message is delivered again except after its own nack (nothing acked late); the
queue ends empty."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qnode.backend.service import BackendConfig, BackendService
from qnode.frontend.api import SendEntry
from qnode.protocol.errors import ShuttingDown
from qnode.wal.writer import WalConfig

MESSAGES = 25
ACTIONS = st.lists(st.tuples(st.sampled_from(["next", "ack", "reopen"]), st.integers(0, 1),
                             st.integers(1, 4)), min_size=1, max_size=25)


async def scenario(path: Path, prefetch: tuple[int, int], actions: list) -> None:
    svc = await BackendService.open(path, BackendConfig(wal=WalConfig(fsync=False, disk_reserve_size=0)))
    try:
        await svc.create_queue("q")
        for start in range(0, MESSAGES, 10):
            await svc.send_messages("q", [SendEntry(b"%d" % i, entry_id=str(i))
                                          for i in range(start, min(start + 10, MESSAGES))])
        consumers = [await svc.open_consumer("q", p) for p in prefetch]
        held: list[list[str]] = [[], []]          # receipts returned by next(), unsettled
        seen: set[str] = set()
        for action, which, count in actions:
            c = consumers[which]
            if action == "next":
                for _ in range(count):
                    if len(held[which]) >= prefetch[which]:
                        break                      # no credit: next() would (rightly) block
                    async with asyncio.timeout(5):
                        m = await c.next()
                    assert m.message_id not in seen or m.system["ApproximateReceiveCount"] != "1"
                    seen.add(m.message_id)
                    held[which].append(m.receipt)
            elif action == "ack" and held[which]:
                done, held[which] = held[which][:count], held[which][count:]
                assert await svc.delete_messages("q", done) == [None] * len(done)
                c.settle(len(done))
            elif action == "reopen":
                await c.close()
                held[which] = []
                consumers[which] = await svc.open_consumer("q", prefetch[which])
            for i, cons in enumerate(consumers):
                assert cons.unsettled <= prefetch[i]
            attrs = await svc.get_queue_attributes("q")
            assert int(attrs["ApproximateNumberOfMessagesNotVisible"]) == sum(c.unsettled for c in consumers)
        for c in consumers:
            await c.close()
        attrs = await svc.get_queue_attributes("q")
        assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    finally:
        await svc.close()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefetch=st.tuples(st.integers(1, 5), st.integers(1, 5)), actions=ACTIONS)
def test_push_flow_control_never_exceeds_prefetch(prefetch: tuple[int, int], actions: list) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp), prefetch, actions))


# --- several push consumers share one queue -----------------------------------------------------

async def _until(cond, seconds: float = 10.0) -> None:
    """Poll `cond()` until true, failing after `seconds` (no fixed sleeps)."""
    async with asyncio.timeout(seconds):
        while not cond():
            await asyncio.sleep(0.001)


async def share_scenario(path: Path, k: int, prefetch: int, m: int, live: bool,
                         nack_once: frozenset[int]) -> None:
    svc = await BackendService.open(path, BackendConfig(wal=WalConfig(fsync=False, disk_reserve_size=0)))
    try:
        await svc.create_queue("q")
        bodies = [b"%d" % i for i in range(m)]

        async def send_all() -> None:
            for start in range(0, m, 10):
                results = await svc.send_messages("q", [SendEntry(b, entry_id=str(i))
                                                        for i, b in enumerate(bodies[start:start + 10])])
                assert all(not isinstance(r, Exception) for r in results), results

        if not live:
            await send_all()                     # a backlog waiting for the consumers
        consumers = [await svc.open_consumer("q", prefetch, visibility_timeout_ms=60_000) for _ in range(k)]
        acked: list[list[bytes]] = [[] for _ in range(k)]
        deliveries: list[tuple[bytes, str]] = []
        done = asyncio.Event()

        async def run(i: int) -> None:
            c = consumers[i]
            while True:
                try:
                    msg = await c.next()
                except ShuttingDown:
                    return
                assert c.unsettled <= prefetch
                count = msg.system["ApproximateReceiveCount"]
                deliveries.append((msg.body, count))
                if int(msg.body) in nack_once and count == "1":
                    await svc.nack("q", msg.receipt, 0, "retry me")   # redelivered to anyone
                else:
                    assert await svc.delete_messages("q", [msg.receipt]) == [None]
                    acked[i].append(msg.body)
                c.settle(receipts=[msg.receipt])
                if sum(map(len, acked)) == m:
                    done.set()

        async with asyncio.timeout(60), asyncio.TaskGroup() as tg:
            for i in range(k):
                tg.create_task(run(i))
            if live:                              # every consumer parked on an empty queue first
                await _until(lambda: svc._engine._queues["q"].waiter_count == k)
                await send_all()
            await done.wait()
            for c in consumers:
                await c.close()
        everything = sorted(b for got in acked for b in got)
        assert everything == sorted(bodies), "the union is not exactly the M messages, once each"
        # nobody acked late: a message was delivered again only after its own nack
        expected = {b: ("1", "2") if int(b) in nack_once else ("1",) for b in bodies}
        assert sorted(deliveries) == sorted((b, c) for b, cs in expected.items() for c in cs)
        for i, got in enumerate(acked):
            assert len(got) >= m / (2 * k), ("unfair share", i, [len(a) for a in acked])
        attrs = await svc.get_queue_attributes("q")
        assert (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")
    finally:
        await svc.close()


SHARE = dict(k=st.integers(2, 4), prefetch=st.integers(1, 5), per_consumer=st.integers(5, 15),
             live=st.booleans(), nack_seed=st.sets(st.integers(0, 59), max_size=8))


def _share(k: int, prefetch: int, per_consumer: int, live: bool, nack_seed: set[int]) -> None:
    m = k * per_consumer
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(share_scenario(Path(tmp), k, prefetch, m, live,
                                   frozenset(i for i in nack_seed if i < m)))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**SHARE)
def test_push_consumers_share_a_queue_fairly(k: int, prefetch: int, per_consumer: int, live: bool,
                                             nack_seed: set[int]) -> None:
    _share(k, prefetch, per_consumer, live, nack_seed)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**SHARE)
def test_push_consumers_share_a_queue_fairly_long(k: int, prefetch: int, per_consumer: int, live: bool,
                                                  nack_seed: set[int]) -> None:
    _share(k, prefetch, per_consumer, live, nack_seed)
