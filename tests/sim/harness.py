"""Simulation harness: one seeded, single-threaded, deterministic event loop for sans-IO cores.

Owns: the event heap, the simulated clock, the root random generator, the trace and the list of
checkers. It knows nothing about Raft or SWIM; those plug in as callbacks.

API (small on purpose; SWIM and Raft simulations both use it):

    sim = Simulation(seed, options)          # options: any object, kept for printing (see options.py)
    sim.now_ns                               # current simulated time (int ns), see clock.py
    rng = sim.derive_rng("net")              # an independent random.Random for one component;
                                             # derived from (seed, name) so adding a component never
                                             # perturbs the others' streams
    h = sim.schedule(at_ns, fn)              # run fn() at at_ns (>= now); returns an EventHandle
    h = sim.after(delay_ns, fn)              # same, relative to now
    h.cancel()                               # a cancelled event is skipped (and not counted)
    sim.add_checker(fn)                      # fn() runs after every event; raise AssertionError to fail
    sim.record(source, text)                 # one trace line (hashed); source is a node id or "sim"
    sim.run(until_ns)  -> events run         # run events with time <= until_ns; clock ends at until_ns
    sim.run_events(n)  -> events run         # run at most n events
    sim.trace.hexdigest()                    # trace hash; equal for two runs of one seed
    sim.trace.tail()                         # last 200 lines, for failure reports

Network (network.py) and disk (disk.py) take the Simulation and a derived rng.

Invariants: events run in (time_ns, seq) order, where seq is the scheduling order, so ties are broken
deterministically; the clock never goes backwards; nothing here reads the wall clock, calls `id()`,
iterates an unsorted set or touches the global `random`. Bounded: the heap holds at most
`events_pending_max` events (an assertion, since a runaway scheduler is a bug in the simulation).
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field
from typing import Any, Callable

from tests.sim.clock import SimClock
from tests.sim.trace import Trace

events_pending_max = 1_000_000


@dataclass(slots=True)
class EventHandle:
    at_ns: int
    seq: int
    fn: Callable[[], None] | None = field(default=None)

    def cancel(self) -> None:
        self.fn = None

    @property
    def cancelled(self) -> bool:
        return self.fn is None


class Simulation:
    """A deterministic discrete-event loop. See the module docstring for the API."""

    def __init__(self, seed: int, options: Any = None, *, trace_echo: bool = False,
                 trace_tail_count: int = 200) -> None:
        self.seed = seed
        self.options = options
        self.rng = random.Random(seed)  # root generator; components use derive_rng()
        self.clock = SimClock()
        self.trace = Trace(trace_tail_count, echo=trace_echo)
        self._heap: list[tuple[int, int, EventHandle]] = []
        self._seq = 0
        self._checkers: list[Callable[[], None]] = []
        self.events_run = 0

    @property
    def now_ns(self) -> int:
        return self.clock.now_ns

    def derive_rng(self, name: str) -> random.Random:
        """An independent generator for one component, a pure function of (seed, name)."""
        # random.Random seeds a str through sha512, which does not depend on PYTHONHASHSEED.
        return random.Random(f"{self.seed}/{name}")

    def schedule(self, at_ns: int, fn: Callable[[], None]) -> EventHandle:
        assert at_ns >= self.clock.now_ns, (at_ns, self.clock.now_ns)
        assert len(self._heap) < events_pending_max, "event heap overflow: runaway scheduling"
        handle = EventHandle(at_ns, self._seq, fn)
        heapq.heappush(self._heap, (at_ns, self._seq, handle))
        self._seq += 1
        return handle

    def after(self, delay_ns: int, fn: Callable[[], None]) -> EventHandle:
        assert delay_ns >= 0
        return self.schedule(self.clock.now_ns + delay_ns, fn)

    def add_checker(self, fn: Callable[[], None]) -> None:
        self._checkers.append(fn)

    def record(self, source: str, text: str) -> None:
        self.trace.record(self.clock.now_ns, source, text)

    def pending_count(self) -> int:
        return len(self._heap)

    def next_event_ns(self) -> int | None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def step(self) -> bool:
        """Run one (non-cancelled) event and the checkers. Returns False if the heap is empty."""
        while self._heap:
            at_ns, _seq, handle = heapq.heappop(self._heap)
            fn = handle.fn
            if fn is None:
                continue
            handle.fn = None
            self.clock.advance_to(at_ns)
            fn()
            self.events_run += 1
            for check in self._checkers:
                check()
            return True
        return False

    def run(self, until_ns: int) -> int:
        """Run every event with time <= until_ns, then set the clock to until_ns."""
        assert until_ns >= self.clock.now_ns
        count = 0
        while True:
            at_ns = self.next_event_ns()
            if at_ns is None or at_ns > until_ns:
                break
            if self.step():
                count += 1
        self.clock.advance_to(until_ns)
        return count

    def run_events(self, n: int) -> int:
        """Run at most n events; returns how many ran (fewer only if the heap empties)."""
        assert n >= 0
        count = 0
        while count < n and self.step():
            count += 1
        return count
