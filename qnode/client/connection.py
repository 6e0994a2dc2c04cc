"""One client-side connection to a qnode node: the asyncio shell around `ProtocolConnection`.

Owns: connect + HELLO, correlation ids, the map of outstanding requests (cid -> future), and
routing push frames to their subscription's bounded buffer. It does not retry or fail over
(`Client` does).

Invariants: every outstanding future is completed exactly once: with the result, the typed
error, or `ConnectionLost` (an `Unavailable`) when the connection ends. A subscription buffer
never holds more than its prefetch plus a margin; a server that pushes beyond its credit
violates the protocol and the connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from qnode.protocol.connection import ConnectionEnded, ProtocolConnection, Role, State
from qnode.protocol.errors import QnodeError, Unavailable, error_for_code, error_from_wire
from qnode.protocol.framing import NEED_DATA, FrameLimits
from qnode.protocol.messages import (
    ErrorResponse, Goodbye, Hello, HelloReply, PROTOCOL_VERSION, Push, Request, Response,
)
from qnode.protocol.violations import LocalProtocolError, RemoteProtocolError

log = logging.getLogger(__name__)

CID_MAX = 2**63 - 1


class ConnectionLost(Unavailable):
    """The connection ended before the reply came; the request may or may not have run."""


class PushBuffer:
    """Bounded buffer of pushed messages for one subscription; `None` marks its end."""

    __slots__ = ("items", "capacity", "event", "ended", "end_error")

    def __init__(self, capacity: int) -> None:
        self.items: deque[dict] = deque()
        self.capacity = capacity
        self.event = asyncio.Event()
        self.ended = False
        self.end_error: QnodeError | None = None

    def put(self, message: dict) -> bool:
        if len(self.items) >= self.capacity:
            return False
        self.items.append(message)
        self.event.set()
        return True

    def end(self, error: QnodeError | None) -> None:
        if not self.ended:
            self.ended = True
            self.end_error = error
            self.event.set()

    async def get(self) -> dict | None:
        """The next pushed message, or None once the subscription ended and is drained."""
        while not self.items:
            if self.ended:
                return None
            self.event.clear()
            await self.event.wait()
        return self.items.popleft()


class ClientConnection(asyncio.Protocol):
    def __init__(self, address: str, frame_limits: FrameLimits) -> None:
        self.address = address
        self._core = ProtocolConnection(Role.CLIENT, frame_limits=frame_limits)
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._subs: dict[int, PushBuffer] = {}
        self._subscribing: dict[int, int] = {}       # cid of a subscribe -> push buffer capacity
        self._next_cid = 1
        self._hello: asyncio.Future = self._loop.create_future()
        self._lost: asyncio.Future = self._loop.create_future()
        self._error: QnodeError | None = None
        self._writable = asyncio.Event()       # cleared while the transport's buffer is full
        self._writable.set()
        self.server_info: dict = {}

    @classmethod
    async def open(cls, host: str, port: int, *, frame_limits: FrameLimits, client_name: str = "",
                   auth: dict | None = None) -> "ClientConnection":
        """Connect and complete the HELLO handshake (the caller bounds the time)."""
        loop = asyncio.get_running_loop()
        address = f"{host}:{port}"
        _transport, conn = await loop.create_connection(lambda: cls(address, frame_limits), host, port)
        try:
            conn._send(Hello(PROTOCOL_VERSION, auth, client_name))
            conn.server_info = await conn._hello
        except BaseException:
            conn.close()
            raise
        return conn

    # --- state -----------------------------------------------------------------------------
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop this connection lives on (asyncio.get_running_loop() is a getpid() on 3.11)."""
        return self._loop

    @property
    def is_open(self) -> bool:
        return self._error is None and self._core.state is State.OPEN and self._transport is not None

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._lost)

    @property
    def writable(self) -> bool:
        return self._writable.is_set()

    async def wait_writable(self) -> None:
        """Backpressure: wait while the transport is paused (its buffer is over the high mark)."""
        if not self._writable.is_set():
            await self._writable.wait()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def abort(self) -> None:
        """Close at once, dropping unsent bytes (connection_lost follows promptly)."""
        if self._transport is not None:
            self._transport.abort()

    # --- requests --------------------------------------------------------------------------
    def request(self, op: str, args: dict, rid: str | None = None, *,
                push_capacity: int | None = None) -> asyncio.Future:
        """Send one request now; the future completes with the result or a typed error.

        `push_capacity` (for `subscribe`): the subscription's push buffer is created as soon as
        the reply is parsed, before any push that follows it in the same read is routed."""
        if not self.is_open:
            raise self._error or ConnectionLost(f"connection to {self.address} is closed")
        cid = self._next_cid
        self._next_cid = cid + 1 if cid < CID_MAX else 1
        fut = self._loop.create_future()
        self._pending[cid] = fut
        if push_capacity is not None:
            self._subscribing[cid] = push_capacity
        try:
            self._send(Request(cid, op, args, rid))
        except BaseException:
            self._pending.pop(cid, None)
            self._subscribing.pop(cid, None)
            raise
        return fut

    def forget(self, fut: asyncio.Future) -> None:
        """Drop a request whose caller gave up (timeout); a late reply is then ignored."""
        for cid, f in self._pending.items():
            if f is fut:
                del self._pending[cid]
                return

    def open_push_buffer(self, sid: int, capacity: int) -> PushBuffer:
        buf = self._subs.get(sid)
        if buf is None:
            buf = self._subs[sid] = PushBuffer(capacity)
            if not self.is_open:
                buf.end(self._error or ConnectionLost(f"connection to {self.address} is closed"))
        return buf

    def close_push_buffer(self, sid: int) -> None:
        buf = self._subs.pop(sid, None)
        if buf is not None:
            buf.end(None)

    def _send(self, msg: Any) -> None:
        assert self._transport is not None
        try:
            data = self._core.send(msg)
        except LocalProtocolError as exc:
            # Our own message cannot be framed (e.g. a body over frame_size_max): a typed error
            # for this call, the connection stays usable.
            raise error_for_code(exc.code)(exc.message) from None
        self._transport.write(data)

    # --- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # uvloop: not an asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        core = self._core
        try:
            core.receive_data(data)
            while True:
                event = core.next_event()
                if event is NEED_DATA:
                    return
                t = type(event)
                if t is Response:
                    if self._subscribing:
                        self._on_subscribed(event)
                    fut = self._pending.pop(event.cid, None)
                    if fut is not None and not fut.done():
                        fut.set_result(event.result)
                elif t is ErrorResponse:
                    fut = self._pending.pop(event.cid, None)
                    self._subscribing.pop(event.cid, None)
                    if fut is not None and not fut.done():
                        fut.set_exception(event.exception())
                elif t is Push:
                    self._on_push(event)
                elif t is HelloReply:
                    if not self._hello.done():
                        self._hello.set_result(dict(event.info))
                elif t is Goodbye:
                    self._fail(event.exception())
                    return
                else:
                    assert t is ConnectionEnded, t
                    self._fail(ConnectionLost(f"{self.address} closed the connection"))
                    return
        except (RemoteProtocolError, LocalProtocolError) as exc:
            log.warning("server violated the protocol", extra={"address": self.address,
                                                                "code": int(exc.code)})
            self._fail(Unavailable(f"{self.address} violated the protocol: {exc.message}"))

    def _on_subscribed(self, response: Response) -> None:
        capacity = self._subscribing.pop(response.cid, None)
        if capacity is None:
            return
        result = response.result
        sid = result.get("subscription") if isinstance(result, dict) else None
        if type(sid) is not int:
            raise LocalProtocolError("subscribe reply without a subscription id")
        self.open_push_buffer(sid, capacity)

    def _on_push(self, push: Push) -> None:
        buf = self._subs.get(push.sid)
        if buf is None:
            return      # a push that crossed our unsubscribe
        end = push.message.get("end")
        if end is not None:
            buf.end(error_from_wire(end) if isinstance(end, dict)
                    else Unavailable("subscription ended"))
            self._subs.pop(push.sid, None)
            return
        if not buf.put(dict(push.message)):
            raise LocalProtocolError("server pushed beyond the subscription's credit")

    def eof_received(self) -> bool:
        self._fail(ConnectionLost(f"{self.address} closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionLost(f"connection to {self.address} lost"
                                  + (f": {exc}" if exc is not None else "")))
        self._writable.set()      # wake writers: they will see the connection is closed
        if not self._lost.done():
            self._lost.set_result(None)

    def _fail(self, error: QnodeError) -> None:
        if self._error is None:
            self._error = error
        pending = self._pending
        self._pending = {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(self._error)
        if not self._hello.done():
            self._hello.set_exception(self._error)
            self._hello.exception()    # retrieved by open(); avoid a never-retrieved warning
        for buf in self._subs.values():
            buf.end(self._error)
        self._subs.clear()
        self.close()
