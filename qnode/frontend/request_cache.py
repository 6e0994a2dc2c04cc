"""Server-side request-id cache: a retried mutating request returns the first attempt's result.

Owns: a bounded map `key -> value` with a TTL. The shell stores an asyncio future per key, so a
retry that arrives while the first attempt still runs awaits the same future; this module is
sans-IO and never looks at the values (time comes in as `now_ms`).

Invariants: at most `count_max` entries; an entry is never returned after `expires_at_ms`;
entries expire in insertion order (one TTL for all), so expiry pops from the front in O(1)
amortised. When full, the oldest entry is evicted (counted in `evicted_count`): a cache, not a
promise, sized so that eviction before the TTL means the client retried far later than usual.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Hashable


class RequestCache:
    __slots__ = ("_entries", "_count_max", "_ttl_ms", "evicted_count", "hit_count")

    def __init__(self, *, count_max: int, ttl_ms: int) -> None:
        assert count_max >= 1, count_max
        assert ttl_ms >= 1, ttl_ms
        self._entries: OrderedDict[Hashable, tuple[int, Any]] = OrderedDict()
        self._count_max = count_max
        self._ttl_ms = ttl_ms
        self.evicted_count = 0
        self.hit_count = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, now_ms: int) -> Any | None:
        """The value stored under `key` if it has not expired, else None."""
        self._expire(now_ms)
        entry = self._entries.get(key)
        if entry is None:
            return None
        self.hit_count += 1
        return entry[1]

    def put(self, key: Hashable, value: Any, now_ms: int) -> None:
        """Remember `value` for the TTL; replaces an existing entry (and restarts its TTL)."""
        self._expire(now_ms)
        self._entries.pop(key, None)
        while len(self._entries) >= self._count_max:
            self._entries.popitem(last=False)
            self.evicted_count += 1
        self._entries[key] = (now_ms + self._ttl_ms, value)
        assert len(self._entries) <= self._count_max

    def replace(self, key: Hashable, old: Any, new: Any, now_ms: int) -> bool:
        """Store `new` under `key` (TTL restarted) if `old` is still the value there."""
        entry = self._entries.get(key)
        if entry is None or entry[1] is not old:
            return False
        self.put(key, new, now_ms)
        return True

    def remove(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def _expire(self, now_ms: int) -> None:
        entries = self._entries
        while entries:
            key, (expires_at_ms, _) = next(iter(entries.items()))
            if expires_at_ms > now_ms:
                break
            del entries[key]
