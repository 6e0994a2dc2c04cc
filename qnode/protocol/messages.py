"""The message types of the binary protocol and their msgpack conversion (the only place).

Every frame body is a msgpack array whose first element is a small integer type tag:

    tag  message        layout                                  direction
    0    Hello          [0, version, auth | nil, client]        client -> server, first frame
    1    HelloReply     [1, info]                               server -> client
    2    Request        [2, cid, op, args, rid | nil]           client -> server
    3    Response       [3, cid, result]                        server -> client
    4    ErrorResponse  [4, cid, error]                         server -> client
    5    Push           [5, sid, message]                       server -> client
    6    Goodbye        [6, error]                              either, then close

`error` is `{code, message, retry_after_ms?, leader_hint?}` (QnodeError.to_wire()).

Invariants: messages are frozen slotted dataclasses validated at construction (a bad value raises
LocalProtocolError); `from_wire` accepts exactly the layouts above and raises LocalProtocolError
for anything else; no other module builds or parses these arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from qnode.protocol.errors import ErrorCode, QnodeError, error_from_wire
from qnode.protocol.ops import OP_NAME_LENGTH_MAX, REQUEST_ID_LENGTH_MAX
from qnode.protocol.violations import LocalProtocolError

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({PROTOCOL_VERSION})

TAG_HELLO = 0
TAG_HELLO_REPLY = 1
TAG_REQUEST = 2
TAG_RESPONSE = 3
TAG_ERROR_RESPONSE = 4
TAG_PUSH = 5
TAG_GOODBYE = 6

ID_MAX = 2**63 - 1          # cid / sid: non-negative int64
CLIENT_NAME_LENGTH_MAX = 256
ERROR_MESSAGE_LENGTH_MAX = 4096


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise LocalProtocolError(what)


def _check_id(value: Any, what: str) -> None:
    # The message is formatted only on failure: this runs for every request and reply.
    if type(value) is not int or not 0 <= value <= ID_MAX:
        raise LocalProtocolError(f"{what} must be an int in 0..2**63-1")


def _check_error(error: Any) -> None:
    _check(isinstance(error, dict), "error must be a map")
    code = error.get("code")
    _check(type(code) is int, "error.code must be an int")
    message = error.get("message", "")
    _check(isinstance(message, str) and len(message) <= ERROR_MESSAGE_LENGTH_MAX,
           "error.message must be a short string")
    retry = error.get("retry_after_ms")
    _check(retry is None or (type(retry) is int and retry >= 0), "error.retry_after_ms must be an int")
    hint = error.get("leader_hint")
    _check(hint is None or isinstance(hint, str), "error.leader_hint must be a string")


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    auth: Mapping[str, Any] | None = None      # filled by the authentication issue; empty now
    client: str = ""

    def __post_init__(self) -> None:
        _check(type(self.version) is int and 0 <= self.version <= 0xFFFF, "version must be a u16")
        _check(self.auth is None or isinstance(self.auth, dict), "auth must be a map or nil")
        _check(isinstance(self.client, str) and len(self.client) <= CLIENT_NAME_LENGTH_MAX,
               "client must be a short string")


@dataclass(frozen=True, slots=True)
class HelloReply:
    """Server info: node_id, version, limits {frame_size_max, message_size_max}, durability."""

    info: Mapping[str, Any]

    def __post_init__(self) -> None:
        _check(isinstance(self.info, dict), "hello reply info must be a map")
        _check(isinstance(self.info.get("node_id"), str), "info.node_id must be a string")
        _check(type(self.info.get("version")) is int, "info.version must be an int")
        _check(isinstance(self.info.get("limits"), dict), "info.limits must be a map")
        _check(isinstance(self.info.get("durability"), str), "info.durability must be a string")

    @property
    def version(self) -> int:
        return self.info["version"]


@dataclass(slots=True)     # not frozen: one per request and reply (see frontend/api.py)
class Request:
    cid: int
    op: str
    args: Mapping[str, Any] = field(default_factory=dict)
    rid: str | None = None

    def __post_init__(self) -> None:
        # Inline checks (one per request): each raises only when its condition fails.
        cid, op, rid = self.cid, self.op, self.rid
        if type(cid) is not int or not 0 <= cid <= ID_MAX:
            raise LocalProtocolError("cid must be an int in 0..2**63-1")
        if not isinstance(op, str) or not 0 < len(op) <= OP_NAME_LENGTH_MAX:
            raise LocalProtocolError("op must be a short non-empty string")
        if not isinstance(self.args, dict):
            raise LocalProtocolError("args must be a map")
        if rid is not None and (not isinstance(rid, str) or not 0 < len(rid) <= REQUEST_ID_LENGTH_MAX):
            raise LocalProtocolError("rid must be a short non-empty string or nil")


@dataclass(slots=True)     # not frozen: one per request and reply (see frontend/api.py)
class Response:
    cid: int
    result: Any = None

    def __post_init__(self) -> None:
        _check_id(self.cid, "cid")


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    cid: int
    error: Mapping[str, Any]

    def __post_init__(self) -> None:
        _check_id(self.cid, "cid")
        _check_error(self.error)

    @classmethod
    def from_exception(cls, cid: int, exc: QnodeError) -> "ErrorResponse":
        return cls(cid, exc.to_wire())

    def exception(self) -> QnodeError:
        return error_from_wire(dict(self.error))


@dataclass(frozen=True, slots=True)
class Push:
    sid: int
    message: Mapping[str, Any]

    def __post_init__(self) -> None:
        _check_id(self.sid, "sid")
        _check(isinstance(self.message, dict), "push message must be a map")


@dataclass(frozen=True, slots=True)
class Goodbye:
    """Connection-level error (or clean close, code omitted is not allowed): sent, then close."""

    error: Mapping[str, Any]

    def __post_init__(self) -> None:
        _check_error(self.error)

    @property
    def code(self) -> int:
        return self.error["code"]

    def exception(self) -> QnodeError:
        return error_from_wire(dict(self.error))


Message = Hello | HelloReply | Request | Response | ErrorResponse | Push | Goodbye


def to_wire(msg: Message) -> list:
    """The msgpack-ready array for a message."""
    t = type(msg)
    if t is Request:
        return [TAG_REQUEST, msg.cid, msg.op, msg.args, msg.rid]
    if t is Response:
        return [TAG_RESPONSE, msg.cid, msg.result]
    if t is ErrorResponse:
        return [TAG_ERROR_RESPONSE, msg.cid, msg.error]
    if t is Push:
        return [TAG_PUSH, msg.sid, msg.message]
    if t is Hello:
        return [TAG_HELLO, msg.version, msg.auth, msg.client]
    if t is HelloReply:
        return [TAG_HELLO_REPLY, msg.info]
    if t is Goodbye:
        return [TAG_GOODBYE, msg.error]
    raise LocalProtocolError(f"not a protocol message: {t.__name__}")


def from_wire(obj: Any) -> Message:
    """Parse a decoded frame body. Raises LocalProtocolError for any other shape."""
    if type(obj) is not list or not obj:
        raise LocalProtocolError("frame body must be a non-empty array")
    tag = obj[0]
    if type(tag) is not int:
        raise LocalProtocolError("message tag must be an int")
    n = len(obj)
    try:
        if tag == TAG_REQUEST and n == 5:
            return Request(obj[1], obj[2], obj[3], obj[4])
        if tag == TAG_RESPONSE and n == 3:
            return Response(obj[1], obj[2])
        if tag == TAG_ERROR_RESPONSE and n == 3:
            return ErrorResponse(obj[1], obj[2])
        if tag == TAG_PUSH and n == 3:
            return Push(obj[1], obj[2])
        if tag == TAG_HELLO and n == 4:
            return Hello(obj[1], obj[2], obj[3])
        if tag == TAG_HELLO_REPLY and n == 2:
            return HelloReply(obj[1])
        if tag == TAG_GOODBYE and n == 2:
            return Goodbye(obj[1])
    except (TypeError, AttributeError):
        # keep parsing total: any shape error is a protocol violation, never a crash
        raise LocalProtocolError("malformed message") from None
    raise LocalProtocolError("unknown message tag or wrong arity")


def error_wire(code: ErrorCode, message: str = "") -> dict:
    """An error map for a code (helper for callers without an exception at hand)."""
    return QnodeError(message, code=code).to_wire()
