"""Issue #2's crash test against a real `qnode start`: acknowledged sends and deletes survive SIGKILL.

Method: one `NodeProcess` on one data directory; in each of 20 rounds, three sender tasks and one
deleter task drive it through `qnode.Client` concurrently, and the node is SIGKILLed after a
random number of acknowledgements (seeded `random.Random`), then restarted on the same
directory. The test records every body it tried to send, every acknowledged send (body -> id),
every id whose delete was started, and every acknowledged delete. The queue has
VisibilityTimeout 0, so nothing the deleter received is hidden at the kill, and the deleter is the
only receiver while the load runs (its receipts are always the latest, so an acknowledged delete
really removed the message). After each restart the test drains the queue with receives that
hold the messages, checks the node's counts agree, and returns them to visible; then:
every acknowledged send (and every message seen after an earlier restart) whose delete was not
started is present with its id; nothing is present that was never sent, and nothing twice; no
acknowledged delete ever comes back.
"""

from __future__ import annotations

import asyncio
import random
import time

import qnode
from qnode.protocol.errors import QnodeError

ROUNDS = 20
SENDERS = 3
QUEUE = "crash"
HOLD_S = 60            # the drain holds messages this long (returned to visible at once after)
TIME_BUDGET_S = 90


class Ledger:
    def __init__(self) -> None:
        self.attempted: set[str] = set()          # bodies
        self.acked: dict[str, str] = {}           # body -> message id
        self.delete_started: set[str] = set()     # ids
        self.deleted: set[str] = set()            # ids whose delete was acknowledged
        self.seen: dict[str, str] = {}            # id -> body, present after some restart
        self.acks = 0
        self.target = 0
        self.reached = asyncio.Event()

    def ack(self) -> None:
        self.acks += 1
        if self.acks >= self.target:
            self.reached.set()


async def sender(q, ledger: Ledger, round_index: int, task: int, rng: random.Random) -> None:
    n = 0
    while True:
        if rng.random() < 0.5:
            bodies = [f"r{round_index}-s{task}-{n + i}" for i in range(rng.randint(2, 10))]
        else:
            bodies = [f"r{round_index}-s{task}-{n}"]
        n += len(bodies)
        ledger.attempted.update(bodies)
        if len(bodies) == 1:
            results = [await q.send(bodies[0].encode())]
        else:
            results = await q.send_batch([b.encode() for b in bodies])
        for body, result in zip(bodies, results):
            if not isinstance(result, QnodeError):
                ledger.acked[body] = result.id
                ledger.ack()


async def deleter(q, ledger: Ledger, rng: random.Random) -> None:
    while True:
        msgs = await q.receive(max_messages=10, wait=0.2)
        chosen = [m for m in msgs if rng.random() < 0.6]
        if not chosen:
            continue
        ledger.delete_started.update(m.id for m in chosen)
        outcomes = await q.delete_batch(chosen)
        for m, err in zip(chosen, outcomes):
            if err is None:
                ledger.deleted.add(m.id)
                ledger.ack()


async def load_until_kill(node, ledger: Ledger, round_index: int, rng: random.Random) -> None:
    ledger.acks = 0
    ledger.target = rng.randint(1, 150)
    ledger.reached.clear()
    client = qnode.Client([node.binary], attempts_max=1, request_timeout=5)
    q = client.queue(QUEUE)
    tasks = [asyncio.ensure_future(sender(q, ledger, round_index, i, random.Random(rng.random())))
             for i in range(SENDERS)]
    tasks.append(asyncio.ensure_future(deleter(q, ledger, random.Random(rng.random()))))
    try:
        waiter = asyncio.ensure_future(ledger.reached.wait())
        done, _ = await asyncio.wait([waiter, *tasks], timeout=20,
                                     return_when=asyncio.FIRST_COMPLETED)
        assert waiter in done, [t.exception() for t in tasks if t.done()]
        node.kill()                               # SIGKILL, mid-traffic
    finally:
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
    for r in results:
        # After the kill, calls fail with a typed error or are cancelled; nothing else is expected.
        assert isinstance(r, (asyncio.CancelledError, QnodeError)), repr(r)


async def drain_and_check(node, ledger: Ledger, round_index: int) -> None:
    async with qnode.Client([node.binary]) as c:
        q = c.queue(QUEUE)
        held = []
        while True:
            got = await q.receive(max_messages=10, wait=0, visibility_timeout=HOLD_S)
            if not got:
                break
            held += got
        attrs = await q.attributes()
        present = {m.id: m.body.decode() for m in held}
        assert len(present) == len(held), f"round {round_index}: a message was delivered twice"
        # Nothing is hidden from the drain (no in-flight or delayed messages after the restart).
        assert (int(attrs["ApproximateNumberOfMessages"]),
                int(attrs["ApproximateNumberOfMessagesNotVisible"]),
                int(attrs["ApproximateNumberOfMessagesDelayed"])) == (0, len(held), 0), attrs

        bodies = list(present.values())
        assert len(set(bodies)) == len(bodies), f"round {round_index}: a send was applied twice"
        never_sent = set(bodies) - ledger.attempted
        assert not never_sent, f"round {round_index}: never sent: {sorted(never_sent)[:5]}"
        for mid, body in present.items():
            if body in ledger.acked:
                assert ledger.acked[body] == mid, f"round {round_index}: {body} changed id"
        back = ledger.deleted & present.keys()
        assert not back, f"round {round_index}: acknowledged deletes came back: {sorted(back)[:5]}"
        must = {mid: body for body, mid in ledger.acked.items()} | ledger.seen
        missing = {mid: body for mid, body in must.items()
                   if mid not in ledger.delete_started and mid not in present}
        assert not missing, f"round {round_index}: lost {len(missing)}: {sorted(missing.values())[:5]}"
        ledger.seen.update(present)

        errors = await q.change_visibility_batch(held, 0)
        assert errors == [None] * len(held), errors


async def test_acknowledged_operations_survive_sigkill_of_a_node(node) -> None:
    rng = random.Random(20261128)
    ledger = Ledger()
    started = time.monotonic()
    async with qnode.Client([node.binary]) as c:
        await c.create_queue(QUEUE, attributes={"VisibilityTimeout": "0"})
    for round_index in range(ROUNDS):
        await load_until_kill(node, ledger, round_index, rng)
        node.start()
        await drain_and_check(node, ledger, round_index)
        assert time.monotonic() - started < TIME_BUDGET_S, f"too slow: {round_index + 1} rounds"
    # The run exercised all three kinds of outcome.
    assert len(ledger.acked) > 100 and len(ledger.deleted) > 20
    assert ledger.seen, "nothing was left to check after restarts"
