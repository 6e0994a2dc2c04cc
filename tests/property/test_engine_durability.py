"""Durability gating of the engine under crashes at arbitrary durable LSNs.

Method: a hypothesis state machine drives the engine with durability reported explicitly (a WAL
stand-in whose durable LSN advances in random steps) and crash-restarts it from the durable prefix
of the log. It checks the promises of DESIGN.md "Semantics": a sent message is never receivable
before its record is durable; after a crash every acknowledged (durable) send that was not
durably deleted is present, nothing unacknowledged-and-lost is present, and no durable delete is
undone."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from qnode.frontend.api import SendEntry
from tests.unit.backend.harness import Harness


class DurabilityMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = Harness(auto_durable=False)
        self.h.create("q")
        self.h.make_durable_upto(self.h.lsn)
        self.acked: set[str] = set()              # send record durable
        self.pending: dict[str, int] = {}         # send record LSN, not yet durable
        self.deleted: set[str] = set()            # delete record durable
        self.deleting: dict[str, int] = {}        # delete record LSN, not yet durable
        self.receipts: list[tuple[str, str]] = []
        self.n = 0

    def _ids(self) -> set[str]:
        return {m.message_id for m in self.h.engine._queues["q"].messages.values()}

    @rule(count=st.integers(1, 3))
    def send(self, count: int) -> None:
        results = self.h.send("q", *[SendEntry(b"%d" % (self.n + i), entry_id=str(i)) for i in range(count)])
        self.n += count
        for r in results:
            self.pending[r.message_id] = self.h.lsn

    @rule(data=st.data())
    def durable(self, data: st.DataObject) -> None:
        lsn = data.draw(st.integers(self.h.durable, self.h.lsn))
        self.h.make_durable_upto(lsn)
        for mid, at in list(self.pending.items()):
            if at <= self.h.durable:
                self.acked.add(mid)
                del self.pending[mid]
        for mid, at in list(self.deleting.items()):
            if at <= self.h.durable:
                self.deleted.add(mid)
                del self.deleting[mid]

    @rule(n=st.integers(1, 10), vis=st.sampled_from([0, 1_000, 30_000]), delete=st.booleans())
    def receive(self, n: int, vis: int, delete: bool) -> None:
        got = self.h.recv("q", n, vis_ms=vis, delete=delete)
        for m in got:
            assert m.message_id in self.acked, "received before its send was durable"
            if delete:
                self.deleting[m.message_id] = self.h.lsn
            else:
                self.receipts.append((m.receipt, m.message_id))

    @precondition(lambda self: self.receipts)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        receipt, mid = data.draw(st.sampled_from(self.receipts))
        before = mid in self._ids()
        assert self.h.delete("q", receipt) == [None]
        if before and mid not in self._ids():
            self.deleting[mid] = self.h.lsn

    @rule(ms=st.sampled_from([1, 1_000, 30_000]))
    def advance(self, ms: int) -> None:
        self.h.advance(ms)

    @rule()
    def crash(self) -> None:
        self.h.restart()                           # keeps only the durable prefix of the log
        present = self._ids()
        assert (self.acked - self.deleted) <= present
        assert present <= self.acked
        assert not (present & self.deleted)
        self.pending.clear()                       # never acknowledged: lost
        self.deleting.clear()                      # never acknowledged: undone
        self.acked = present | self.deleted
        self.receipts = [(r, mid) for r, mid in self.receipts if mid in present]

    @invariant()
    def engine_invariants(self) -> None:
        self.h.engine.check_invariants()


TestDurability = DurabilityMachine.TestCase
TestDurability.settings = settings(max_examples=40, stateful_step_count=40, deadline=None,
                                   suppress_health_check=[HealthCheck.too_slow])
