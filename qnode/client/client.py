"""The embedded asyncio client: `qnode.Client`, its `Queue` handles and received `Message`s.

Owns: address selection and failover, reconnect with exponential backoff and jitter (from an
injected `random.Random`, at most `attempts_max` tries per call), a request id on every mutating
call (the same id on every retry, so the server's request cache applies it once), per-call
deadlines (computed once per call; a long poll gets `wait` on top), conversion of user values
(seconds, Python types) at the edge, and push consumption with credit and optional
visibility auto-extension.

Errors are the typed `qnode.protocol.errors` classes. When no node answers, calls raise
`Unavailable` with a one-line message naming the addresses tried.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from qnode import limits
from qnode.client import values
from qnode.client.connection import ClientConnection
from qnode.frontend.api import MessageAttribute
from qnode.protocol import payloads
from qnode.protocol.errors import (
    ErrorCode, InvalidParameter, MessageTooLarge, QnodeError, RequestTimeout, Unavailable,
    error_from_wire,
)
from qnode.protocol.framing import FrameLimits
from qnode.protocol.ops import MUTATING_OPS

log = logging.getLogger(__name__)

# Codes a call is retried on (with the same request id): the request did not run, or running
# it again is safe because of the request id.
RETRY_CODES = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.SHUTTING_DOWN, ErrorCode.NOT_LEADER,
                         ErrorCode.BUSY, ErrorCode.THROTTLED})
ADDRESSES_COUNT_MAX = 64      # leader hints may add addresses to the client's list, up to this
CLOSE_TIMEOUT_S = 2.0         # close() waits this long for a graceful close, then aborts
# Codes after which the next try goes to another node.
SWITCH_NODE_CODES = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.SHUTTING_DOWN, ErrorCode.NOT_LEADER})


def _parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InvalidParameter(f"address {address!r} must be HOST:PORT")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class Sent:
    """The result of one send: `.id` is the message id."""

    id: str
    md5_attributes: str | None = None
    sequence_number: str | None = None
    entry_id: str | None = None
    duplicate: bool = False
    _body: bytes = field(default=b"", repr=False, compare=False)

    @property
    def md5_body(self) -> str:
        """MD5 of the body sent (hex), as SQS's MD5OfMessageBody; computed when asked for."""
        return hashlib.md5(self._body, usedforsecurity=False).hexdigest()


@dataclass(eq=False, slots=True)
class Message:
    """A received message. `attributes` are plain values (str, int/float, bytes);
    `raw_attributes` keep the SQS data types; `system` holds SQS system attributes."""

    id: str
    body: bytes
    attributes: dict[str, Any]
    system: dict[str, str]
    receipt: str | None
    raw_attributes: dict[str, MessageAttribute]
    queue: "Queue | None" = field(default=None, repr=False)
    _subscription: Any = field(default=None, repr=False)
    _settled: bool = field(default=False, repr=False)

    @property
    def md5_body(self) -> str:
        """MD5 of the body (hex), as SQS's MD5OfBody; computed when asked for."""
        return hashlib.md5(self.body, usedforsecurity=False).hexdigest()

    def _require(self) -> "Queue":
        if self.queue is None or self.receipt is None:
            raise InvalidParameter("this message has no receipt (peeked messages cannot be settled)")
        return self.queue

    async def delete(self, *, timeout: float | None = None) -> None:
        """Ack: delete the message from its queue."""
        q = self._require()
        args: dict[str, Any] = {"queue": q.name, "receipts": [self.receipt]}
        self._attach_subscription(args)
        result = await q.client._call("delete", args, timeout=timeout)
        self._settled = True
        err = payloads.outcome_from_wire(result["results"][0])
        if err is not None:
            raise err

    async def change_visibility(self, visibility_timeout: float, *, timeout: float | None = None) -> None:
        q = self._require()
        ms = values.seconds_to_ms(visibility_timeout, "visibility_timeout")
        result = await q.client._call("change_visibility", {"queue": q.name, "items": [[self.receipt, ms]]},
                                      timeout=timeout)
        err = payloads.outcome_from_wire(result["results"][0])
        if err is not None:
            raise err

    async def nack(self, delay: float | None = None, reason: str | None = None, *,
                   timeout: float | None = None) -> None:
        """Give the message back now, or after `delay` seconds (None: the queue's backoff)."""
        q = self._require()
        args: dict[str, Any] = {"queue": q.name, "receipt": self.receipt}
        if delay is not None:
            args["delay_ms"] = values.seconds_to_ms(delay, "delay")
        if reason is not None:
            args["reason"] = reason
        self._attach_subscription(args)
        await q.client._call("nack", args, timeout=timeout)
        self._settled = True

    def _attach_subscription(self, args: dict) -> None:
        sub = self._subscription
        if sub is not None and not self._settled:
            sub.on_settle(self)
            if sub.conn is not None and sub.conn is sub.client._conn and sub.conn.is_open:
                args["subscription"] = sub.sid


def _message(d: Mapping, queue: "Queue | None", subscription: Any = None) -> Message:
    if not d.get("attributes"):
        # No message attributes (the common case): no intermediate ReceivedMessage. `system`
        # is a fresh dict from the decoder, so it is not copied.
        system = d.get("system")
        return Message(d["message_id"], d["body"], {}, system if type(system) is dict else {},
                       d.get("receipt"), {}, queue, subscription)
    m = payloads.received_from_wire(d)
    return Message(m.message_id, m.body,
                   {k: values.from_message_attribute(a) for k, a in m.attributes.items()},
                   dict(m.system), m.receipt, dict(m.attributes), queue, subscription)


def _sent(d: Mapping, body: bytes) -> Sent | QnodeError:
    """One slot of a send reply, straight from the wire (see payloads.send_result_from_wire),
    for the entry whose `body` was sent."""
    if "error" in d:
        return error_from_wire(d["error"])
    return Sent(d["message_id"], d.get("md5_attributes"), d.get("sequence_number"),
                d.get("entry_id"), bool(d.get("duplicate", False)), body)


class Queue:
    """A handle on one queue (no state on the server until you call it)."""

    def __init__(self, client: "Client", name: str) -> None:
        self.client = client
        self.name = name

    def __repr__(self) -> str:
        return f"Queue({self.name!r})"

    # --- send ------------------------------------------------------------------------------
    def _entry(self, item: Any, index: int) -> dict:
        if type(item) is bytes:
            if len(item) > self.client.message_size_max:
                raise MessageTooLarge(f"the body is {len(item)} bytes; "
                                      f"the maximum is {self.client.message_size_max}")
            return {"body": item, "entry_id": str(index)}
        if isinstance(item, Mapping):
            known = {"body", "delay", "attributes", "group_id", "dedup_id", "deliver_at", "id"}
            extra = set(item) - known
            if extra:
                raise InvalidParameter(f"unknown send entry keys: {sorted(extra)}")
            spec = dict(item)
        else:
            spec = {"body": item}
        body = values.body_bytes(spec.get("body"))
        size_max = self.client.message_size_max
        if len(body) > size_max:
            # Refused here: a body over the server's bin limit would be a protocol violation
            # that closes the connection, not a typed error.
            raise MessageTooLarge(f"the body is {len(body)} bytes; the maximum is {size_max}")
        entry: dict[str, Any] = {"body": body, "entry_id": str(spec.get("id", index))}
        if spec.get("delay") is not None:
            entry["delay_ms"] = values.seconds_to_ms(spec["delay"], "delay")
        attrs = values.message_attributes(spec.get("attributes"))
        if attrs:
            entry["attributes"] = payloads.attributes_to_wire(attrs)
        for key in ("group_id", "dedup_id"):
            if spec.get(key) is not None:
                entry[key] = spec[key]
        at = values.deliver_at_ms(spec.get("deliver_at"))
        if at is not None:
            entry["deliver_at_ms"] = at
        return entry

    async def send(self, body: bytes | str, *, delay: float | None = None,
                   attributes: Mapping[str, Any] | None = None, group_id: str | None = None,
                   dedup_id: str | None = None, deliver_at: Any = None,
                   timeout: float | None = None) -> Sent:
        """Send one message; returns `Sent` (`.id`). `delay=None` uses the queue's DelaySeconds.
        `timeout` (seconds) bounds this call, retries included (default: the client's)."""
        if (delay is None and attributes is None and group_id is None and dedup_id is None
                and deliver_at is None and type(body) is bytes):
            # The common case without options: the entry `_entry` would build, built directly.
            size_max = self.client.message_size_max
            if len(body) > size_max:
                raise MessageTooLarge(f"the body is {len(body)} bytes; the maximum is {size_max}")
            entry: dict[str, Any] = {"body": body, "entry_id": "0"}
        else:
            entry = self._entry({"body": body, "delay": delay, "attributes": attributes,
                                 "group_id": group_id, "dedup_id": dedup_id,
                                 "deliver_at": deliver_at}, 0)
        result = await self.client._call("send", {"queue": self.name, "entries": [entry]}, timeout=timeout)
        r = _sent(result["results"][0], entry["body"])
        if isinstance(r, QnodeError):
            raise r
        return r

    async def send_batch(self, items: Iterable[Any], *, timeout: float | None = None) -> list[Sent | QnodeError]:
        """Send many messages (bytes/str, or dicts with body/delay/attributes/group_id/
        dedup_id/deliver_at/id), 10 per request. A failed entry is a QnodeError in its slot."""
        entries = [self._entry(item, i) for i, item in enumerate(items)]
        if not entries:
            raise InvalidParameter("send_batch needs at least one message")
        out: list[Sent | QnodeError] = []
        step = limits.batch_entries_count_max
        for start in range(0, len(entries), step):
            chunk = entries[start:start + step]
            result = await self.client._call("send", {"queue": self.name, "entries": chunk}, timeout=timeout)
            out.extend(_sent(r, e["body"]) for r, e in zip(result["results"], chunk))
        return out

    # --- receive ---------------------------------------------------------------------------
    async def receive(self, max_messages: int = 10, wait: float | None = 20,
                      visibility_timeout: float | None = None, delete: bool = False,
                      attempt_id: str | None = None, timeout: float | None = None) -> list[Message]:
        """Long poll up to `wait` seconds (None: the queue's ReceiveMessageWaitTimeSeconds).
        `delete=True` is at-most-once: the messages are deleted by the receive itself."""
        args: dict[str, Any] = {"queue": self.name, "max_count": max_messages, "delete": delete}
        wait_ms = values.opt_seconds_to_ms(wait, "wait")
        if wait_ms is not None:
            args["wait_ms"] = wait_ms
        vt = values.opt_seconds_to_ms(visibility_timeout, "visibility_timeout")
        if vt is not None:
            args["visibility_timeout_ms"] = vt
        if attempt_id is not None:
            args["attempt_id"] = attempt_id
        extra_s = (wait_ms if wait_ms is not None else limits.wait_ms_max) / 1000
        result = await self.client._call("receive", args, extra_s=extra_s, timeout=timeout)
        return [_message(d, self) for d in result["messages"]]

    async def peek(self, n: int = 10, *, timeout: float | None = None) -> list[Message]:
        result = await self.client._call("peek", {"queue": self.name, "max_count": n}, timeout=timeout)
        return [_message(d, None) for d in result["messages"]]

    async def delete_batch(self, msgs: Sequence[Message | str], *,
                           timeout: float | None = None) -> list[QnodeError | None]:
        """Delete many (messages or receipts), 10 per request; None in a slot means deleted."""
        receipts = [m if isinstance(m, str) else m.receipt for m in msgs]
        out: list[QnodeError | None] = []
        step = limits.batch_entries_count_max
        for start in range(0, len(receipts), step):
            result = await self.client._call(
                "delete", {"queue": self.name, "receipts": receipts[start:start + step]}, timeout=timeout)
            out.extend(payloads.outcome_from_wire(r) for r in result["results"])
        for m in msgs:
            if isinstance(m, Message):
                if m._subscription is not None and not m._settled:
                    m._subscription.on_settle(m)
                    m._subscription.credit_later(1)
                m._settled = True
        return out

    async def change_visibility_batch(self, msgs: Sequence[Message | str],
                                      visibility_timeout: float, *,
                                      timeout: float | None = None) -> list[QnodeError | None]:
        ms = values.seconds_to_ms(visibility_timeout, "visibility_timeout")
        receipts = [m if isinstance(m, str) else m.receipt for m in msgs]
        out: list[QnodeError | None] = []
        step = limits.batch_entries_count_max
        for start in range(0, len(receipts), step):
            items = [[r, ms] for r in receipts[start:start + step]]
            result = await self.client._call("change_visibility", {"queue": self.name, "items": items},
                                             timeout=timeout)
            out.extend(payloads.outcome_from_wire(r) for r in result["results"])
        return out

    async def cancel_scheduled(self, message_id: str) -> None:
        await self.client._call("cancel_scheduled", {"queue": self.name, "message_id": message_id})

    # --- queue management ------------------------------------------------------------------
    async def purge(self) -> None:
        await self.client._call("purge_queue", {"queue": self.name})

    async def attributes(self, *names: str) -> dict[str, str]:
        args: dict[str, Any] = {"queue": self.name}
        if names:
            args["names"] = list(names)
        return (await self.client._call("get_queue_attributes", args))["attributes"]

    async def set_attributes(self, attributes: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        attrs = values.queue_attributes(kwargs, attributes)
        await self.client._call("set_queue_attributes", {"queue": self.name, "attributes": attrs})

    async def tag(self, **tags: str) -> None:
        await self.client._call("tag_queue", {"queue": self.name, "tags": dict(tags)})

    async def untag(self, *keys: str) -> None:
        await self.client._call("untag_queue", {"queue": self.name, "keys": list(keys)})

    async def tags(self) -> dict[str, str]:
        return (await self.client._call("list_queue_tags", {"queue": self.name}))["tags"]

    async def delete_queue(self) -> None:
        await self.client.delete_queue(self.name)

    async def dead_letter_source_queues(self) -> list[str]:
        return await self.client._list_pages("list_dead_letter_source_queues", {"queue": self.name})

    # --- push ------------------------------------------------------------------------------
    def consume(self, prefetch: int = 100, visibility_timeout: float | None = None,
                auto_extend: bool = False) -> "Consumption":
        """Push consumption: `async for msg in q.consume(): ...; await msg.delete()`.

        At most `prefetch` messages are delivered and not yet settled (deleted or nacked).
        With `auto_extend=True`, the client keeps extending the visibility of every message it
        delivered until it is settled (capped at 12 h). Reconnects and resubscribes after a lost
        connection (messages in flight then return to the queue)."""
        if not 1 <= prefetch <= limits.push_prefetch_max:
            raise InvalidParameter(f"prefetch must be in 1..{limits.push_prefetch_max}")
        return Consumption(self, prefetch, values.opt_seconds_to_ms(visibility_timeout, "visibility_timeout"),
                           auto_extend)


class Consumption:
    """An async iterator over pushed messages; `aclose()` (or leaving `async with`) ends it."""

    def __init__(self, queue: Queue, prefetch: int, visibility_timeout_ms: int | None,
                 auto_extend: bool) -> None:
        self.queue = queue
        self.client = queue.client
        self.prefetch = prefetch
        self.visibility_timeout_ms = visibility_timeout_ms
        self.auto_extend = auto_extend
        self.conn: ClientConnection | None = None
        self.sid: int | None = None
        self._buf = None
        self._closed = False
        self._extenders: dict[Message, asyncio.Task] = {}
        self._queue_vt_ms: int | None = None
        self._tasks: set[asyncio.Task] = set()

    def __aiter__(self) -> "Consumption":
        return self

    async def __aenter__(self) -> "Consumption":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _subscribe(self) -> None:
        args: dict[str, Any] = {"queue": self.queue.name, "prefetch": self.prefetch}
        if self.visibility_timeout_ms is not None:
            args["visibility_timeout_ms"] = self.visibility_timeout_ms
        capacity = self.prefetch + 16
        conn, result = await self.client._call_with_conn("subscribe", args, push_capacity=capacity)
        self.conn = conn
        self.sid = result["subscription"]
        self._buf = conn.open_push_buffer(self.sid, capacity)

    async def __anext__(self) -> Message:
        attempts = 0
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._buf is None:
                await self._subscribe()
            assert self._buf is not None
            d = await self._next_pushed(self._buf)
            if d is not None:
                msg = _message(d, self.queue, self)
                if self.auto_extend and msg.receipt is not None:
                    self._start_extender(msg)
                return msg
            # The subscription ended (connection lost or the server ended it): resubscribe.
            error = self._buf.end_error or Unavailable("the subscription ended")
            self._buf = None
            self.conn = None
            self._stop_extenders()
            if self._closed:
                raise StopAsyncIteration
            attempts += 1
            if error.code not in RETRY_CODES or attempts >= self.client.attempts_max:
                raise error
            await self.client._backoff(attempts, None)

    async def _next_pushed(self, buf: Any) -> dict | None:
        """The next pushed message, or None once the subscription ended. While nothing comes
        for `push_idle_ping` seconds the server is pinged: a server that does not answer within
        the request timeout (hung, or cut off without a reset) ends the subscription, so the
        consumer resubscribes (elsewhere, if it can) instead of waiting for ever."""
        idle_s = self.client.push_idle_ping_ms / 1000
        while True:
            try:
                async with asyncio.timeout(idle_s):
                    return await buf.get()
            except TimeoutError:
                pass
            conn = self.conn
            if conn is None or not conn.is_open:
                continue                      # the buffer ends with the connection
            fut = conn.request("ping", {})
            try:
                async with asyncio.timeout(self.client.request_timeout_ms / 1000):
                    await fut
            except TimeoutError:
                conn.forget(fut)
                buf.end(Unavailable(f"{conn.address} did not answer a ping within "
                                    f"{self.client.request_timeout_ms / 1000:g} s"))
                self.client._drop(conn)
            except QnodeError:
                pass                          # an answer: the server is alive

    def on_settle(self, msg: Message) -> None:
        task = self._extenders.pop(msg, None)
        if task is not None:
            task.cancel()

    def credit_later(self, count: int) -> None:
        """Give credit back for messages settled without the subscription attached."""
        if self.conn is None or self.sid is None or not self.conn.is_open:
            return
        try:
            fut = self.conn.request("credit", {"subscription": self.sid, "count": count})
        except QnodeError:
            return
        fut.add_done_callback(_consume_result)

    def _start_extender(self, msg: Message) -> None:
        task = asyncio.get_running_loop().create_task(self._extend(msg))
        self._extenders[msg] = task
        self._tasks.add(task)
        task.add_done_callback(self._extender_done)

    def _extender_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("visibility auto-extend failed", exc_info=task.exception())

    async def _extend(self, msg: Message) -> None:
        vt_ms = self.visibility_timeout_ms or await self._queue_visibility_ms()
        vt_ms = max(vt_ms, 1_000)
        held_ms = 0
        while held_ms < limits.client_auto_extend_max_ms:
            await asyncio.sleep(vt_ms / 2000)
            held_ms += vt_ms // 2
            try:
                await msg.change_visibility(vt_ms / 1000)
            except QnodeError as exc:
                log.debug("auto-extend stopped", extra={"code": int(exc.code)})
                return

    async def _queue_visibility_ms(self) -> int:
        """The queue's VisibilityTimeout, asked once per consumption (not once per message)."""
        if self._queue_vt_ms is None:
            try:
                attrs = await self.queue.attributes("VisibilityTimeout")
                self._queue_vt_ms = int(float(attrs.get("VisibilityTimeout", "30")) * 1000)
            except (QnodeError, ValueError):
                self._queue_vt_ms = limits.visibility_timeout_ms_default
        return self._queue_vt_ms

    def _stop_extenders(self) -> None:
        for task in self._extenders.values():
            task.cancel()
        self._extenders.clear()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_extenders()
        conn, sid = self.conn, self.sid
        if self._buf is not None:
            self._buf.end(None)
        if conn is not None and sid is not None and conn.is_open:
            try:
                fut = conn.request("unsubscribe", {"subscription": sid})
                async with asyncio.timeout(self.client.request_timeout_ms / 1000):
                    await fut
            except (QnodeError, TimeoutError):
                pass    # the server closes the subscription with the connection anyway
            conn.close_push_buffer(sid)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)


class _ReplyTimeout(Exception):
    """Set on a reply future whose call's deadline passed (turned into RequestTimeout)."""


def _expire_reply(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_exception(_ReplyTimeout())


def _consume_result(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()


class Client:
    """`async with qnode.Client(["127.0.0.1:7700"]) as c: q = await c.create_queue("jobs")`."""

    def __init__(self, addresses: Sequence[str] | str = ("127.0.0.1:7700",), *,
                 connect_timeout: float = limits.client_connect_timeout_ms / 1000,
                 request_timeout: float = limits.client_request_timeout_ms / 1000,
                 attempts_max: int = limits.client_attempts_max,
                 backoff_base: float = limits.client_backoff_base_ms / 1000,
                 backoff_max: float = limits.client_backoff_max_ms / 1000,
                 rng: random.Random | None = None, client_name: str = "qnode-python",
                 frame_size_max: int = limits.frame_size_max,
                 push_idle_ping: float = limits.client_push_idle_ping_ms / 1000) -> None:
        if isinstance(addresses, str):
            addresses = [a for a in addresses.split(",") if a]
        if not addresses:
            raise InvalidParameter("at least one address is required")
        if attempts_max < 1:
            raise InvalidParameter("attempts_max must be at least 1")
        self.addresses = [_parse_address(a) for a in addresses]
        self.connect_timeout_ms = values.seconds_to_ms(connect_timeout, "connect_timeout")
        self.request_timeout_ms = values.seconds_to_ms(request_timeout, "request_timeout")
        self.attempts_max = attempts_max
        self.backoff_base_ms = values.seconds_to_ms(backoff_base, "backoff_base")
        self.backoff_max_ms = values.seconds_to_ms(backoff_max, "backoff_max")
        self.push_idle_ping_ms = values.seconds_to_ms(push_idle_ping, "push_idle_ping")
        self._rng = rng or random.Random()
        self._client_name = client_name
        self._frame_limits = FrameLimits(frame_size_max=frame_size_max)
        self._conn: ClientConnection | None = None
        self._index = 0
        self._connect_lock: asyncio.Lock | None = None
        self._closed = False
        self.server_info: dict = {}
        # Request ids: a random 64-bit prefix per client plus a counter (unique without a
        # uuid4 and its getrandom syscall per call; not from `rng`, which tests may seed alike).
        self._rid_prefix = uuid.uuid4().hex[:16] + "-"
        self._rid_seq = 0

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection. A server that stopped reading (unsent bytes in the buffer)
        would hold a graceful close for ever: after CLOSE_TIMEOUT_S it is aborted."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await conn.wait_closed()
            except TimeoutError:
                conn.abort()
                await conn.wait_closed()

    @property
    def message_size_max(self) -> int:
        """The server's message size bound (from HELLO), or the default before connecting."""
        advertised = self.server_info.get("limits", {}).get("message_size_max")
        return advertised if type(advertised) is int else limits.message_size_max

    @property
    def connected_address(self) -> str | None:
        conn = self._conn
        return conn.address if conn is not None and conn.is_open else None

    # --- connection management -------------------------------------------------------------
    async def connect(self) -> dict:
        """Connect now (calls connect lazily otherwise); returns the server's HELLO info."""
        loop = asyncio.get_running_loop()
        await self._connection(loop.time() + self.connect_timeout_ms / 1000 * len(self.addresses))
        return self.server_info

    async def _connection(self, deadline: float) -> ClientConnection:
        conn = self._conn
        if conn is not None and conn.is_open:
            return conn
        if self._closed:
            raise Unavailable("the client is closed")
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
        try:
            # Another call may be connecting: wait for it within this call's deadline.
            async with asyncio.timeout_at(deadline):
                await self._connect_lock.acquire()
        except TimeoutError:
            raise RequestTimeout("no connection within the call's deadline "
                                 "(another call was still connecting)") from None
        try:
            conn = self._conn
            if conn is not None and conn.is_open:
                return conn
            return await self._connect_any(deadline)
        finally:
            self._connect_lock.release()

    async def _connect_any(self, deadline: float) -> ClientConnection:
        loop = asyncio.get_running_loop()
        last: BaseException | None = None
        n = len(self.addresses)
        for i in range(n):
            index = (self._index + i) % n
            host, port = self.addresses[index]
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(min(remaining, self.connect_timeout_ms / 1000)):
                    conn = await ClientConnection.open(host, port, frame_limits=self._frame_limits,
                                                       client_name=self._client_name)
            except (OSError, TimeoutError, QnodeError) as exc:
                last = exc
                continue
            self._index = index
            self._conn = conn
            self.server_info = conn.server_info
            return conn
        tried = ", ".join(f"{h}:{p}" for h, p in self.addresses)
        why = f"{type(last).__name__}: {last}" if last is not None else "deadline passed"
        why = " ".join(why.split())
        raise Unavailable(f"no qnode node answered at {tried} (last error: {why})")

    def _drop(self, conn: ClientConnection | None) -> None:
        """Stop using `conn`; the next try starts at the next address."""
        if conn is not None and self._conn is conn:
            self._conn = None
            conn.close()
            self._index = (self._index + 1) % len(self.addresses)

    def _prefer(self, hint: str) -> None:
        """Try the node a NOT_LEADER error named next (added to the list if new, bounded)."""
        try:
            address = _parse_address(hint)
        except InvalidParameter:
            return
        if address not in self.addresses:
            if len(self.addresses) >= ADDRESSES_COUNT_MAX:
                return
            self.addresses.append(address)
        self._index = self.addresses.index(address)

    async def _backoff(self, attempt: int, deadline: float | None, retry_after_ms: int | None = None) -> None:
        ms = min(self.backoff_max_ms, self.backoff_base_ms * (2 ** (attempt - 1)))
        ms = ms * (0.5 + self._rng.random() / 2)          # jitter: [ms/2, ms)
        if retry_after_ms:
            ms = max(ms, retry_after_ms)
        delay = ms / 1000
        if deadline is not None:
            delay = min(delay, max(0.0, deadline - asyncio.get_running_loop().time()))
        await asyncio.sleep(delay)

    # --- calls -------------------------------------------------------------------------------
    async def _call(self, op: str, args: dict, *, extra_s: float = 0.0,
                    timeout: float | None = None) -> Any:
        return (await self._call_with_conn(op, args, extra_s=extra_s, timeout=timeout))[1]

    async def _call_with_conn(self, op: str, args: dict, *, extra_s: float = 0.0,
                              timeout: float | None = None,
                              push_capacity: int | None = None) -> tuple[ClientConnection, Any]:
        conn = self._conn
        # The open connection's loop is the running one; looking it up is a syscall on 3.11.
        loop = conn.loop if conn is not None and conn.is_open else asyncio.get_running_loop()
        timeout_s = timeout if timeout is not None else self.request_timeout_ms / 1000
        if extra_s:
            # A long poll: never time it out before its wait plus a margin.
            timeout_s = max(timeout_s, limits.client_long_poll_margin_ms / 1000) + extra_s
        deadline = loop.time() + timeout_s
        rid = None
        if op in MUTATING_OPS:
            self._rid_seq += 1
            rid = f"{self._rid_prefix}{self._rid_seq:x}"
        attempt = 0
        while True:
            attempt += 1
            conn: ClientConnection | None = None
            try:
                conn = self._conn
                if conn is None or not conn.is_open:
                    conn = await self._connection(deadline)
                fut = None
                try:
                    if not conn.writable:
                        async with asyncio.timeout_at(deadline):
                            await conn.wait_writable()
                    fut = conn.request(op, args, rid, push_capacity=push_capacity)
                    # A timer on the reply future (cheaper per call than asyncio.timeout_at).
                    timer = loop.call_at(deadline, _expire_reply, fut)
                    try:
                        return conn, await fut
                    finally:
                        timer.cancel()
                except (TimeoutError, _ReplyTimeout):
                    if fut is not None:
                        conn.forget(fut)
                    raise RequestTimeout(f"{op} got no reply within {timeout_s:.3g} s") from None
            except QnodeError as exc:
                if exc.code not in RETRY_CODES or attempt >= self.attempts_max or self._closed:
                    raise
                if loop.time() >= deadline:
                    raise
                if exc.code in SWITCH_NODE_CODES:
                    self._drop(conn)
                    if exc.leader_hint:
                        self._prefer(exc.leader_hint)
                await self._backoff(attempt, deadline, exc.retry_after_ms)

    # --- queues --------------------------------------------------------------------------------
    def queue(self, name: str) -> Queue:
        """A handle without a round trip (errors surface on first use)."""
        return Queue(self, name)

    async def create_queue(self, name: str, *, attributes: Mapping[str, Any] | None = None,
                           tags: Mapping[str, str] | None = None, **kwargs: Any) -> Queue:
        """Create (or get, when the attributes match) a queue. kwargs are snake_case seconds
        (`visibility_timeout=30`, `delay=5`, `fifo=True`, `redrive_policy={...}`); `attributes`
        takes raw SQS names. A name ending in `.fifo` implies `FifoQueue=true`."""
        attrs = values.queue_attributes(kwargs, attributes)
        if name.endswith(".fifo"):
            attrs.setdefault("FifoQueue", "true")
        args: dict[str, Any] = {"queue": name, "attributes": attrs}
        if tags:
            args["tags"] = dict(tags)
        result = await self._call("create_queue", args)
        return Queue(self, result["queue"])

    async def get_queue(self, name: str) -> Queue:
        result = await self._call("get_queue", {"queue": name})
        return Queue(self, result["queue"])

    async def list_queues(self, prefix: str | None = None) -> list[str]:
        """Every queue name (sorted), fetched page by page."""
        return await self._list_pages("list_queues", {} if prefix is None else {"prefix": prefix})

    async def _list_pages(self, op: str, args: dict) -> list[str]:
        names: list[str] = []
        while True:
            result = await self._call(op, args)
            names.extend(result["queues"])
            token = result.get("next_token")
            if token is None:
                return names
            args = {**args, "next_token": token}

    async def delete_queue(self, name: str) -> None:
        await self._call("delete_queue", {"queue": name})

    async def start_message_move_task(self, source: str, destination: str | None = None,
                                      max_per_second: int | None = None) -> str:
        args: dict[str, Any] = {"source": source}
        if destination is not None:
            args["destination"] = destination
        if max_per_second is not None:
            args["max_per_second"] = max_per_second
        return (await self._call("start_message_move_task", args))["task_handle"]

    async def cancel_message_move_task(self, task_handle: str) -> int:
        return (await self._call("cancel_message_move_task", {"task_handle": task_handle}))["moved_count"]

    async def list_message_move_tasks(self, source: str, max_results: int = 1) -> list:
        result = await self._call("list_message_move_tasks", {"source": source, "max_results": max_results})
        return [payloads.move_task_from_wire(t) for t in result["tasks"]]

    async def status(self) -> dict:
        return await self._call("status", {})

    async def ping(self) -> None:
        await self._call("ping", {})
