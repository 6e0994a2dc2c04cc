"""Fuzzing the protocol decoder (default run: a few thousand cases) and a live server.

Method: (1) the seeded driver in tests/fuzz/decoder.py (mutated valid frames, random bytes,
every split point); the long run is `python -m tests.fuzz --cases 100000`. (2) hypothesis
strategies for arbitrary bytes and for valid frames cut at an arbitrary point. (3) a
BinaryServer on TCP: random garbage on one connection gets an error frame (or is merely
incomplete) and that connection closes, while a second connection keeps being served.
"""

from __future__ import annotations

import asyncio
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from qnode.protocol.framing import NEED_DATA, FrameDecoder, encode_frame
from qnode.protocol.messages import Goodbye, Response
from tests.fuzz.decoder import LIMITS, feed_connection, feed_decoder, mutate, run, valid_stream
from tests.unit.frontend.helpers import RawClient, start_server


def test_seeded_fuzz_run_few_thousand_cases():
    stats = run(3000, seed=20261127)
    assert stats.cases == 3000
    assert stats.errors > 0          # the generator does produce rejected input
    assert stats.frames > 0          # .. and accepted frames


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=300))
def test_arbitrary_bytes_at_any_split(data, cut):
    cut = min(cut, len(data))
    whole = feed_decoder([data])
    assert feed_decoder([data[:cut], data[cut:]]) == whole
    feed_connection([data[:cut], data[cut:]])


json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20)


@settings(max_examples=100, deadline=None)
@given(st.lists(json_like, min_size=1, max_size=4), st.data())
def test_valid_frames_round_trip_at_every_cut(objs, data):
    stream = b"".join(encode_frame(o) for o in objs)
    cut = data.draw(st.integers(0, len(stream)))
    dec = FrameDecoder(LIMITS)
    got = []
    for part in (stream[:cut], stream[cut:]):
        dec.feed(part)
        while (obj := dec.next_frame()) is not NEED_DATA:
            got.append(obj)
    assert got == objs


async def test_server_survives_garbage_and_keeps_serving_other_connections():
    server = await start_server()
    rng = random.Random(7)
    try:
        good = await RawClient.connect(server)
        for i in range(30):
            bad = await RawClient.connect(server)
            payload = mutate(rng, valid_stream(rng)[0]) if i % 2 else rng.randbytes(rng.randrange(1, 200))
            bad.writer.write(payload)
            bad.writer.write_eof()
            # Whatever the garbage was, the server either answered requests it could parse,
            # or said Goodbye; then it closed this connection (EOF on our side).
            async with asyncio.timeout(10):
                rest = await bad.reader.read()
                while not bad.reader.at_eof():
                    rest += await bad.reader.read()
            bad.core.receive_data(rest)
            events = []
            while True:
                try:
                    ev = bad.core.next_event()
                except Exception:
                    break
                if ev is NEED_DATA:
                    break
                events.append(ev)
            assert all(type(e).__name__ in ("Response", "ErrorResponse", "Goodbye", "ConnectionEnded")
                       for e in events), events
            await bad.close()
            assert type(await good.call("ping")) is Response
        assert server.stats.protocol_errors > 0
        await good.close()
    finally:
        await server.stop(1000)


async def test_server_sends_goodbye_for_a_bad_frame_body():
    server = await start_server()
    try:
        c = await RawClient.connect(server)
        c.writer.write(b"\x00\x00\x00\x02\x92\xc1")
        ev = await c.event()
        assert type(ev) is Goodbye
        await c.close()
    finally:
        await server.stop(1000)
