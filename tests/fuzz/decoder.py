"""Fuzz driver for the frame decoder and the server-side protocol core.

Inputs come from one seeded `random.Random`: random bytes, random valid frames (random msgpack
values, valid protocol messages), and mutations of valid streams (bit flips, truncation,
insertion, deletion, rewritten length prefixes, spliced streams). Each input is fed to a fresh
`FrameDecoder` and a fresh server `ProtocolConnection` whole, at every split point (short
inputs) or at random split points (long ones), and byte by byte when short.

Oracle: the decoder raises only `LocalProtocolError`, the connection core only
`RemoteProtocolError`; after an error both refuse further input; the decoder's buffer never
exceeds one header plus `frame_size_max`; valid streams decode to the frames that were encoded.
Any other exception is a bug and is re-raised with the seed and case index.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import Any

from qnode.protocol.connection import ConnectionEnded, ProtocolConnection, Role
from qnode.protocol.framing import HEADER_SIZE, NEED_DATA, FrameDecoder, FrameLimits, encode_frame
from qnode.protocol.messages import Hello, HelloReply, Request, to_wire
from qnode.protocol.violations import LocalProtocolError, RemoteProtocolError

LIMITS = FrameLimits(frame_size_max=4096, str_len_max=1024, bin_len_max=1024, array_len_max=64,
                     map_len_max=64)
SPLIT_ALL_LEN_MAX = 40        # inputs up to this long are fed at every split point
RANDOM_SPLITS = 4
OPS = ["ping", "send", "receive", "delete", "status", "zzz"]


@dataclass
class Stats:
    cases: int = 0
    feeds: int = 0
    frames: int = 0
    errors: int = 0


def random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth < 3 else 6)
    if kind == 0:
        return rng.randrange(-2**40, 2**40)
    if kind == 1:
        return rng.random()
    if kind == 2:
        return "".join(rng.choice("abcé☃ \x00") for _ in range(rng.randrange(12)))
    if kind == 3:
        return rng.randbytes(rng.randrange(16))
    if kind == 4:
        return rng.choice([None, True, False])
    if kind == 5:
        return rng.randrange(256)
    if kind == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    if kind == 7:
        return {str(random_value(rng, 3)): random_value(rng, depth + 1) for _ in range(rng.randrange(5))}
    return [2, rng.randrange(2**32), rng.choice(OPS), {"queue": "q"}, None]


def valid_stream(rng: random.Random) -> tuple[bytes, list]:
    objs = []
    for _ in range(rng.randrange(1, 4)):
        if rng.random() < 0.5:
            objs.append(to_wire(Request(rng.randrange(2**31), rng.choice(OPS), {"k": random_value(rng, 2)},
                                        rng.choice([None, "rid"]))))
        else:
            objs.append(random_value(rng))
    return b"".join(encode_frame(o) for o in objs), objs


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(6)
        if op == 0 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            del b[rng.randrange(len(b)):]
        elif op == 2:
            i = rng.randrange(len(b) + 1)
            b[i:i] = rng.randbytes(rng.randrange(1, 8))
        elif op == 3 and b:
            i = rng.randrange(len(b))
            del b[i:i + rng.randrange(1, 8)]
        elif op == 4:
            size = rng.choice([0, 1, LIMITS.frame_size_max, LIMITS.frame_size_max + 1, 2**32 - 1,
                               rng.randrange(2**32)])
            if len(b) >= HEADER_SIZE:
                b[0:HEADER_SIZE] = struct.pack(">I", size)
        else:
            b += valid_stream(rng)[0][: rng.randrange(1, 20)]
    return bytes(b)


def gen_case(rng: random.Random) -> tuple[bytes, list | None]:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randbytes(rng.randrange(64)), None
    if kind == 1:
        return valid_stream(rng)
    if kind == 2:
        return mutate(rng, valid_stream(rng)[0]), None
    size = rng.randrange(64)
    return struct.pack(">I", size) + rng.randbytes(rng.randrange(size + 2)), None


def feed_decoder(chunks: list[bytes]) -> tuple[list, bool]:
    dec = FrameDecoder(LIMITS)
    out: list = []
    try:
        for chunk in chunks:
            dec.feed(chunk)
            while (obj := dec.next_frame()) is not NEED_DATA:
                out.append(obj)
            assert dec.buffered_size <= HEADER_SIZE + LIMITS.frame_size_max, dec.buffered_size
    except LocalProtocolError:
        try:
            dec.next_frame()
        except LocalProtocolError:
            return out, True
        raise AssertionError("decoder accepted input after an error") from None
    return out, False


def feed_connection(chunks: list[bytes]) -> int:
    conn = ProtocolConnection(Role.SERVER, frame_limits=LIMITS)
    conn.receive_data(encode_frame(to_wire(Hello(1))))
    assert type(conn.next_event()) is Hello
    conn.send(_REPLY)
    events = 0
    try:
        for chunk in chunks + [b""]:
            conn.receive_data(chunk)
            while True:
                ev = conn.next_event()
                if ev is NEED_DATA or type(ev) is ConnectionEnded:
                    break
                events += 1
            if conn.state.name == "CLOSED":
                break
    except RemoteProtocolError:
        try:
            conn.next_event()
        except RemoteProtocolError:
            return events
        raise AssertionError("connection accepted use after an error") from None
    return events


_REPLY = HelloReply({"node_id": "fuzz", "version": 1, "limits": {}, "durability": "fsync"})


def splits(rng: random.Random, data: bytes) -> list[list[bytes]]:
    out = [[data]]
    if len(data) <= SPLIT_ALL_LEN_MAX:
        out += [[data[:i], data[i:]] for i in range(1, len(data))]
        out.append([data[i:i + 1] for i in range(len(data))])
    else:
        for _ in range(RANDOM_SPLITS):
            i = rng.randrange(1, len(data))
            out.append([data[:i], data[i:]])
    return out


def run(cases: int, seed: int = 0) -> Stats:
    rng = random.Random(seed)
    stats = Stats()
    for index in range(cases):
        data, expected = gen_case(rng)
        try:
            reference = None
            for chunks in splits(rng, data):
                got, failed = feed_decoder(chunks)
                stats.feeds += 1
                stats.errors += failed
                stats.frames += len(got)
                if reference is None:
                    reference = (got, failed)
                else:
                    assert (got, failed) == reference, "split point changed the decoding"
                if expected is not None:
                    assert not failed
                    assert got == expected
            feed_connection([data])
        except Exception as exc:   # report any failure with its seed and case, then re-raise
            raise AssertionError(f"fuzz case {index} (seed {seed}) failed on {data!r}: {exc!r}") from exc
        stats.cases += 1
    return stats
