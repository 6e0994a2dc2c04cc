"""Piggyback buffer: pending membership updates, each sent a bounded number of times.

Owns: `BroadcastQueue`, the equivalent of memberlist's `TransmitLimitedQueue` (SWIM §4.1
"infection-style dissemination"). Updates are keyed by member id: a newer update about a member
replaces the older one, so the queue never holds two claims about the same member.

Invariants:
- at most `count_max` items; on overflow the most-transmitted, then oldest, item is dropped
  (it has had the most chances to spread) and `dropped_count` grows;
- `take()` returns least-transmitted first, newest first among equals (memberlist's order), never
  more bytes than the budget it is given, and removes an item once it has been handed out
  `transmit_limit` times;
- iteration order is deterministic (insertion counters, never set or hash order).
Must never: do I/O, or import asyncio, socket, os, time or random.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Item:
    key: str
    wire: dict
    size: int
    order: int          # insertion counter: larger is newer
    transmits: int = 0


class BroadcastQueue:
    def __init__(self, count_max: int) -> None:
        assert count_max > 0
        self._count_max = count_max
        self._items: dict[str, _Item] = {}
        self._order = 0
        self.dropped_count = 0

    def __len__(self) -> int:
        return len(self._items)

    def queue(self, key: str, wire: dict, size: int) -> None:
        """Queue `wire` (an encoded update of `size` bytes), replacing any update about `key`."""
        assert size > 0
        self._order += 1
        self._items.pop(key, None)
        self._items[key] = _Item(key, wire, size, self._order)
        if len(self._items) > self._count_max:
            victim = max(self._items.values(), key=lambda it: (it.transmits, -it.order))
            del self._items[victim.key]
            self.dropped_count += 1
        assert len(self._items) <= self._count_max

    def take(self, budget_size: int, item_overhead_size: int, transmit_limit: int,
             first_key: str | None = None, skip_key: str | None = None) -> list[dict]:
        """Up to `budget_size` bytes of updates (each costing its size plus the overhead).

        `first_key`, if queued, goes first regardless of order (Lifeguard's buddy system: a
        probe of a suspect carries the suspicion, so the suspect learns of it and can refute).
        `skip_key`, if given, is left out (the caller sends its own claim about that member).
        Each returned update counts one transmit; items at `transmit_limit` are removed.
        """
        assert transmit_limit >= 1
        if not self._items or budget_size <= 0:
            return []
        ordered = sorted(self._items.values(), key=lambda it: (it.transmits, -it.order))
        if first_key is not None and first_key in self._items:
            first = self._items[first_key]
            ordered.remove(first)
            ordered.insert(0, first)
        chosen: list[dict] = []
        used = 0
        for item in ordered:
            if item.key == skip_key:
                continue
            cost = item.size + item_overhead_size
            if used + cost > budget_size:
                continue
            used += cost
            chosen.append(item.wire)
            item.transmits += 1
            if item.transmits >= transmit_limit:
                del self._items[item.key]
        assert used <= budget_size
        return chosen

    def transmits_of(self, key: str) -> int | None:
        """How often the update about `key` was handed out, or None if it is not queued."""
        item = self._items.get(key)
        return None if item is None else item.transmits

    def clear(self) -> None:
        self._items.clear()
