"""Frame codec: u32 big-endian length + one msgpack body.

Method: encode known objects and decode them back whole, byte by byte and at every split
point; then feed each kind of bad input (oversized length, empty frame, malformed msgpack,
trailing data, over-limit containers, ext types, bad UTF-8) and check the typed error, that
the error is sticky, and that the buffer never exceeds one header plus one frame.
"""

from __future__ import annotations

import struct

import msgpack
import pytest

from qnode.protocol.errors import ErrorCode
from qnode.protocol.framing import (
    HEADER_SIZE, NEED_DATA, FrameDecoder, FrameEncoder, FrameLimits, encode_frame,
)
from qnode.protocol.violations import LocalProtocolError

SAMPLES = [
    [2, 1, "ping", {}, None],
    {"body": b"\x00\xff" * 100, "attrs": {"k": "v"}},
    "unicode \u2603",
    list(range(50)),
    0,
    None,
]


def raw_frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def drain(dec: FrameDecoder) -> list:
    out = []
    while (obj := dec.next_frame()) is not NEED_DATA:
        out.append(obj)
    return out


def test_round_trip_of_several_frames_in_one_chunk():
    dec = FrameDecoder()
    dec.feed(b"".join(encode_frame(s) for s in SAMPLES))
    assert drain(dec) == SAMPLES
    assert dec.buffered_size == 0


def test_every_split_point_gives_the_same_frames():
    stream = b"".join(encode_frame(s) for s in SAMPLES)
    for cut in range(len(stream) + 1):
        dec = FrameDecoder()
        dec.feed(stream[:cut])
        got = drain(dec)
        dec.feed(stream[cut:])
        got += drain(dec)
        assert got == SAMPLES, cut


def test_byte_at_a_time():
    stream = b"".join(encode_frame(s) for s in SAMPLES)
    dec = FrameDecoder()
    got = []
    for i in range(len(stream)):
        dec.feed(stream[i:i + 1])
        got += drain(dec)
    assert got == SAMPLES


def test_need_data_on_empty_and_partial_header():
    dec = FrameDecoder()
    assert dec.next_frame() is NEED_DATA
    dec.feed(b"\x00\x00")
    assert dec.next_frame() is NEED_DATA


def test_declared_length_above_max_raises_frame_too_large_before_the_body_arrives():
    dec = FrameDecoder(FrameLimits(frame_size_max=1024))
    dec.feed(struct.pack(">I", 1025))
    with pytest.raises(LocalProtocolError) as info:
        dec.next_frame()
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE
    assert dec.buffered_size == HEADER_SIZE


def test_errors_are_sticky():
    dec = FrameDecoder(FrameLimits(frame_size_max=16))
    dec.feed(struct.pack(">I", 17))
    with pytest.raises(LocalProtocolError):
        dec.next_frame()
    with pytest.raises(LocalProtocolError):
        dec.next_frame()
    with pytest.raises(LocalProtocolError):
        dec.feed(encode_frame(1))


@pytest.mark.parametrize("body, why", [
    (b"", "empty frame"),
    (b"\xc1", "never-used msgpack byte"),
    (b"\x92\x01", "truncated array"),
    (msgpack.packb(1) + msgpack.packb(2), "two objects in one frame"),
    (msgpack.packb({1: "int key"}), "non-string map key"),
    (b"\xa2\xff\xfe", "invalid utf-8 string"),
    (msgpack.packb(msgpack.ExtType(5, b"x")), "ext type"),
    (msgpack.packb(list(range(2000))), "array over the limit"),
    (msgpack.packb({str(i): i for i in range(2000)}), "map over the limit"),
    (b"\x91" * 5000 + b"\x90", "deep nesting"),
])
def test_malformed_bodies_raise_protocol_error(body, why):
    dec = FrameDecoder()
    dec.feed(raw_frame(body))
    with pytest.raises(LocalProtocolError) as info:
        dec.next_frame()
    assert info.value.code is ErrorCode.PROTOCOL_ERROR, why


def test_bin_and_str_length_limits_apply():
    dec = FrameDecoder(FrameLimits(frame_size_max=4096, bin_len_max=10, str_len_max=10))
    dec.feed(encode_frame(b"x" * 11))
    with pytest.raises(LocalProtocolError):
        dec.next_frame()
    dec = FrameDecoder(FrameLimits(frame_size_max=4096, bin_len_max=10, str_len_max=10))
    dec.feed(encode_frame("y" * 11))
    with pytest.raises(LocalProtocolError):
        dec.next_frame()


def test_buffer_stays_bounded_by_one_partial_frame():
    limits = FrameLimits(frame_size_max=256)
    dec = FrameDecoder(limits)
    frame = encode_frame(b"z" * 100)
    for _ in range(200):
        dec.feed(frame[:60])
        drain(dec)
        dec.feed(frame[60:])
        assert len(drain(dec)) == 1
        assert dec.buffered_size <= HEADER_SIZE + limits.frame_size_max


def test_encoder_refuses_unpackable_and_oversized_objects():
    enc = FrameEncoder(frame_size_max=64)
    with pytest.raises(LocalProtocolError):
        enc.encode({"x": object()})
    with pytest.raises(LocalProtocolError) as info:
        enc.encode(b"x" * 100)
    assert info.value.code is ErrorCode.FRAME_TOO_LARGE
    # The encoder is still usable afterwards.
    assert enc.encode([1]) == encode_frame([1])


def test_encoded_frame_has_big_endian_length_prefix():
    frame = encode_frame({"a": 1})
    body = msgpack.packb({"a": 1}, use_bin_type=True)
    assert frame == struct.pack(">I", len(body)) + body
