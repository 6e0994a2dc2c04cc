"""SimClock: simulated monotonic time in integer nanoseconds.

Owns: the one "now" of a simulation. Invariant: time never goes backwards, and only the harness
(tests/sim/harness.py) advances it, to the time of the next event. Cores never read it directly;
the harness passes `now_ns` into them.
"""

from __future__ import annotations

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


class SimClock:
    """A monotonic clock that moves only when `advance_to` is called."""

    __slots__ = ("_now_ns",)

    def __init__(self, start_ns: int = 0) -> None:
        assert start_ns >= 0
        self._now_ns = start_ns

    @property
    def now_ns(self) -> int:
        return self._now_ns

    def monotonic_ns(self) -> int:
        """Same signature as the real Clock's monotonic_ns, so shells can take either."""
        return self._now_ns

    def advance_to(self, at_ns: int) -> None:
        assert at_ns >= self._now_ns, (at_ns, self._now_ns)
        self._now_ns = at_ns
