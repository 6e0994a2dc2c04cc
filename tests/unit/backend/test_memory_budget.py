"""The node memory budget's per-message charge covers what a stored message really weighs.

Goal: `limits.message_overhead_size` (what QueueFull's node budget charges each message beyond
its body) is not below the memory a message holds in the engine, ready or in flight, so the
budget bounds RAM and not only body bytes. Method: tracemalloc around 20,000 sends of 1-byte
bodies into a standard queue, then around receiving them all (timer-heap entries).
"""

from __future__ import annotations

import gc
import tracemalloc

from qnode import limits
from qnode.frontend.api import SendEntry
from tests.unit.backend.harness import Harness

COUNT = 20_000


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_message_overhead_covers_a_stored_message_ready_and_in_flight() -> None:
    h = Harness()
    h.create("q")
    tracemalloc.start()
    try:
        base = _traced()
        for i in range(COUNT // 10):
            h.send("q", *[SendEntry(b"x", entry_id=str(j)) for j in range(10)])
            h.log.clear()             # the harness keeps the WAL records; a node does not
        ready = (_traced() - base) / COUNT
        for _ in range(COUNT // 10):
            assert len(h.recv("q", 10, vis_ms=30_000)) == 10
            h.log.clear()
        inflight = (_traced() - base) / COUNT
    finally:
        tracemalloc.stop()
    assert h.engine.stats().messages == COUNT
    assert 100 < ready <= inflight <= limits.message_overhead_size + 1, (ready, inflight)
