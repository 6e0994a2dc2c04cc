"""Lifeguard's dynamic suspicion timeout for one suspected member (memberlist `suspicion.go`).

Owns: `Suspicion`, the timer state of one suspicion: when it started, which members have
independently confirmed it, and when it expires.

The timeout starts at `max_ns` and shrinks towards `min_ns` as independent confirmations arrive
(Lifeguard §IV-B):

    timeout(c) = max(min, max - (max - min) * log(c + 1) / log(k + 1))

where c is the number of distinct confirming members (the member that raised the suspicion
does not count) and k the number of confirmations that bring the timeout down to `min`.
With k = 0 the timeout is `min` from the start.

Invariants: `min_ns <= deadline_ns - start_ns <= max_ns`; confirmations beyond k are ignored;
the deadline only moves earlier. Must never: do I/O, or import asyncio, socket, os, time, random.
"""

from __future__ import annotations

import math


def suspicion_timeouts_ns(suspicion_mult: float, suspicion_max_mult: float, members_count: int,
                          probe_interval_ns: int) -> tuple[int, int]:
    """(min, max) suspicion timeouts for a cluster of `members_count` (SWIM §4.2 scaling)."""
    node_scale = max(1.0, math.log10(max(1, members_count)))
    min_ns = int(suspicion_mult * node_scale * probe_interval_ns)
    return min_ns, int(suspicion_max_mult * min_ns)


class Suspicion:
    __slots__ = ("incarnation", "start_ns", "min_ns", "max_ns", "k", "confirmers", "deadline_ns")

    def __init__(self, incarnation: int, source: str, start_ns: int, min_ns: int, max_ns: int,
                 k: int) -> None:
        assert 0 < min_ns <= max_ns
        assert k >= 0
        self.incarnation = incarnation
        self.start_ns = start_ns
        self.min_ns = min_ns
        self.max_ns = max_ns
        self.k = k
        self.confirmers: list[str] = [source]   # the raiser first; list keeps order deterministic
        self.deadline_ns = start_ns + self._timeout_ns(0)

    def _timeout_ns(self, confirmations: int) -> int:
        if self.k < 1:
            return self.min_ns
        frac = math.log(confirmations + 1) / math.log(self.k + 1)
        raw = self.max_ns - frac * (self.max_ns - self.min_ns)
        return max(self.min_ns, int(raw))

    @property
    def confirmations(self) -> int:
        return len(self.confirmers) - 1

    def confirm(self, source: str) -> bool:
        """Count `source`'s independent suspicion; True if it was new (then re-gossip it)."""
        if self.confirmations >= self.k or source in self.confirmers:
            return False
        self.confirmers.append(source)
        deadline = self.start_ns + self._timeout_ns(self.confirmations)
        assert deadline <= self.deadline_ns
        self.deadline_ns = deadline
        return True
