"""SWIM codec: every message round-trips, and no input makes `decode` raise anything but
`SwimDecodeError`.
Method: encode/decode each message type; then a light seeded fuzz (random bytes, every truncation
of valid datagrams, random byte flips, structurally valid msgpack with wrong field types) checks
that decoding either returns a message that re-encodes to a decodable datagram, or raises the
typed error (a `ProtocolViolation` carrying PROTOCOL_ERROR)."""

from __future__ import annotations

import random

import msgpack
import pytest

from qnode.membership.codec import (
    Ack, Gossip, Nack, Ping, PingReq, Sync, SwimDecodeError, Update, decode, encode,
)
from qnode.membership.types import Meta, State
from qnode.protocol.errors import ErrorCode, ProtocolViolation

META = Meta.build(roles=("frontend", "backend"), binary_address="10.0.0.1:7700",
                  http_address="10.0.0.1:9324", cell="c1", load={"queues": 3, "cpu": 0.25})
UPDATE = Update("n1", "10.0.0.1:7946", 7, State.SUSPECT, META, "n2")
MESSAGES = [
    Ping(1, "n2", "n1", (UPDATE,)),
    Ping(2**63 - 1, "n2", "n1"),
    Ack(5, "n1", (UPDATE, Update("n3", "[::1]:7946", 0, State.ALIVE, Meta(), "n3"))),
    PingReq(9, "n2", "n1", "10.0.0.1:7946", (UPDATE,)),
    Nack(9, "n3"),
    Gossip("n2", (Update("n4", "h:1", 3, State.LEFT, Meta(), "n4"),)),
    Sync("n2", True, (UPDATE,)),
    Sync("n2", False, ()),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_message_round_trips(message):
    assert decode(encode(message)) == message


def test_decode_error_is_a_typed_protocol_error():
    with pytest.raises(SwimDecodeError) as info:
        decode(b"\xc1")
    assert isinstance(info.value, ProtocolViolation)
    assert info.value.code == ErrorCode.PROTOCOL_ERROR


@pytest.mark.parametrize("data", [
    b"", b"\x00", b"\xc1", b"\x91\x01", msgpack.packb([1, 2]), msgpack.packb({"v": 2, "t": 1}),
    msgpack.packb({"v": 1, "t": 99}), msgpack.packb({"v": 1, "t": 1, "seq": -1, "src": "a", "dst": "b"}),
    msgpack.packb({"v": 1, "t": 1, "seq": True, "src": "a", "dst": "b"}),
    msgpack.packb({"v": 1, "t": 1, "seq": 1, "src": "", "dst": "b"}),
    msgpack.packb({"v": 1, "t": 1, "seq": 1, "src": "a", "dst": "b", "g": {}}),
    msgpack.packb({"v": 1, "t": 1, "seq": 1, "src": "a", "dst": "b", "g": [1]}),
    msgpack.packb({"v": 1, "t": 5, "src": "a", "g": [{"n": "x", "a": "nohost", "i": 1, "s": 0, "f": "a"}]}),
    msgpack.packb({"v": 1, "t": 5, "src": "a", "g": [{"n": "x", "a": "h:1", "i": 1, "s": 9, "f": "a"}]}),
    msgpack.packb({"v": 1, "t": 5, "src": "a", "g": [{"n": "x", "a": "h:1", "i": 1, "s": 0, "f": "a",
                                                      "m": {"l": {"k": "not a number"}}}]}),
    msgpack.packb({"v": 1, "t": 6, "src": "a", "rep": 1, "ms": []}),
    msgpack.packb({"v": 1, "t": 4, "seq": 1, "src": "a" * 5000}),
    msgpack.packb({1: 2}),
    msgpack.packb({"v": 1, "t": 4, "seq": 1, "src": "a", "x": b"bin"}),
    b"\xdd\xff\xff\xff\xff",                       # array32 claiming 4 billion items
    b"\x91" * 100_000,                             # deeply nested arrays
])
def test_garbage_raises_swim_decode_error(data):
    with pytest.raises(SwimDecodeError):
        decode(data)


def test_oversized_datagram_is_rejected_before_parsing():
    with pytest.raises(SwimDecodeError):
        decode(encode(MESSAGES[0]), size_max=10)
    with pytest.raises(SwimDecodeError):
        decode(b"\x00" * 70_000)


def _decode_or_typed_error(data: bytes) -> None:
    try:
        message = decode(data)
    except SwimDecodeError:
        return
    assert decode(encode(message)) == message


def test_fuzz_random_bytes():
    rng = random.Random(6)
    for _ in range(3000):
        _decode_or_typed_error(bytes(rng.randrange(256) for _ in range(rng.randrange(64))))


def test_fuzz_truncations_and_flips_of_valid_datagrams():
    rng = random.Random(7)
    for message in MESSAGES:
        data = encode(message)
        for cut in range(len(data)):
            _decode_or_typed_error(data[:cut])
        for _ in range(300):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            _decode_or_typed_error(bytes(mutated))


# --- property: any valid message round-trips --------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

_ids = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=20)
_addresses = st.builds(lambda h, p: f"{h}:{p}", st.text("abcxyz0189.-", min_size=1, max_size=20),
                       st.integers(0, 65535))
_metas = st.builds(
    Meta.build,
    roles=st.lists(st.sampled_from(["frontend", "metadata", "backend"]), max_size=3, unique=True),
    binary_address=st.one_of(st.just(""), _addresses),
    cell=st.text(max_size=10),
    load=st.dictionaries(st.text(min_size=1, max_size=8),
                         st.one_of(st.integers(-2**40, 2**40),
                                   st.floats(allow_nan=False, allow_infinity=False)), max_size=4))
_updates = st.builds(Update, _ids, _addresses, st.integers(0, 2**63 - 1), st.sampled_from(list(State)),
                     _metas, _ids)
_seqs = st.integers(0, 2**63 - 1)
_messages = st.one_of(
    st.builds(Ping, _seqs, _ids, _ids, st.lists(_updates, max_size=4).map(tuple)),
    st.builds(Ack, _seqs, _ids, st.lists(_updates, max_size=4).map(tuple)),
    st.builds(PingReq, _seqs, _ids, _ids, _addresses, st.lists(_updates, max_size=4).map(tuple)),
    st.builds(Nack, _seqs, _ids),
    st.builds(Gossip, _ids, st.lists(_updates, max_size=4).map(tuple)),
    st.builds(Sync, _ids, st.booleans(), st.lists(_updates, max_size=4).map(tuple)),
)


@settings(max_examples=150, deadline=None)
@given(_messages)
def test_property_every_valid_message_round_trips(message):
    assert decode(encode(message)) == message
