"""Dispatch: op + args -> QueueApi calls, with validation and typed errors, and the request-id
cache for retried mutating requests.

Method: a Dispatcher over the in-memory FakeApi and a recording Session; requests are built
directly (no sockets). Checks each validation rule once, the result shapes, and that a retry
with the same rid runs the API once — also when it arrives while the first attempt still runs.
"""

from __future__ import annotations

import asyncio

import pytest

from qnode.frontend.dispatch import Dispatcher
from qnode.frontend.request_cache import RequestCache
from qnode.protocol.errors import ErrorCode, QnodeError
from qnode.protocol.messages import Request
from qnode.protocol.ops import ALL_OPS
from tests.unit.frontend.fake_api import FakeApi


class RecordingSession:
    def __init__(self) -> None:
        self.consumers = {}
        self.settled = []

    def attach_consumer(self, consumer) -> int:
        sid = len(self.consumers) + 1
        self.consumers[sid] = consumer
        return sid

    def settle(self, sid: int, count: int, receipts=()) -> bool:
        if sid not in self.consumers:
            return False
        self.settled.append((sid, count))
        return True

    async def detach_consumer(self, sid: int) -> None:
        await self.consumers.pop(sid).close()


@pytest.fixture
def env():
    api = FakeApi()
    now = [0]
    d = Dispatcher(api, request_cache=RequestCache(count_max=100, ttl_ms=1000),
                   status=lambda: {"node_id": "n"}, clock_ms=lambda: now[0])
    return api, d, RecordingSession(), now


async def call(d, s, op, args=None, rid=None, cid=1):
    return await d.dispatch(Request(cid, op, args or {}, rid), s)


async def expect(code, d, s, op, args=None):
    with pytest.raises(QnodeError) as info:
        await call(d, s, op, args)
    assert info.value.code is code, info.value
    return info.value


def test_every_protocol_op_has_a_handler(env):
    _, d, _, _ = env
    assert d.ops == ALL_OPS


async def test_queue_lifecycle_and_result_shapes(env):
    api, d, s, _ = env
    created = await call(d, s, "create_queue", {"queue": "jobs", "attributes": {"VisibilityTimeout": "30"},
                                                "tags": {"team": "a"}})
    assert created == {"queue": "jobs", "attributes": {"VisibilityTimeout": "30"}, "tags": {"team": "a"}}
    assert (await call(d, s, "list_queues", {"prefix": "j"})) == {"queues": ["jobs"]}
    sent = await call(d, s, "send", {"queue": "jobs", "entries": [{"body": b"a", "entry_id": "0"},
                                                                    {"body": b"b"}]})
    assert [r["entry_id"] for r in sent["results"] if "entry_id" in r] == ["0"]
    got = await call(d, s, "receive", {"queue": "jobs", "max_count": 10, "wait_ms": 0})
    assert [m["body"] for m in got["messages"]] == [b"a", b"b"]
    receipts = [m["receipt"] for m in got["messages"]]
    deleted = await call(d, s, "delete", {"queue": "jobs", "receipts": receipts + ["bogus"]})
    assert deleted["results"][:2] == [None, None]
    assert deleted["results"][2]["error"]["code"] == ErrorCode.RECEIPT_HANDLE_IS_INVALID
    assert (await call(d, s, "get_queue_attributes", {"queue": "jobs"}))["attributes"]["ApproximateNumberOfMessages"] == "0"
    assert await call(d, s, "ping") == {}
    assert (await call(d, s, "status"))["node_id"] == "n"
    await call(d, s, "delete_queue", {"queue": "jobs"})
    await expect(ErrorCode.QUEUE_DOES_NOT_EXIST, d, s, "get_queue", {"queue": "jobs"})


@pytest.mark.parametrize("op, args, code", [
    ("nope", {}, ErrorCode.UNKNOWN_OPERATION),
    ("get_queue", {}, ErrorCode.MISSING_PARAMETER),
    ("get_queue", {"queue": "bad name"}, ErrorCode.INVALID_QUEUE_NAME),
    ("get_queue", {"queue": "x" * 81}, ErrorCode.INVALID_QUEUE_NAME),
    ("receive", {"queue": "q", "max_count": 0}, ErrorCode.INVALID_PARAMETER),
    ("receive", {"queue": "q", "max_count": 11}, ErrorCode.INVALID_PARAMETER),
    ("receive", {"queue": "q", "wait_ms": 20_001}, ErrorCode.INVALID_PARAMETER),
    ("receive", {"queue": "q", "wait_ms": -1}, ErrorCode.INVALID_PARAMETER),
    ("receive", {"queue": "q", "wait_ms": "5"}, ErrorCode.INVALID_PARAMETER),
    ("receive", {"queue": "q", "visibility_timeout_ms": 43_200_001}, ErrorCode.INVALID_PARAMETER),
    ("receive", {"queue": "q", "delete": 1}, ErrorCode.INVALID_PARAMETER),
    ("send", {"queue": "q"}, ErrorCode.MISSING_PARAMETER),
    ("send", {"queue": "q", "entries": []}, ErrorCode.EMPTY_BATCH_REQUEST),
    ("send", {"queue": "q", "entries": [{"body": b"x"}] * 11}, ErrorCode.TOO_MANY_ENTRIES_IN_BATCH),
    ("send", {"queue": "q", "entries": [{"nobody": 1}]}, ErrorCode.MISSING_PARAMETER),
    ("send", {"queue": "q", "entries": [{"body": 5}]}, ErrorCode.INVALID_PARAMETER),
    ("send", {"queue": "q", "entries": [{"body": b"x", "delay_ms": 14 * 86400_000 + 1}]}, ErrorCode.INVALID_PARAMETER),
    ("send", {"queue": "q", "entries": [{"body": b"x", "attributes": {"a": {"data_type": "String"}}}]},
     ErrorCode.INVALID_ATTRIBUTE_VALUE),
    ("send", {"queue": "q", "entries": [{"body": b"x", "attributes": {"": {"data_type": "String", "string_value": "v"}}}]},
     ErrorCode.INVALID_ATTRIBUTE_NAME),
    ("delete", {"queue": "q", "receipts": [5]}, ErrorCode.INVALID_PARAMETER),
    ("change_visibility", {"queue": "q", "items": [["r", -1]]}, ErrorCode.INVALID_PARAMETER),
    ("change_visibility", {"queue": "q", "items": ["r"]}, ErrorCode.INVALID_PARAMETER),
    ("set_queue_attributes", {"queue": "q", "attributes": {"A": 1}}, ErrorCode.INVALID_PARAMETER),
    ("subscribe", {"queue": "q"}, ErrorCode.MISSING_PARAMETER),
    ("subscribe", {"queue": "q", "prefetch": 0}, ErrorCode.INVALID_PARAMETER),
    ("credit", {"subscription": 9, "count": 1}, ErrorCode.RESOURCE_NOT_FOUND),
    ("list_queues", {"prefix": 5}, ErrorCode.INVALID_PARAMETER),
])
async def test_validation_errors(env, op, args, code):
    api, d, s, _ = env
    await api.create_queue("q")
    await expect(code, d, s, op, args)
    assert api.send_calls == 0


async def test_retried_send_with_same_rid_is_applied_once(env):
    api, d, s, _ = env
    await api.create_queue("q")
    args = {"queue": "q", "entries": [{"body": b"once"}]}
    first = await call(d, s, "send", args, rid="r1")
    again = await call(d, s, "send", args, rid="r1", cid=2)
    assert first == again
    assert api.send_calls == 1
    await call(d, s, "send", args, rid="r2")
    assert api.send_calls == 2
    assert len(api.queues["q"].ready) == 2


async def _retry_behind_a_running_first_attempt(env):
    """A send with rid r1 held in the API (send_gate), and a retry of it waiting behind it."""
    api, d, s, _ = env
    await api.create_queue("q")
    api.send_gate = asyncio.Event()
    args = {"queue": "q", "entries": [{"body": b"slow"}]}
    first = asyncio.ensure_future(call(d, s, "send", args, rid="r1"))
    await api.send_started.wait()
    retry = asyncio.ensure_future(call(d, s, "send", args, rid="r1", cid=2))
    await asyncio.sleep(0)      # one loop turn: the retry has reached the cache and waits
    assert not retry.done()
    return api, d, s, args, first, retry


async def test_retry_while_first_attempt_runs_awaits_the_same_result(env):
    api, _, _, _, first, retry = await _retry_behind_a_running_first_attempt(env)
    api.send_gate.set()
    assert await first == await retry
    assert api.send_calls == 1


async def test_cancelled_retry_does_not_cancel_the_first_attempt(env):
    api, _, _, _, first, retry = await _retry_behind_a_running_first_attempt(env)
    retry.cancel()
    api.send_gate.set()
    assert (await first)["results"][0]["message_id"]
    assert retry.cancelled()


async def test_retry_waiting_on_a_first_attempt_that_is_cancelled_is_cancelled_too(env):
    api, d, s, args, first, retry = await _retry_behind_a_running_first_attempt(env)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await retry
    api.send_gate.set()
    again = await call(d, s, "send", args, rid="r1", cid=3)    # nothing was remembered
    assert again["results"][0]["message_id"] and api.send_calls == 2


async def test_failed_attempt_is_not_remembered_and_ttl_expires(env):
    api, d, s, now = env
    args = {"queue": "later", "entries": [{"body": b"x"}]}
    with pytest.raises(QnodeError):
        await call(d, s, "send", args, rid="r1")
    await api.create_queue("later")
    await call(d, s, "send", args, rid="r1")
    assert len(api.queues["later"].ready) == 1
    now[0] = 1000                    # TTL passed: the same rid is new again
    await call(d, s, "send", args, rid="r1")
    assert len(api.queues["later"].ready) == 2


async def test_receive_is_not_cached_even_with_rid(env):
    api, d, s, _ = env
    await api.create_queue("q")
    await call(d, s, "send", {"queue": "q", "entries": [{"body": b"1"}, {"body": b"2"}]})
    a = await call(d, s, "receive", {"queue": "q", "max_count": 1}, rid="same")
    b = await call(d, s, "receive", {"queue": "q", "max_count": 1}, rid="same")
    assert a["messages"][0]["body"] != b["messages"][0]["body"]


async def test_subscribe_credit_and_settle_through_delete_and_nack(env):
    api, d, s, _ = env
    await api.create_queue("q")
    sid = (await call(d, s, "subscribe", {"queue": "q", "prefetch": 2}))["subscription"]
    await call(d, s, "send", {"queue": "q", "entries": [{"body": b"1"}, {"body": b"2"}]})
    consumer = s.consumers[sid]
    m1 = await consumer.next()
    m2 = await consumer.next()
    await call(d, s, "delete", {"queue": "q", "receipts": [m1.receipt], "subscription": sid})
    await call(d, s, "nack", {"queue": "q", "receipt": m2.receipt, "subscription": sid})
    await call(d, s, "credit", {"subscription": sid, "count": 3})
    assert s.settled == [(sid, 1), (sid, 1), (sid, 3)]
    await call(d, s, "unsubscribe", {"subscription": sid})
    assert api.consumers_closed == 1


async def test_list_queues_is_paged_by_name(env):
    api, d, s, _ = env
    for i in range(5):
        await api.create_queue(f"q{i}")
    first = await call(d, s, "list_queues", {"max_results": 2})
    assert first == {"queues": ["q0", "q1"], "next_token": "q1"}
    second = await call(d, s, "list_queues", {"max_results": 2, "next_token": "q1"})
    assert second == {"queues": ["q2", "q3"], "next_token": "q3"}
    assert await call(d, s, "list_queues", {"max_results": 2, "next_token": "q3"}) == {"queues": ["q4"]}
    assert await call(d, s, "list_queues") == {"queues": [f"q{i}" for i in range(5)]}
    await expect(ErrorCode.INVALID_PARAMETER, d, s, "list_queues", {"max_results": 1001})
