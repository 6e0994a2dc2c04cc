"""Request-id cache core: bounded count, TTL, eviction order. Method: drive it with explicit
`now_ms` values (no clock) and check what `get` returns."""

from __future__ import annotations

from qnode.frontend.request_cache import RequestCache


def test_get_returns_value_until_ttl_then_none():
    c = RequestCache(count_max=10, ttl_ms=100)
    c.put("a", 1, now_ms=0)
    assert c.get("a", now_ms=99) == 1
    assert c.get("a", now_ms=100) is None
    assert len(c) == 0


def test_count_bound_evicts_the_oldest():
    c = RequestCache(count_max=3, ttl_ms=10_000)
    for i in range(5):
        c.put(i, i, now_ms=i)
    assert len(c) == 3
    assert c.get(0, 10) is None
    assert c.get(1, 10) is None
    assert [c.get(k, 10) for k in (2, 3, 4)] == [2, 3, 4]
    assert c.evicted_count == 2


def test_put_again_restarts_ttl_and_keeps_one_entry():
    c = RequestCache(count_max=3, ttl_ms=100)
    c.put("a", 1, 0)
    c.put("b", 2, 50)
    c.put("a", 3, 60)
    assert len(c) == 2
    assert c.get("b", 149) == 2
    assert c.get("b", 150) is None
    assert c.get("a", 159) == 3


def test_remove_and_missing_keys():
    c = RequestCache(count_max=3, ttl_ms=100)
    c.put("a", 1, 0)
    c.remove("a")
    c.remove("never")
    assert c.get("a", 1) is None
    assert c.hit_count == 0


def test_expiry_is_in_insertion_order_and_partial():
    c = RequestCache(count_max=100, ttl_ms=10)
    for i in range(20):
        c.put(i, i, now_ms=i)
    assert len(c) == 10       # each put expired the keys with i + 10 <= now: 10..19 remain
    assert c.get(19, now_ms=25) == 19
    assert len(c) == 4        # keys up to 15 expired (expires_at <= 25)


def test_replace_only_swaps_the_value_it_expects_and_keeps_its_expiry() -> None:
    from qnode.frontend.request_cache import ENTRY_OVERHEAD_SIZE as E
    c = RequestCache(count_max=10, ttl_ms=100)
    first, other = object(), object()
    c.put("k", first, 0, size=10)
    c.put("later", first, 5)
    assert not c.replace("k", other, b"packed", 40)
    assert c.get("k", 10) is first
    assert c.replace("k", first, b"packed", 40)
    assert c.size == (E + 40) + E
    assert c.get("k", 99) == b"packed"         # the TTL counts from the put at 0
    assert c.get("k", 100) is None and c.size == E
    assert c.get("later", 100) is first        # expiry order is still insertion order
    assert not c.replace("missing", first, b"x")


def test_replace_that_outgrows_the_size_bound_evicts_the_oldest_others() -> None:
    from qnode.frontend.request_cache import ENTRY_OVERHEAD_SIZE as E
    c = RequestCache(count_max=10, ttl_ms=1000, size_max=3 * E + 50)
    for k in ("a", "b", "c"):
        c.put(k, k, 0)
    assert c.replace("c", "c", b"big", 100)
    assert c.get("a", 1) is None and c.get("b", 1) == "b" and c.get("c", 1) == b"big"
    assert c.size == 2 * E + 100 and c.evicted_count == 1


def test_size_bound_evicts_the_oldest_and_accounts_every_removal() -> None:
    from qnode.frontend.request_cache import ENTRY_OVERHEAD_SIZE as E
    c = RequestCache(count_max=100, ttl_ms=1000, size_max=3 * (E + 100))
    for i in range(5):
        c.put(i, b"r", now_ms=i, size=100)
    assert len(c) == 3 and c.size == 3 * (E + 100)
    assert [c.get(k, 10) for k in range(5)] == [None, None, b"r", b"r", b"r"]
    assert c.evicted_count == 2
    c.put("big", b"r", now_ms=11, size=E + 200)          # weighs two entries: evicts two
    assert len(c) == 2 and c.size == 3 * (E + 100)
    assert c.evicted_count == 4
    c.remove("big")
    assert c.size == E + 100
    assert c.get(4, now_ms=2000) is None                 # expired: nothing is accounted
    assert c.size == 0 and len(c) == 0


def test_an_entry_larger_than_the_budget_is_still_kept_alone() -> None:
    c = RequestCache(count_max=10, ttl_ms=100, size_max=10)
    c.put("a", 1, 0, size=5)
    c.put("b", 2, 0, size=50)
    assert c.get("a", 1) is None and c.get("b", 1) == 2   # the newest result is what a retry needs
