"""Restart time of a node's backend holding N live 1 KiB messages, with a cold and a warm page cache.

Builds the data directory once through `BackendService` (the real WAL, fsync on), closes it, then
times `BackendService.open` (recovery: checkpoint + WAL replay) twice: after dropping the kernel's
page cache (`/proc/sys/vm/drop_caches`, needs root; the cold figure) and again right after (warm).

    python benchmarks/bench_restart_cold.py [--n 1000000] [--dir /tmp/qnode-restart]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import time
from pathlib import Path

from qnode.backend.service import BackendConfig, BackendService
from qnode.frontend.api import SendEntry

SENDERS = 32
BODY = b"x" * 1024


async def build(path: Path, n: int) -> None:
    svc = await BackendService.open(path, BackendConfig())
    try:
        await svc.create_queue("restart")
        per_task = n // SENDERS

        async def sender() -> None:
            entries = [SendEntry(BODY, entry_id=str(i)) for i in range(10)]
            for _ in range(per_task // 10):
                await svc.send_messages("restart", entries)

        async with asyncio.TaskGroup() as tg:
            for _ in range(SENDERS):
                tg.create_task(sender())
    finally:
        await svc.close()


async def timed_open(path: Path) -> tuple[float, str]:
    started = time.perf_counter()
    svc = await BackendService.open(path, BackendConfig())
    elapsed = time.perf_counter() - started
    depth = (await svc.get_queue_attributes("restart"))["ApproximateNumberOfMessages"]
    await svc.close()
    return elapsed, depth


def drop_caches() -> None:
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dir", default="/tmp/qnode-restart")
    args = parser.parse_args()
    path = Path(args.dir)
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    await build(path, args.n)
    print(f"built {args.n:,} messages in {time.perf_counter() - t0:.1f} s")
    drop_caches()
    cold, depth = await timed_open(path)
    warm, _ = await timed_open(path)
    print(f"restart with {depth} live 1 KiB messages: cold cache {cold:.2f} s, warm cache {warm:.2f} s")
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
