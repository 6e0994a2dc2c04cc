"""Sans-IO connection state machine of the binary protocol (in the style of h11).

Owns: which messages each side may send or receive in each state, the HELLO handshake and its
version check, and the conversion of parse errors into `RemoteProtocolError`.

Rule 1: all state transitions live in this file, in `_RECV` / `_SEND` below; the class does not
care which socket or event loop drives it. Rule 2: no I/O, no clock, no asyncio here.

    state           receive (peer's message)                  send (ours)
    HELLO_PENDING   server: Hello -> (stays; reply decides)    client: Hello
                    client: HelloReply -> OPEN                 server: HelloReply -> OPEN
                    either: Goodbye -> CLOSED                  either: Goodbye -> CLOSED
    OPEN            server: Request                            client: Request
                    client: Response, ErrorResponse, Push      server: Response, ErrorResponse, Push
                    either: Goodbye -> CLOSED                  either: Goodbye -> CLOSED
    ERROR           refuses (raises RemoteProtocolError)       Goodbye only -> CLOSED
    CLOSED          refuses                                    refuses

Entry points: `receive_data(bytes)` (b"" means the peer closed), `next_event()` (the single
inbound entry point: returns a message, `ConnectionEnded` or `NEED_DATA`; raises only
RemoteProtocolError, after which the state is ERROR), `send(message) -> bytes` (raises
LocalProtocolError if this side may not send it now).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from qnode.protocol.errors import ErrorCode
from qnode.protocol.framing import DEFAULT_LIMITS, NEED_DATA, FrameDecoder, FrameEncoder, FrameLimits
from qnode.protocol.messages import (
    ErrorResponse, Goodbye, Hello, HelloReply, Message, Push, Request, Response,
    SUPPORTED_VERSIONS, from_wire, to_wire,
)
from qnode.protocol.violations import LocalProtocolError, RemoteProtocolError


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class State(enum.Enum):
    HELLO_PENDING = "hello_pending"
    OPEN = "open"
    ERROR = "error"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ConnectionEnded:
    """Event: the peer closed its side (EOF). `clean` is False if it cut a frame in half."""

    clean: bool


# (role, state) -> message types this role may receive / send in that state.
_RECV: dict[tuple[Role, State], tuple[type, ...]] = {
    (Role.SERVER, State.HELLO_PENDING): (Hello, Goodbye),
    (Role.CLIENT, State.HELLO_PENDING): (HelloReply, Goodbye),
    (Role.SERVER, State.OPEN): (Request, Goodbye),
    (Role.CLIENT, State.OPEN): (Response, ErrorResponse, Push, Goodbye),
}
_SEND: dict[tuple[Role, State], tuple[type, ...]] = {
    (Role.CLIENT, State.HELLO_PENDING): (Hello, Goodbye),
    (Role.SERVER, State.HELLO_PENDING): (HelloReply, Goodbye),
    (Role.CLIENT, State.OPEN): (Request, Goodbye),
    (Role.SERVER, State.OPEN): (Response, ErrorResponse, Push, Goodbye),
    (Role.CLIENT, State.ERROR): (Goodbye,),
    (Role.SERVER, State.ERROR): (Goodbye,),
}


class ProtocolConnection:
    """One side of one binary-protocol connection. See the module docstring for the table."""

    __slots__ = ("role", "_state", "peer_version", "_decoder", "_encoder", "_eof",
                 "_hello_received", "_hello_sent", "_supported_versions", "_recv_allowed",
                 "_send_allowed")

    def __init__(self, role: Role, *, frame_limits: FrameLimits = DEFAULT_LIMITS,
                 supported_versions: frozenset[int] = SUPPORTED_VERSIONS) -> None:
        self.role = role
        self.state = State.HELLO_PENDING
        self.peer_version: int | None = None
        self._decoder = FrameDecoder(frame_limits)
        self._encoder = FrameEncoder(frame_limits.frame_size_max)
        self._eof = False
        self._hello_received = False
        self._hello_sent = False
        self._supported_versions = supported_versions

    @property
    def state(self) -> State:
        return self._state

    @state.setter
    def state(self, value: State) -> None:
        # The allowed message types are looked up once per transition, not once per frame.
        self._state = value
        self._recv_allowed = _RECV.get((self.role, value), ())
        self._send_allowed = _SEND.get((self.role, value), ())

    @property
    def buffered_size(self) -> int:
        return self._decoder.buffered_size

    # --- inbound ---------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the peer; b"" means the peer closed its side."""
        if self._state is State.ERROR or self._state is State.CLOSED:
            raise LocalProtocolError(f"cannot receive in state {self._state.name}")
        if self._eof:
            raise LocalProtocolError("data after end of stream")
        if data:
            self._decoder.feed(data)
        else:
            self._eof = True

    def next_event(self) -> Message | ConnectionEnded | Any:
        """Return the next event: a message, `ConnectionEnded`, or `NEED_DATA`.

        Raises RemoteProtocolError (codes PROTOCOL_ERROR, FRAME_TOO_LARGE, UNSUPPORTED_VERSION);
        the state is then ERROR and only `send(Goodbye(...))` is allowed. Anything else is a bug.
        """
        state = self._state
        if state is State.ERROR:
            raise RemoteProtocolError("connection is in the ERROR state")
        if state is State.CLOSED:
            raise RemoteProtocolError("connection is closed")
        try:
            return self._next_event()
        except LocalProtocolError as exc:
            self.state = State.ERROR
            raise exc.to_remote() from None

    def _next_event(self) -> Message | ConnectionEnded | Any:
        obj = self._decoder.next_frame()
        if obj is NEED_DATA:
            if self._eof:
                clean = self._decoder.buffered_size == 0
                self.state = State.CLOSED
                return ConnectionEnded(clean)
            return NEED_DATA
        msg = from_wire(obj)
        if type(msg) not in self._recv_allowed:
            raise LocalProtocolError(
                f"{type(msg).__name__} not allowed from the peer in state {self.state.name}")
        t = type(msg)
        if t is not Request and t is not Response and t is not Push:
            self._on_receive(msg)
        return msg

    def _on_receive(self, msg: Message) -> None:
        t = type(msg)
        if t is Hello:
            if self._hello_received:
                raise LocalProtocolError("second Hello")
            self._hello_received = True
            if msg.version not in self._supported_versions:
                raise LocalProtocolError(
                    f"protocol version {msg.version} is not supported "
                    f"(supported: {sorted(self._supported_versions)})",
                    code=ErrorCode.UNSUPPORTED_VERSION)
            self.peer_version = msg.version
        elif t is HelloReply:
            if msg.version not in self._supported_versions:
                raise LocalProtocolError(f"server speaks unsupported version {msg.version}",
                                         code=ErrorCode.UNSUPPORTED_VERSION)
            self.peer_version = msg.version
            self.state = State.OPEN
        elif t is Goodbye:
            self.state = State.CLOSED

    # --- outbound --------------------------------------------------------------------------
    def send(self, msg: Message) -> bytes:
        """Encode one message for the peer. Raises LocalProtocolError if not allowed now."""
        t = type(msg)
        if t not in self._send_allowed:
            raise LocalProtocolError(
                f"{self.role.name} may not send {t.__name__} in state {self._state.name}")
        if t is Response or t is Request or t is Push:
            pass        # the common case: no transition
        elif t is HelloReply:
            if not self._hello_received:
                raise LocalProtocolError("HelloReply before the peer's Hello")
            self.state = State.OPEN
        elif t is Hello:
            if self._hello_sent:
                raise LocalProtocolError("second Hello")
            self._hello_sent = True
        elif t is Goodbye:
            self.state = State.CLOSED
        return self._encoder.encode(to_wire(msg))
