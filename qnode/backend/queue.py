"""One queue's in-memory state: its messages, counters and the ready index that decides who is
delivered next. Owned by `Engine`; no I/O, no clock (times are passed in).

Ready index:
- Standard queues: one deque of READY messages per tenant key (MessageGroupId, or None), and a
  round-robin deque `rr` of the keys that have one. `take()` pops one message per tenant in turn,
  so a fair queue never lets one tenant's backlog starve another. Entries are validated lazily:
  a message that left READY by other means (GONE) is skipped when popped.
- FIFO queues: one `FifoGroup` per MessageGroupId holding its not-yet-leased messages in send
  order, plus `leased` (the messages of the group's current delivery). A group is deliverable
  iff nothing is leased and its head is READY; deliverable groups sit in `rr` (at most once,
  `in_rr`). When the last leased message settles, leased messages that came back READY return
  to the front of the group, in order.
Invariants (checked by `check()`): counters equal a recount of `messages` by state; every message
in `messages` is not GONE; a FIFO group's `inflight` equals its leased INFLIGHT messages.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from typing import Callable, Mapping

from qnode.backend import attributes as qattrs
from qnode.backend.message import DELAYED, GONE, INFLIGHT, PENDING, READY, Message


class FifoGroup:
    __slots__ = ("group_id", "queue", "leased", "inflight", "in_rr")

    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self.queue: deque[Message] = deque()
        self.leased: list[Message] = []
        self.inflight = 0
        self.in_rr = False


class Waiter:
    """A parked long poll. `done` is set once it was answered (lazily dropped from deques)."""

    __slots__ = ("waiter_id", "queue", "max_count", "visibility_ms", "deadline_ms", "delete",
                 "attempt_id", "done")

    def __init__(self, waiter_id: int, queue: "Queue", max_count: int, visibility_ms: int,
                 deadline_ms: int, delete: bool, attempt_id: str | None) -> None:
        self.waiter_id = waiter_id
        self.queue = queue
        self.max_count = max_count
        self.visibility_ms = visibility_ms
        self.deadline_ms = deadline_ms
        self.delete = delete
        self.attempt_id = attempt_id
        self.done = False


class Queue:
    __slots__ = ("queue_id", "name", "fifo", "attrs", "tags", "created_ms", "modified_ms",
                 "last_purge_ms", "messages", "counts", "bytes", "groups", "rr", "fgroups",
                 "waiters", "waiter_count", "dedup", "attempts", "scheduled", "arn",
                 "visibility_ms", "delay_ms", "retention_ms", "size_max", "wait_ms", "durability",
                 "backoff_ms", "redrive", "content_dedup", "dedup_by_group", "deleted",
                 "late", "newest_sent_ms")

    def __init__(self, queue_id: int, name: str, fifo: bool, attrs: Mapping[str, str],
                 tags: Mapping[str, str], created_ms: int, arn: str) -> None:
        self.queue_id = queue_id
        self.name = name
        self.fifo = fifo
        self.tags: dict[str, str] = dict(tags)
        self.created_ms = created_ms
        self.modified_ms = created_ms
        self.last_purge_ms: int | None = None
        self.arn = arn
        self.messages: dict[int, Message] = {}
        self.counts = [0, 0, 0, 0, 0]          # by state; GONE unused
        self.bytes = 0
        self.groups: dict[str | None, deque[Message]] = {}
        self.rr: deque = deque()
        self.fgroups: dict[str, FifoGroup] = {}
        self.waiters: deque[Waiter] = deque()
        self.waiter_count = 0
        self.dedup: OrderedDict[str, tuple[str, int, int]] = OrderedDict()  # key -> (id, seqno, expiry)
        self.attempts: OrderedDict[str, tuple[int, list]] = OrderedDict()
        self.scheduled: dict[str, Message] = {}  # message id -> delayed message (cancel_scheduled)
        self.deleted = False
        # Retention runs in insertion order; messages inserted out of SentTimestamp order
        # (dead-letter and redrive copies keep their original time) also go in this heap.
        self.late: list[tuple[int, int]] = []
        self.newest_sent_ms = 0
        self.attrs: dict[str, str] = {}
        self.set_attrs(attrs)

    # --- attributes -------------------------------------------------------------------------
    def set_attrs(self, attrs: Mapping[str, str]) -> None:
        self.attrs = dict(attrs)
        eff = qattrs.effective(self.attrs, self.fifo)
        self.visibility_ms = int(eff["VisibilityTimeout"]) * 1000
        self.delay_ms = int(eff["DelaySeconds"]) * 1000
        self.retention_ms = int(eff["MessageRetentionPeriod"]) * 1000
        self.size_max = int(eff["MaximumMessageSize"])
        self.wait_ms = int(eff["ReceiveMessageWaitTimeSeconds"]) * 1000
        self.durability = eff[qattrs.DURABILITY]
        backoff = eff.get(qattrs.REDELIVERY_BACKOFF)
        self.backoff_ms = qattrs.parse_backoff(backoff) if backoff else ()
        redrive = eff.get("RedrivePolicy")
        self.redrive = qattrs.parse_redrive_policy(redrive) if redrive else None
        self.content_dedup = eff.get("ContentBasedDeduplication") == "true"
        self.dedup_by_group = eff.get("DeduplicationScope") == "messageGroup"

    # --- membership and counters ------------------------------------------------------------
    def add(self, m: Message) -> None:
        assert m.state != GONE
        self.messages[m.seq] = m
        self.counts[m.state] += 1
        self.bytes += m.size
        if m.sent_ms < self.newest_sent_ms:
            heapq.heappush(self.late, (m.sent_ms, m.seq))
        else:
            self.newest_sent_ms = m.sent_ms
        if self.fifo:
            g = self.fgroups.get(m.group_id)
            if g is None:
                g = self.fgroups[m.group_id] = FifoGroup(m.group_id)
            g.queue.append(m)

    def set_state(self, m: Message, state: int) -> None:
        counts = self.counts
        counts[m.state] -= 1
        counts[state] += 1
        m.state = state

    def drop(self, m: Message) -> None:
        """Remove `m` for good (delete, expiry, purge, move). Idempotent on GONE."""
        if m.state == GONE:
            return
        was = m.state
        self.counts[was] -= 1
        m.state = GONE
        del self.messages[m.seq]
        self.bytes -= m.size
        if self.fifo:
            g = self.fgroups.get(m.group_id)
            if g is None:
                return
            if m in g.leased:
                g.leased.remove(m)
                if was == INFLIGHT:
                    g.inflight -= 1
                self._settle_group(g)
            else:
                self._wake_group(g)

    # --- ready index --------------------------------------------------------------------------
    def make_ready(self, m: Message) -> None:
        """DELAYED/PENDING -> READY, or INFLIGHT -> READY (visibility expired, nack)."""
        was = m.state
        assert was in (PENDING, DELAYED, INFLIGHT), m
        self.set_state(m, READY)
        if self.fifo:
            g = self.fgroups[m.group_id]
            if was == INFLIGHT:
                g.inflight -= 1
                self._settle_group(g)
            else:
                self._wake_group(g)
            return
        key = m.group_id
        d = self.groups.get(key)
        if d is None:
            d = self.groups[key] = deque()
            self.rr.append(key)
        d.append(m)

    def has_ready(self) -> bool:
        return self.counts[READY] > 0 and bool(self.rr)

    def take(self, n: int, accept: Callable[[Message], bool]) -> list[Message]:
        """Pop up to `n` READY messages in delivery order. `accept(m)` is called for each
        candidate: True leases it (the caller has set it INFLIGHT) or consumed it (GONE);
        False means it was diverted (dead-lettered: the caller dropped it)."""
        if self.fifo:
            return self._take_fifo(n, accept)
        out: list[Message] = []
        rr = self.rr
        groups = self.groups
        while len(out) < n and rr:
            key = rr[0]
            d = groups[key]
            m = d.popleft()
            if not d:
                rr.popleft()
                del groups[key]
            elif len(rr) > 1:
                rr.rotate(-1)
            if m.state != READY:
                continue
            if accept(m):
                out.append(m)
        return out

    def _take_fifo(self, n: int, accept: Callable[[Message], bool]) -> list[Message]:
        out: list[Message] = []
        rr = self.rr
        while len(out) < n and rr:
            g = self.fgroups.get(rr.popleft())
            if g is None:
                continue
            g.in_rr = False
            if g.leased:
                continue
            q = g.queue
            while q and len(out) < n:
                m = q[0]
                if m.state == GONE:
                    q.popleft()
                    continue
                if m.state != READY:
                    break
                q.popleft()
                if not accept(m):
                    continue
                if m.state == INFLIGHT:
                    g.leased.append(m)
                    g.inflight += 1
                out.append(m)
            self._wake_group(g)
        return out

    def _settle_group(self, g: FifoGroup) -> None:
        if g.inflight == 0 and g.leased:
            back = [m for m in g.leased if m.state == READY]
            g.leased.clear()
            g.queue.extendleft(reversed(back))
        self._wake_group(g)

    def _wake_group(self, g: FifoGroup) -> None:
        if g.leased:
            return
        q = g.queue
        while q and q[0].state == GONE:
            q.popleft()
        if not q:
            if not g.in_rr:
                self.fgroups.pop(g.group_id, None)
            return
        if not g.in_rr and q[0].state == READY:
            g.in_rr = True
            self.rr.append(g.group_id)

    def lease_on_restore(self, m: Message) -> None:
        """Recovery of a FIFO message found in flight: it and every earlier message of its group
        (received in the same delivery, some already back to READY) form the group's lease."""
        g = self.fgroups[m.group_id]
        assert g.queue and g.queue[-1] is m
        g.leased.extend(g.queue)
        g.queue.clear()
        g.inflight += 1

    def clear_index(self) -> None:
        self.groups.clear()
        self.rr.clear()
        self.fgroups.clear()

    # --- invariants -----------------------------------------------------------------------------
    def check(self) -> None:
        counts = [0, 0, 0, 0, 0]
        size = 0
        for m in self.messages.values():
            assert m.state != GONE, m
            counts[m.state] += 1
            size += m.size
        assert counts == self.counts, (counts, self.counts)
        assert size == self.bytes
        for g in self.fgroups.values():
            assert g.inflight == sum(1 for m in g.leased if m.state == INFLIGHT)
        assert self.waiter_count >= 0
