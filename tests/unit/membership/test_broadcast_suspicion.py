"""The piggyback buffer (`broadcast.py`) and the Lifeguard suspicion timer (`suspicion.py`).

Goal: the two small pieces the core's bounds and timing rest on behave as memberlist's
TransmitLimitedQueue and suspicion.go do. Method: drive them directly with hand-made items and
confirmations and check order, limits, byte budgets and the timeout curve."""

from __future__ import annotations

import math

from qnode.membership.broadcast import BroadcastQueue
from qnode.membership.suspicion import Suspicion, suspicion_timeouts_ns

S = 1_000_000_000


def test_newer_update_about_a_member_replaces_the_older_one():
    q = BroadcastQueue(8)
    q.queue("a", {"v": 1}, 10)
    q.queue("a", {"v": 2}, 10)
    assert len(q) == 1
    assert q.take(100, 0, 3) == [{"v": 2}]


def test_items_leave_after_the_transmit_limit():
    q = BroadcastQueue(8)
    q.queue("a", {"k": "a"}, 10)
    taken = [q.take(100, 0, 3) for _ in range(5)]
    assert taken == [[{"k": "a"}]] * 3 + [[], []]
    assert len(q) == 0


def test_least_transmitted_then_newest_first_within_the_budget():
    q = BroadcastQueue(8)
    q.queue("old", {"k": "old"}, 40)
    q.take(100, 0, 5)                        # old: 1 transmit
    q.queue("b", {"k": "b"}, 40)
    q.queue("c", {"k": "c"}, 40)
    assert q.take(100, 0, 5) == [{"k": "c"}, {"k": "b"}]   # 80 bytes; old does not fit
    assert q.take(45, 0, 5) == [{"k": "c"}]    # all sent once now: newest first
    assert q.take(10, 0, 5) == []              # nothing fits in 10 bytes


def test_first_key_goes_first():
    q = BroadcastQueue(8)
    q.queue("a", {"k": "a"}, 10)
    q.queue("b", {"k": "b"}, 10)
    assert q.take(100, 0, 5, first_key="a") == [{"k": "a"}, {"k": "b"}]


def test_overflow_drops_the_most_transmitted_item():
    q = BroadcastQueue(2)
    q.queue("a", {"k": "a"}, 10)
    q.take(100, 0, 5)
    q.queue("b", {"k": "b"}, 10)
    q.queue("c", {"k": "c"}, 10)            # over the bound: a (sent once) goes
    assert len(q) == 2
    assert q.dropped_count == 1
    assert q.transmits_of("a") is None
    assert sorted(w["k"] for w in q.take(100, 0, 5)) == ["b", "c"]


def test_suspicion_timeouts_scale_with_log_of_cluster_size():
    low = int(1.5 * math.log10(64) * S)
    assert suspicion_timeouts_ns(1.5, 6, 64, S) == (low, 6 * low)
    # memberlist: the scale is max(1, log10 N), so clusters of up to 10 share the floor.
    assert suspicion_timeouts_ns(1.5, 6, 8, S) == (int(1.5 * S), 6 * int(1.5 * S))
    assert suspicion_timeouts_ns(1.5, 6, 2, S) == (int(1.5 * S), 6 * int(1.5 * S))


def test_timeout_shrinks_from_max_to_min_with_independent_confirmations():
    s = Suspicion(incarnation=3, source="a", start_ns=100, min_ns=2 * S, max_ns=12 * S, k=2)
    assert s.deadline_ns == 100 + 12 * S
    assert not s.confirm("a")               # the raiser is not a confirmation
    assert s.confirm("b")
    expected = 12 * S - (12 * S - 2 * S) * math.log(2) / math.log(3)
    assert abs(s.deadline_ns - (100 + expected)) < 2
    assert not s.confirm("b")               # not twice
    assert s.confirm("c")
    assert s.deadline_ns == 100 + 2 * S
    assert not s.confirm("d")               # beyond k: ignored
    assert s.confirmations == 2


def test_with_k_zero_the_timeout_is_the_minimum():
    s = Suspicion(0, "a", 0, 3 * S, 18 * S, k=0)
    assert s.deadline_ns == 3 * S
    assert not s.confirm("b")
