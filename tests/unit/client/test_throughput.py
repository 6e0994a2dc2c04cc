"""Round-trip throughput and long-poll wake latency of client + BinaryServer (slow; figures).

Goal: catch gross per-frame overhead. Method: a BinaryServer over the FakeApi in a child
process (uvloop) and the client in this process (uvloop); 3 runs of sequential pings and sends
on one connection (median printed), 64-deep pipelined pings, and the time from a send to the
wake of a parked long poll on another connection (p50/p99 printed). Floors are conservative so
a loaded 2-core CI box passes; the printed figures are the result.
Run: pytest tests/unit/client/test_throughput.py -m slow -s
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time

import pytest
import uvloop

import qnode

SERVER = """
import asyncio, sys, uvloop
from tests.unit.frontend.fake_api import FakeApi
from tests.unit.frontend.helpers import start_server
async def main():
    s = await start_server(FakeApi())
    print(s.address[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await s.stop(1000)
uvloop.run(main())
"""


async def measure(port: int) -> dict:
    out = {}
    address = f"127.0.0.1:{port}"
    async with qnode.Client([address]) as c, qnode.Client([address]) as producer:
        q = await c.create_queue("bench")
        pq = producer.queue("bench")
        for name, call in (("ping", c.ping), ("send", lambda: q.send(b"x" * 100))):
            rates = []
            for _ in range(3):
                n = 2000
                t0 = time.perf_counter()
                for _ in range(n):
                    await call()
                rates.append(n / (time.perf_counter() - t0))
            out[f"{name}_round_trips_per_s_median"] = statistics.median(rates)
        await q.purge()
        sem = asyncio.Semaphore(64)

        async def one():
            async with sem:
                await c.ping()

        n = 10_000
        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        out["ping_pipelined_64_per_s"] = n / (time.perf_counter() - t0)
        lat = []
        for _ in range(300):
            poll = asyncio.ensure_future(q.receive(max_messages=1, wait=5))
            await c.ping()      # same connection, sent after the poll: the poll has parked
            t0 = time.perf_counter()
            await pq.send(b"w")
            msgs = await poll
            lat.append((time.perf_counter() - t0) * 1000)
            await msgs[0].delete()
        lat.sort()
        out["send_to_wake_ms_p50"] = lat[len(lat) // 2]
        out["send_to_wake_ms_p99"] = lat[int(len(lat) * 0.99)]
    return out


@pytest.mark.slow
def test_round_trip_throughput_and_wake_latency():
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        figures = uvloop.run(measure(port))
    finally:
        proc.stdin.close()
        proc.wait(30)
    for k, v in figures.items():
        print(f"{k}: {v:.3f}")
    assert figures["ping_round_trips_per_s_median"] > 500
    assert figures["send_round_trips_per_s_median"] > 300
