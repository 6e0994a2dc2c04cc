"""The sans-IO connection state machine (h11 style), driven as a client/server pair in memory.

Method: a `Pair` moves the bytes one side's `send()` returns into the other side's
`receive_data()`, with no sockets or event loop. Tests cover the HELLO handshake, version
refusal, the send/receive tables of each state, conversion of parse errors to
RemoteProtocolError, the ERROR state refusing further use, Goodbye, and EOF handling.
"""

from __future__ import annotations

import pytest

from qnode.protocol.connection import ConnectionEnded, ProtocolConnection, Role, State
from qnode.protocol.errors import ErrorCode
from qnode.protocol.framing import NEED_DATA, FrameLimits, encode_frame
from qnode.protocol.messages import (
    ErrorResponse, Goodbye, Hello, HelloReply, Push, Request, Response,
)
from qnode.protocol.violations import LocalProtocolError, RemoteProtocolError

INFO = {"node_id": "n1", "version": 1, "limits": {}, "durability": "fsync"}


class Pair:
    def __init__(self) -> None:
        self.client = ProtocolConnection(Role.CLIENT)
        self.server = ProtocolConnection(Role.SERVER)

    def to_server(self, msg):
        self.server.receive_data(self.client.send(msg))
        return self.server.next_event()

    def to_client(self, msg):
        self.client.receive_data(self.server.send(msg))
        return self.client.next_event()

    def open(self) -> "Pair":
        assert self.to_server(Hello(1)) == Hello(1)
        assert self.to_client(HelloReply(INFO)) == HelloReply(INFO)
        assert self.client.state is State.OPEN
        assert self.server.state is State.OPEN
        return self


def test_handshake_then_requests_responses_and_pushes():
    p = Pair().open()
    assert p.to_server(Request(1, "ping")) == Request(1, "ping")
    assert p.to_client(Response(1, {})) == Response(1, {})
    assert p.to_client(ErrorResponse(2, {"code": 4000, "message": "x"})).cid == 2
    assert p.to_client(Push(5, {"body": b"x"})) == Push(5, {"body": b"x"})
    assert p.client.peer_version == 1
    assert p.server.peer_version == 1


def test_unsupported_version_is_a_typed_remote_error_and_server_can_say_goodbye():
    p = Pair()
    p.server.receive_data(p.client.send(Hello(2)))
    with pytest.raises(RemoteProtocolError) as info:
        p.server.next_event()
    assert info.value.code is ErrorCode.UNSUPPORTED_VERSION
    assert p.server.state is State.ERROR
    p.client.receive_data(p.server.send(Goodbye(info.value.to_wire())))
    bye = p.client.next_event()
    assert isinstance(bye, Goodbye)
    assert bye.code == ErrorCode.UNSUPPORTED_VERSION
    assert p.client.state is State.CLOSED
    assert p.server.state is State.CLOSED


def test_request_before_hello_is_a_protocol_error():
    server = ProtocolConnection(Role.SERVER)
    server.receive_data(encode_frame([2, 1, "ping", {}, None]))
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.code is ErrorCode.PROTOCOL_ERROR


def test_after_an_error_the_connection_refuses_everything_but_goodbye():
    server = ProtocolConnection(Role.SERVER)
    server.receive_data(b"\x00\x00\x00\x01\xc1")
    with pytest.raises(RemoteProtocolError):
        server.next_event()
    with pytest.raises(RemoteProtocolError):
        server.next_event()
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"more")
    with pytest.raises(LocalProtocolError):
        server.send(Response(1, {}))
    server.send(Goodbye({"code": 1015, "message": "bye"}))
    assert server.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        server.send(Goodbye({"code": 1015, "message": "again"}))


def test_oversized_frame_maps_to_frame_too_large():
    server = ProtocolConnection(Role.SERVER, frame_limits=FrameLimits(frame_size_max=32))
    server.receive_data((1000).to_bytes(4, "big"))
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE


@pytest.mark.parametrize("role, msg", [
    (Role.CLIENT, Response(1, {})),
    (Role.CLIENT, HelloReply(INFO)),
    (Role.CLIENT, Request(1, "ping")),
    (Role.SERVER, Request(1, "ping")),
    (Role.SERVER, Hello(1)),
])
def test_send_table_refuses_wrong_messages_before_the_handshake(role, msg):
    with pytest.raises(LocalProtocolError):
        ProtocolConnection(role).send(msg)


def test_server_may_not_reply_to_hello_it_has_not_received():
    with pytest.raises(LocalProtocolError):
        ProtocolConnection(Role.SERVER).send(HelloReply(INFO))


def test_second_hello_is_refused():
    p = Pair().open()
    with pytest.raises(LocalProtocolError):
        p.client.send(Hello(1))
    p.server.receive_data(encode_frame([0, 1, None, ""]))
    with pytest.raises(RemoteProtocolError):
        p.server.next_event()


def test_client_refuses_a_request_from_the_server():
    p = Pair().open()
    p.client.receive_data(encode_frame([2, 1, "ping", {}, None]))
    with pytest.raises(RemoteProtocolError):
        p.client.next_event()
    assert p.client.state is State.ERROR


def test_clean_and_unclean_eof():
    p = Pair().open()
    p.server.receive_data(b"")
    assert p.server.next_event() == ConnectionEnded(clean=True)
    assert p.server.state is State.CLOSED

    p = Pair().open()
    p.server.receive_data(p.client.send(Request(1, "ping"))[:5])
    assert p.server.next_event() is NEED_DATA
    p.server.receive_data(b"")
    assert p.server.next_event() == ConnectionEnded(clean=False)


def test_goodbye_from_client_closes_the_server_side():
    p = Pair().open()
    assert isinstance(p.to_server(Goodbye({"code": 3002, "message": "leaving"})), Goodbye)
    assert p.server.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        p.server.send(Response(1, {}))
