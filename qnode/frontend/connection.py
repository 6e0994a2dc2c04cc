"""One accepted binary-protocol connection: the asyncio shell around `ProtocolConnection`.

Owns, per connection: feeding received bytes to the sans-IO core; running each request as its
own task (responses are pipelined and may go out of order, so a 20 s long poll never blocks a
ping); inbound backpressure; outbound batching; push subscriptions.

Invariants and bounds:
- At most `inflight_requests_per_connection_max` request tasks; at that count the shell stops
  taking frames out of the decoder and calls `pause_reading()`, and resumes below the low mark.
  The decoder therefore holds at most one read chunk plus one partial frame.
- A reply is written to the transport at once when nothing is queued in `_out` (the transport
  sends it or buffers it itself; waiting for a later loop iteration only added latency). While
  the transport is paused, replies are appended to `_out` and written with one `writelines()`
  per loop iteration once it resumes. While
  the transport is paused (`pause_writing`), reading is paused too; if `_out` plus the
  transport's buffer exceed `outbound_pending_size_max`, the peer is a slow consumer: the
  connection is aborted and `stats.slow_consumers_closed` counts it (logged once per server).
- A protocol violation gets a Goodbye error frame, then the connection closes; other connections
  are unaffected.
- A frame begun must be complete within `frame_timeout_ms` (a peer stalling mid-frame is a
  protocol violation); an idle connection between frames may stay open.
- A correlation id may be in flight once per connection: a second request with it is a
  protocol violation (two replies could not be told apart).
- Every task is referenced in `_tasks` until done (done-callback discards it).
- On disconnect, long-poll receives are cancelled (their waiters freed); other requests run to
  completion so that a retried request finds the first result in the request cache.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Sequence

from qnode.frontend.api import Consumer
from qnode.protocol import payloads
from qnode.protocol.connection import ConnectionEnded, ProtocolConnection, Role, State
from qnode.protocol.errors import (
    InternalError, OverLimit, ProtocolViolation, QnodeError, ResourceNotFound, ShuttingDown,
)
from qnode.protocol.framing import NEED_DATA
from qnode.protocol.messages import (
    ERROR_MESSAGE_LENGTH_MAX, ErrorResponse, Goodbye, Hello, HelloReply, Push, Request, Response,
)
from qnode.protocol.violations import LocalProtocolError, RemoteProtocolError

if TYPE_CHECKING:
    from qnode.frontend.server import BinaryServer

log = logging.getLogger(__name__)


def error_reply(cid: int, exc: QnodeError) -> ErrorResponse:
    wire = exc.to_wire()
    if len(wire["message"]) > ERROR_MESSAGE_LENGTH_MAX:
        wire["message"] = wire["message"][:ERROR_MESSAGE_LENGTH_MAX]
    return ErrorResponse(cid, wire)


class _Subscription:
    __slots__ = ("sid", "consumer", "task")

    def __init__(self, sid: int, consumer: Consumer, task: asyncio.Task | None = None) -> None:
        self.sid = sid
        self.consumer = consumer
        self.task = task


class ServerConnection(asyncio.Protocol):
    def __init__(self, server: "BinaryServer") -> None:
        self._server = server
        cfg = server.config
        self._inflight_max = cfg.inflight_requests_per_connection_max
        self._inflight_low = cfg.inflight_requests_per_connection_low
        self._outbound_max = cfg.outbound_pending_size_max
        self._core = ProtocolConnection(Role.SERVER, frame_limits=cfg.frame_limits())
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._tasks: set[asyncio.Task] = set()
        self._receive_tasks: set[asyncio.Task] = set()
        self._push_tasks: set[asyncio.Task] = set()
        self._inflight = 0
        self._reading_paused = False
        self._writing_paused = False
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._out: list[bytes] = []
        self._out_size = 0
        self._flush_scheduled = False
        self._closed = False            # transport closing/closed: drop further output
        self._stopping = False          # server stop: no new requests
        self._peer_eof = False
        self._subs: dict[int, _Subscription] = {}
        self._next_sid = 1
        self.peer: Any = None
        self._hello_timer: asyncio.TimerHandle | None = None
        self._frame_timer: asyncio.TimerHandle | None = None   # armed while a frame is partial
        self._cids: dict[int, asyncio.Task] = {}   # correlation id -> its request's task

    # --- asyncio.Protocol callbacks ---------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses: check the duck type.
        assert hasattr(transport, "pause_reading"), transport
        self._transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        cfg = self._server.config
        transport.set_write_buffer_limits(high=cfg.outbound_pending_size_high,
                                          low=cfg.outbound_pending_size_high // 4)
        if not self._server.admit(self):
            self._fail(OverLimit("too many connections"), violation=False)
            return
        self._hello_timer = self._loop.call_later(cfg.hello_timeout_ms / 1000, self._on_hello_timeout)

    def _on_frame_timeout(self) -> None:
        self._frame_timer = None
        if not self._closed:
            self._fail(ProtocolViolation(
                f"a frame stayed incomplete for {self._server.config.frame_timeout_ms} ms"))

    def _on_hello_timeout(self) -> None:
        self._hello_timer = None
        if self._core.state is State.HELLO_PENDING and not self._closed:
            self._fail(ProtocolViolation("no HELLO within the hello timeout"))

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        try:
            self._core.receive_data(data)
        except LocalProtocolError as exc:
            self._fail(exc.to_remote())
            return
        self._process()

    def eof_received(self) -> bool:
        if self._closed:
            return False
        self._peer_eof = True
        try:
            self._core.receive_data(b"")
        except LocalProtocolError:
            return False
        self._process()
        # The peer can send nothing more, so it can never ack what a parked receive or a push
        # subscription would hand it: cancel those now (the waiter leaves the queue, unacked
        # pushed messages return at once) instead of letting them swallow the next messages.
        for task in list(self._receive_tasks):
            task.cancel()
        for sub in list(self._subs.values()):
            self._end_subscription(sub)
        self._subs.clear()
        # Keep the transport half-open until the other in-flight replies are written.
        return not self._closed

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None
        if self._frame_timer is not None:
            self._frame_timer.cancel()
            self._frame_timer = None
        self._out.clear()
        self._out_size = 0
        self._can_write.set()
        for task in list(self._receive_tasks):
            task.cancel()
        for sub in list(self._subs.values()):
            self._end_subscription(sub)
        self._subs.clear()
        self._server.forget(self)

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._can_write.clear()
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._can_write.set()
        self._schedule_flush()
        self._update_reading()

    # --- inbound --------------------------------------------------------------------------
    def _process(self) -> None:
        core = self._core
        while not self._closed and not self._stopping and self._inflight < self._inflight_max:
            try:
                event = core.next_event()
            except RemoteProtocolError as exc:
                self._fail(exc)
                return
            if event is NEED_DATA:
                # A partial frame must complete within frame_timeout_ms: a peer that stops
                # mid-frame would otherwise hold its connection (and buffer) for ever.
                if core.buffered_size:
                    if self._frame_timer is None:
                        self._frame_timer = self._loop.call_later(
                            self._server.config.frame_timeout_ms / 1000, self._on_frame_timeout)
                elif self._frame_timer is not None:
                    self._frame_timer.cancel()
                    self._frame_timer = None
                break
            t = type(event)
            if t is Request:
                self._start_request(event)
            elif t is Hello:
                self._on_hello(event)
            elif t is ConnectionEnded:
                self._maybe_finish()
                break
            else:
                # Goodbye from the client: it is leaving; stop reading, finish what runs.
                assert core.state is State.CLOSED, core.state
                self._peer_eof = True
                self._maybe_finish()
                break
        self._update_reading()

    def _on_hello(self, hello: Hello) -> None:
        # TODO(#auth): check hello.auth here once authentication exists.
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None
        self._write(HelloReply(self._server.hello_info))

    def _start_request(self, req: Request) -> None:
        if req.cid in self._cids:
            # Two replies with one cid could not be told apart: the client is broken.
            self._fail(ProtocolViolation(f"correlation id {req.cid} is already in flight"))
            return
        self._inflight += 1
        self._server.stats.requests_total += 1
        task = self._cids[req.cid] = self._loop.create_task(self._run(req))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if req.op == "receive":
            self._receive_tasks.add(task)
            task.add_done_callback(self._receive_tasks.discard)
            # Only receives are cancelled by us, and one cancelled before its first step (data
            # and EOF in one read) never runs `_run`'s handler: account for it here.
            task.add_done_callback(lambda t, req=req: self._cancelled_unstarted(t, req))

    async def _run(self, req: Request) -> None:
        try:
            result = await self._server.dispatcher.dispatch(req, self)
            reply: Response | ErrorResponse = Response(req.cid, result)
        except QnodeError as exc:
            reply = error_reply(req.cid, exc)
        except asyncio.CancelledError:
            self._cancelled(req)
            raise
        except Exception:
            # A bug below us: log it with the traceback, tell the peer only the code.
            log.exception("request failed", extra={"op": req.op})
            reply = error_reply(req.cid, InternalError())
        self._request_done(req.cid)
        self._write(reply)

    def _cancelled(self, req: Request) -> None:
        self._request_done(req.cid)
        if self._stopping:
            # A long poll parked when the server stops ends as an empty receive (as when
            # its wait expires), so clients do not see an error for an orderly shutdown.
            self._write(Response(req.cid, {"messages": []}) if req.op == "receive"
                        else error_reply(req.cid, ShuttingDown()))

    def _cancelled_unstarted(self, task: asyncio.Task, req: Request) -> None:
        if self._cids.get(req.cid) is task:   # still in flight once done: it never started
            self._cancelled(req)

    def _request_done(self, cid: int) -> None:
        del self._cids[cid]
        self._inflight -= 1
        assert self._inflight >= 0, self._inflight
        if self._inflight < self._inflight_low and self._reading_paused:
            self._update_reading()
        if self._peer_eof:
            self._maybe_finish()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or self._closed:
            return
        want_pause = (self._writing_paused or self._stopping or self._peer_eof
                      or self._inflight >= self._inflight_max)
        if want_pause:
            if not self._reading_paused and not self._peer_eof:
                self._reading_paused = True
                self._server.stats.reads_paused_total += 1
                transport.pause_reading()
        elif self._reading_paused and self._inflight < self._inflight_low:
            self._reading_paused = False
            transport.resume_reading()
            # Frames already buffered in the decoder are not re-delivered by the transport.
            self._loop.call_soon(self._process)

    # --- outbound -------------------------------------------------------------------------
    def _write(self, msg: Any) -> None:
        if self._closed or self._core.state is not State.OPEN and type(msg) is not HelloReply:
            return
        try:
            data = self._core.send(msg)
        except LocalProtocolError as exc:
            # The API returned something that cannot be framed (a bug, or a reply over
            # frame_size_max): the client gets a typed error for that request instead.
            if type(msg) is Response:
                log.error("reply cannot be encoded", extra={"error": exc.message})
                data = self._core.send(error_reply(msg.cid, InternalError("reply cannot be encoded")))
            else:
                raise
        self._enqueue(data)

    def _enqueue(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        if not self._out and not self._writing_paused:
            transport.write(data)
            if transport.get_write_buffer_size() > self._outbound_max:
                self._close_slow_consumer()
            return
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size + transport.get_write_buffer_size() > self._outbound_max:
            self._close_slow_consumer()
            return
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled and self._out and not self._writing_paused:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._closed or self._writing_paused or not self._out:
            return
        out = self._out
        self._out = []
        self._out_size = 0
        assert self._transport is not None
        self._transport.writelines(out)

    def _close_slow_consumer(self) -> None:
        self._server.note_slow_consumer(self)
        self._closed = True
        self._out.clear()
        self._out_size = 0
        assert self._transport is not None
        self._transport.abort()

    def _fail(self, exc: QnodeError, *, violation: bool = True) -> None:
        """Protocol violation (or refusal): error frame, then close."""
        if violation:
            self._server.stats.protocol_errors += 1
        log.debug("closing connection after protocol error",
                  extra={"peer": self.peer, "code": int(exc.code)})
        if self._core.state is not State.CLOSED:
            try:
                self._out.append(self._core.send(Goodbye(exc.to_wire())))
            except LocalProtocolError:
                pass   # already closed on our side: nothing more may be sent
        self._close_after_flush()

    def _close_after_flush(self) -> None:
        if self._closed:
            return
        self._closed = True
        transport = self._transport
        assert transport is not None
        if self._out:
            transport.writelines(self._out)
            self._out = []
        transport.close()       # close() flushes the transport's buffer first

    def _maybe_finish(self) -> None:
        if self._peer_eof and self._inflight == 0 and not self._closed:
            self._flush()
            self._close_after_flush()

    # --- push subscriptions (Session protocol for the dispatcher) -------------------------
    def attach_consumer(self, consumer: Consumer) -> int:
        if self._closed or self._stopping:
            raise ShuttingDown("connection is closing")
        if len(self._subs) >= self._server.config.subscriptions_per_connection_max:
            raise OverLimit("too many subscriptions on this connection")
        sid = self._next_sid
        self._next_sid += 1
        sub = _Subscription(sid, consumer)
        sub.task = self._loop.create_task(self._pump(sub))
        self._push_tasks.add(sub.task)
        sub.task.add_done_callback(self._push_done)
        self._subs[sid] = sub
        return sid

    def settle(self, sid: int, count: int, receipts: Sequence[str] = ()) -> bool:
        """Settle `receipts` (or `count` deliveries) of subscription `sid`, giving credits back;
        False if it is not on this connection."""
        sub = self._subs.get(sid)
        if sub is None:
            return False
        sub.consumer.settle(count, receipts)
        return True

    async def detach_consumer(self, sid: int) -> None:
        sub = self._subs.pop(sid, None)
        if sub is None:
            raise ResourceNotFound(f"no subscription {sid} on this connection")
        if sub.task is not None:
            sub.task.cancel()
        await sub.consumer.close()

    def _push_done(self, task: asyncio.Task) -> None:
        self._push_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("push subscription failed", exc_info=task.exception())

    async def _pump(self, sub: _Subscription) -> None:
        """Move pushed messages from the consumer to the wire; credit bounds how many."""
        end: QnodeError | None = None
        try:
            while not self._closed:
                msg = await sub.consumer.next()
                await self._can_write.wait()
                self._write(Push(sub.sid, payloads.received_to_wire(msg)))
        except QnodeError as exc:
            end = exc
        if self._subs.pop(sub.sid, None) is not None:
            if end is not None:
                self._write(Push(sub.sid, {"end": end.to_wire()}))
            self._server.spawn(sub.consumer.close())

    def _end_subscription(self, sub: _Subscription) -> None:
        if sub.task is not None:
            sub.task.cancel()
        self._server.spawn(sub.consumer.close())

    # --- server stop ----------------------------------------------------------------------
    def begin_stop(self) -> None:
        """Stop taking new requests; parked long polls are answered with no messages."""
        self._stopping = True
        self._update_reading()
        for task in list(self._receive_tasks):
            task.cancel()

    def request_tasks(self) -> list[asyncio.Task]:
        return [t for t in self._tasks if not t.done()]

    async def close_subscriptions(self) -> None:
        subs = list(self._subs.values())
        self._subs.clear()
        for sub in subs:
            if sub.task is not None:
                sub.task.cancel()
        for sub in subs:
            await sub.consumer.close()

    def close(self) -> None:
        self._flush()
        self._close_after_flush()

    @property
    def inflight(self) -> int:
        return self._inflight
