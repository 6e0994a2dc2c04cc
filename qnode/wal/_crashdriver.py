"""Storage driver for the WAL crash test: append and sync forever, print acknowledged LSNs.

`python -m qnode.wal._crashdriver DIR [--appenders N] [--small]` opens the WAL in DIR (running
recovery), prints `ready <last_lsn> <checkpoint_lsn>`, then runs N concurrent appenders; each
appends a record whose body is derived from its LSN (`expected_body(lsn)`), awaits its fsync,
and prints `ack <lsn>`. With `--small`, segments and batches are 3 MiB (frequent rolls) and a
checkpoint task writes `checkpoint_payload(lsn)` every ~1000 durable records (retiring segments),
printing `ckpt <lsn>` once it is durable. The test SIGKILLs the process at random moments and
checks that every acknowledged record survived intact. Bounded by `--records-max`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys

from qnode.wal.writer import Wal, WalConfig

KIND = 16
SMALL_SIZE = 3 * 1024 * 1024
CHECKPOINT_EVERY_COUNT = 1000


def expected_body(lsn: int) -> bytes:
    """Deterministic, LSN-specific body of 64..2111 bytes."""
    seed = hashlib.sha256(lsn.to_bytes(8, "little")).digest()
    return (f"lsn={lsn};".encode() + seed * 64)[: 64 + (seed[0] << 3)]


def checkpoint_payload(lsn: int) -> bytes:
    return b"checkpoint-at-%d" % lsn


async def run(directory: str, appenders: int, records_max: int, small: bool) -> None:
    config = WalConfig(cluster_id=7, node_id=1)
    if small:
        config = WalConfig(cluster_id=7, node_id=1, segment_size_max=SMALL_SIZE,
                           batch_size_max=SMALL_SIZE)
    wal = await Wal.open(directory, config)
    start = wal.last_lsn
    out = sys.stdout
    out.write(f"ready {start} {wal.checkpoint_lsn}\n")
    out.flush()
    durable_moved = asyncio.Event()
    wal.on_durable(lambda lsn: durable_moved.set())
    done = False

    async def appender() -> None:
        while wal.last_lsn - start < records_max:
            lsn = wal.last_lsn + 1
            got = wal.append(KIND, expected_body(lsn))
            assert got == lsn, (got, lsn)
            await wal.sync(lsn)
            out.write(f"ack {lsn}\n")
            out.flush()

    async def checkpointer() -> None:
        while not done:
            await durable_moved.wait()
            durable_moved.clear()
            lsn = wal.durable_lsn
            if lsn - wal.checkpoint_lsn >= CHECKPOINT_EVERY_COUNT:
                await wal.checkpoint(lsn, [checkpoint_payload(lsn)])
                out.write(f"ckpt {lsn}\n")
                out.flush()

    async with asyncio.TaskGroup() as tg:
        ckpt_task = tg.create_task(checkpointer()) if small else None
        async with asyncio.TaskGroup() as writers:
            for _ in range(appenders):
                writers.create_task(appender())
        done = True
        if ckpt_task is not None:
            ckpt_task.cancel()
    await wal.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--appenders", type=int, default=8)
    parser.add_argument("--records-max", type=int, default=200_000)
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(args.directory, args.appenders, args.records_max, args.small))


if __name__ == "__main__":
    main()
