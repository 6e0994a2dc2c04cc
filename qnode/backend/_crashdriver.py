"""Storage driver for the crash test (tests/integration/test_engine_crash.py).

`python -m qnode.backend._crashdriver DATA_DIR RUN_ID` opens a BackendService on DATA_DIR and runs
concurrent senders and deleters until killed. Protocol on stdout, one flushed line each:
  READY                      the service is open
  T <body>                   about to send <body> (an attempt; may or may not be acknowledged)
  S <body>                   the send of <body> was acknowledged (durable)
  R <body>                   received <body>, about to delete it (an attempt)
  D <body>                   the delete of <body> was acknowledged (durable)
Bodies are unique: "<run>-<sender>-<n>". Bounded: stops by itself after `--max-ops` operations.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from qnode.backend.service import BackendConfig, BackendService
from qnode.frontend.api import SendEntry
from qnode.wal.writer import WalConfig

QUEUE = "crash"


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def sender(svc: BackendService, run: str, index: int, count: int) -> None:
    for n in range(count):
        bodies = [f"{run}-{index}-{n}-{k}" for k in range(1 + n % 3)]
        for b in bodies:
            emit(f"T {b}")
        results = await svc.send_messages(QUEUE, [SendEntry(b.encode(), entry_id=str(k))
                                                  for k, b in enumerate(bodies)])
        for b, r in zip(bodies, results):
            if not isinstance(r, Exception):
                emit(f"S {b}")


async def deleter(svc: BackendService, count: int) -> None:
    for _ in range(count):
        msgs = await svc.receive_messages(QUEUE, max_count=10, wait_ms=200)
        if not msgs:
            continue
        for m in msgs:
            emit(f"R {m.body.decode()}")
        results = await svc.delete_messages(QUEUE, [m.receipt for m in msgs])
        for m, r in zip(msgs, results):
            if r is None:
                emit(f"D {m.body.decode()}")


async def main(data_dir: Path, run: str, max_ops: int) -> None:
    svc = await BackendService.open(data_dir, BackendConfig(wal=WalConfig(disk_reserve_size=0)))
    try:
        await svc.create_queue(QUEUE)
        emit("READY")
        async with asyncio.TaskGroup() as tg:
            for i in range(4):
                tg.create_task(sender(svc, run, i, max_ops))
            for _ in range(2):
                tg.create_task(deleter(svc, max_ops))
    finally:
        await svc.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("run", nargs="?", default="r0")
    parser.add_argument("--max-ops", type=int, default=100_000)
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(args.data_dir, args.run, args.max_ops))
