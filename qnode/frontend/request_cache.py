"""Server-side request-id cache: a retried mutating request returns the first attempt's result.

Owns: a bounded map `key -> value` with a TTL. The shell stores a marker of the running first
attempt per key, which a retry arriving meanwhile waits on, then replaces it with the packed
result; this module is sans-IO and never looks at the values (time comes in as
`now_ms`, each value's weight in bytes as `size`).

Invariants: at most `count_max` entries and at most `size_max` bytes (the callers' sizes plus
ENTRY_OVERHEAD_SIZE per entry); an entry is never returned after `expires_at_ms`; entries expire
in insertion order (one TTL for all), so expiry pops from the front in O(1) amortised. When
full, the oldest entries are evicted (counted in `evicted_count`): a cache, not a promise, sized
so that eviction before the TTL means the client retried far later than usual.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Hashable

ENTRY_OVERHEAD_SIZE = 200    # dict slot, tuple, key object and ints of one entry (measured ~190)


class RequestCache:
    __slots__ = ("_entries", "_count_max", "_size_max", "_size", "_ttl_ms", "evicted_count",
                 "hit_count")

    def __init__(self, *, count_max: int, ttl_ms: int, size_max: int = 1 << 62) -> None:
        assert count_max >= 1, count_max
        assert ttl_ms >= 1, ttl_ms
        assert size_max >= 1, size_max
        self._entries: OrderedDict[Hashable, tuple[int, Any, int]] = OrderedDict()
        self._count_max = count_max
        self._size_max = size_max
        self._size = 0
        self._ttl_ms = ttl_ms
        self.evicted_count = 0
        self.hit_count = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes accounted to the entries held now."""
        return self._size

    def get(self, key: Hashable, now_ms: int) -> Any | None:
        """The value stored under `key` if it has not expired, else None."""
        self._expire(now_ms)
        entry = self._entries.get(key)
        if entry is None:
            return None
        self.hit_count += 1
        return entry[1]

    def put(self, key: Hashable, value: Any, now_ms: int, size: int = 0) -> None:
        """Remember `value` (weighing `size` bytes) for the TTL; replaces an existing entry (and
        restarts its TTL)."""
        self._expire(now_ms)
        self.remove(key)
        size += ENTRY_OVERHEAD_SIZE
        entries = self._entries
        while entries and (len(entries) >= self._count_max or self._size + size > self._size_max):
            self._size -= entries.popitem(last=False)[1][2]
            self.evicted_count += 1
        entries[key] = (now_ms + self._ttl_ms, value, size)
        self._size += size
        assert len(entries) <= self._count_max

    def replace(self, key: Hashable, old: Any, new: Any, size: int = 0) -> bool:
        """Store `new` under `key` if `old` is still the value there, keeping its place and
        expiry (the TTL counts from the `put`); evicts the oldest others if it grew past
        `size_max`."""
        entries = self._entries
        entry = entries.get(key)
        if entry is None or entry[1] is not old:
            return False
        size += ENTRY_OVERHEAD_SIZE
        entries[key] = (entry[0], new, size)
        self._size += size - entry[2]
        while self._size > self._size_max and len(entries) > 1:
            oldest = next(iter(entries))
            if oldest == key:
                break
            self._size -= entries.pop(oldest)[2]
            self.evicted_count += 1
        return True

    def remove(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._size -= entry[2]

    def _expire(self, now_ms: int) -> None:
        entries = self._entries
        while entries:
            key, (expires_at_ms, _, size) = next(iter(entries.items()))
            if expires_at_ms > now_ms:
                break
            del entries[key]
            self._size -= size
