"""How long a checkpoint stops the event loop: forked snapshot child vs encoding on the loop.

`python benchmarks/bench_checkpoint_stall.py --messages 300000`: fills a BackendService (real WAL
in a temp dir) with 1 KiB messages, then takes checkpoints while a ticker task measures the
longest gap between its 1 ms sleeps (the loop stall a client, SWIM probe or Raft heartbeat
would see). Alternates the two ways; prints each run (with the peak RSS of the node and of the
largest snapshot child so far) and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import uvloop

from qnode.backend import snapshot_child
from qnode.backend.service import BackendConfig, BackendService
from qnode.frontend.api import SendEntry
from qnode.wal.writer import WalConfig


async def _ticker(stop: asyncio.Event, gaps: list[float]) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


async def _timed_checkpoint(svc: BackendService) -> tuple[float, float]:
    """(longest loop gap, checkpoint wall time), seconds."""
    stop, gaps = asyncio.Event(), []
    ticker = asyncio.ensure_future(_ticker(stop, gaps))
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    await svc.checkpoint()
    took = time.perf_counter() - started
    stop.set()
    await ticker
    return max(gaps), took


async def main(messages: int, rounds: int) -> None:
    real_fork = os.fork

    def no_fork() -> int:
        raise OSError(11, "fork disabled for the comparison")

    with tempfile.TemporaryDirectory(dir=".") as d:
        svc = await BackendService.open(Path(d), BackendConfig(wal=WalConfig(disk_reserve_size=0)))
        await svc.create_queue("q")
        body = os.urandom(1024)
        for i in range(messages // 10):
            await svc.send_messages("q", [SendEntry(body + b"%d" % j, entry_id=str(j)) for j in range(10)])
        results: dict[str, list[tuple[float, float]]] = {"forked": [], "on the loop": []}
        for _ in range(rounds):
            for way in results:
                snapshot_child.os.fork = real_fork if way == "forked" else no_fork
                gap, took = await _timed_checkpoint(svc)
                results[way].append((gap, took))
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
                child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss >> 10
                print(f"{way:12s} longest loop stall {gap * 1e3:8.1f} ms, checkpoint {took:6.2f} s, "
                      f"peak RSS node {rss} MB, largest child {child} MB", flush=True)
        snapshot_child.os.fork = real_fork
        await svc.close()
    for way, runs in results.items():
        print(f"median {way:12s} stall {statistics.median(g for g, _ in runs) * 1e3:8.1f} ms, "
              f"checkpoint {statistics.median(t for _, t in runs):6.2f} s ({messages} messages)")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=300_000)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    uvloop.install()
    asyncio.run(main(a.messages, a.rounds))
