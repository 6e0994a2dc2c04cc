"""Push-consumer flow control never exceeds prefetch, and close() returns unsettled messages.

Method: hypothesis draws a prefetch per consumer and a sequence of actions (take the next pushed
message, ack-and-settle some, close-and-reopen a consumer) run against a BackendService on a
temporary WAL (fsync off: durability is not what is tested here). After every action: each
consumer holds at most `prefetch` unsettled messages, and the queue's in-flight count equals the
sum of what the consumers hold (nothing leaks, nothing is double-delivered)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qnode.backend.service import BackendConfig, BackendService
from qnode.frontend.api import SendEntry
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
