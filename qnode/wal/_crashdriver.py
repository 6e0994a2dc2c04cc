"""Storage driver for the WAL crash test: append and sync forever, print acknowledged LSNs.

`python -m qnode.wal._crashdriver DIR [--appenders N]` opens the WAL in DIR (running recovery),
prints `ready <last_lsn>`, then runs N concurrent appenders; each appends a record whose body is
derived from its LSN (`expected_body(lsn)`), awaits its fsync, and prints `ack <lsn>`. The test
SIGKILLs the process at random moments and checks that every acknowledged record survived intact.
Bounded by `--records-max` so a forgotten driver stops on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys

from qnode.wal.writer import Wal, WalConfig

KIND = 16


def expected_body(lsn: int) -> bytes:
    """Deterministic, LSN-specific body of 64..2111 bytes."""
    seed = hashlib.sha256(lsn.to_bytes(8, "little")).digest()
    return (f"lsn={lsn};".encode() + seed * 64)[: 64 + (seed[0] << 3)]


async def run(directory: str, appenders: int, records_max: int) -> None:
    wal = await Wal.open(directory, WalConfig(cluster_id=7, node_id=1))
    start = wal.last_lsn
    out = sys.stdout
    out.write(f"ready {start}\n")
    out.flush()

    async def appender() -> None:
        while wal.last_lsn - start < records_max:
            lsn = wal.last_lsn + 1
            got = wal.append(KIND, expected_body(lsn))
            assert got == lsn, (got, lsn)
            await wal.sync(lsn)
            out.write(f"ack {lsn}\n")
            out.flush()

    async with asyncio.TaskGroup() as tg:
        for _ in range(appenders):
            tg.create_task(appender())
    await wal.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory")
    parser.add_argument("--appenders", type=int, default=8)
    parser.add_argument("--records-max", type=int, default=200_000)
    args = parser.parse_args()
    asyncio.run(run(args.directory, args.appenders, args.records_max))


if __name__ == "__main__":
    main()
