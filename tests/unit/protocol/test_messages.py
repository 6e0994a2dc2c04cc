"""Message types: validated at construction, and the only msgpack (array) conversion.

Method: round-trip one instance of every type through `to_wire`/`from_wire` and a real frame,
then build each type with bad fields and feed `from_wire` shapes it must refuse.
"""

from __future__ import annotations

import pytest

from qnode.protocol.errors import QueueDoesNotExist
from qnode.protocol.framing import FrameDecoder, encode_frame
from qnode.protocol.messages import (
    ErrorResponse, Goodbye, Hello, HelloReply, Push, Request, Response, from_wire, to_wire,
)
from qnode.protocol.violations import LocalProtocolError

INFO = {"node_id": "n1", "version": 1, "limits": {"frame_size_max": 16}, "durability": "fsync"}

SAMPLES = [
    Hello(1, None, "test"),
    Hello(1, {"token": "x"}),
    HelloReply(INFO),
    Request(7, "send", {"queue": "q", "entries": [{"body": b"x"}]}, "rid-1"),
    Request(8, "ping", {}, None),
    Response(7, {"results": [{"message_id": "m"}]}),
    Response(9, None),
    ErrorResponse(7, QueueDoesNotExist("gone").to_wire()),
    Push(3, {"message_id": "m", "body": b"b"}),
    Goodbye({"code": 1015, "message": "bad frame"}),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip_through_a_frame(msg):
    dec = FrameDecoder()
    dec.feed(encode_frame(to_wire(msg)))
    assert from_wire(dec.next_frame()) == msg


def test_error_response_rebuilds_the_typed_exception():
    exc = ErrorResponse(1, QueueDoesNotExist("gone", retry_after_ms=3).to_wire()).exception()
    assert isinstance(exc, QueueDoesNotExist)
    assert exc.retry_after_ms == 3


@pytest.mark.parametrize("build", [
    lambda: Request(-1, "ping"),
    lambda: Request(2**63, "ping"),
    lambda: Request(True, "ping"),
    lambda: Request(1, ""),
    lambda: Request(1, "x" * 65),
    lambda: Request(1, "ping", []),
    lambda: Request(1, "ping", {}, ""),
    lambda: Request(1, "ping", {}, "r" * 129),
    lambda: Request(1, "ping", {}, 5),
    lambda: Hello("1"),
    lambda: Hello(70000),
    lambda: Hello(1, "auth"),
    lambda: HelloReply({"node_id": "n"}),
    lambda: ErrorResponse(1, {"message": "no code"}),
    lambda: ErrorResponse(1, {"code": 1, "message": "m" * 5000}),
    lambda: ErrorResponse(1, {"code": 1, "retry_after_ms": -1}),
    lambda: Push(1, [1]),
    lambda: Goodbye("bye"),
])
def test_construction_validates(build):
    with pytest.raises(LocalProtocolError):
        build()


@pytest.mark.parametrize("obj", [
    None, 1, "x", {}, [], [99, 1], [True, 1, "ping", {}, None], [2, 1, "ping", {}],
    [2, 1, "ping", {}, None, "extra"], [3], [4, 1, "not a map"], [{"a": 1}, 1], [1.5, 1],
    [0, 1, None], [6, {"code": "x"}],
])
def test_from_wire_refuses_other_shapes(obj):
    with pytest.raises(LocalProtocolError):
        from_wire(obj)
