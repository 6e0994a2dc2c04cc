"""Fuzzing the protocol decoder (default run: a few thousand cases) and a live server.

Method: (1) the seeded driver in tests/fuzz/decoder.py (mutated valid frames, random bytes,
every split point); the long run is `python -m tests.fuzz --cases 100000`. (2) hypothesis
strategies for arbitrary bytes and for valid frames cut at an arbitrary point. (3) a
BinaryServer on TCP: random garbage on one connection gets an error frame (or is merely
incomplete) and that connection closes, while a second connection keeps being served. (4) the
dispatcher given arbitrary args for every op: a result or a typed QnodeError, nothing else.
"""

from __future__ import annotations

import asyncio
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from qnode.frontend.dispatch import Dispatcher
from qnode.frontend.request_cache import RequestCache
from qnode.protocol.errors import QnodeError
from qnode.protocol.framing import NEED_DATA, FrameDecoder, encode_frame
from qnode.protocol.messages import Goodbye, Request, Response
from qnode.protocol.ops import ALL_OPS
from tests.fuzz.decoder import LIMITS, feed_connection, feed_decoder, mutate, run, valid_stream
from tests.unit.frontend.fake_api import FakeApi
from tests.unit.frontend.helpers import RawClient, start_server
from tests.unit.frontend.test_dispatch import RecordingSession


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


arg_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64) | st.text(max_size=12)
    | st.binary(max_size=12) | st.sampled_from(["q", "q.fifo", "r-1", "String", "All"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["body", "data_type", "string_value", "binary_value", "delay_ms", "a", "entry_id"]),
        inner, max_size=4),
    max_leaves=12)
arg_keys = st.sampled_from([
    "queue", "attributes", "tags", "prefix", "names", "keys", "entries", "max_count", "wait_ms",
    "visibility_timeout_ms", "attempt_id", "delete", "receipts", "items", "receipt", "delay_ms",
    "reason", "message_id", "source", "destination", "max_per_second", "task_handle",
    "max_results", "prefetch", "subscription", "count", "next_token"])


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(ALL_OPS)),
       st.dictionaries(arg_keys, arg_values, max_size=6))
def test_dispatch_turns_any_args_into_a_result_or_a_typed_error(op, args):
    async def run():
        api = FakeApi()
        await api.create_queue("q")
        d = Dispatcher(api, request_cache=RequestCache(count_max=10, ttl_ms=1000),
                       status=lambda: {}, clock_ms=lambda: 0)
        if "wait_ms" in args and isinstance(args["wait_ms"], int) and args["wait_ms"] > 0:
            args["wait_ms"] = 0          # keep the run fast: no real long polls
        try:
            await d.dispatch(Request(1, op, args, None), RecordingSession())
        except QnodeError:
            pass

    asyncio.run(run())
