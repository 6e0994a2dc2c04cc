"""WAL group-commit benchmark: appends/s and MB/s of 1 KiB records vs concurrent appenders.

Run: `.venv/bin/python benchmarks/bench_wal.py [--dir DIR] [--runs 3] [--no-fsync]`

Each appender loops `lsn = wal.append(16, body); await wal.sync(lsn)` for a bounded count. For
1, 16, 64 and 256 appenders it prints the median of `--runs` runs (appends/s, MB/s, average
records per fsync), beside the raw `write + fdatasync` rate of 1 KiB in the same directory, measured just before
each run (the disk is shared, so its rate drifts): group commit should beat that rate by roughly the batch size. Every run uses a
fresh log in a temp dir under `--dir` (default: the current directory, i.e. a real disk; /tmp
may be tmpfs where fdatasync costs nothing) and deletes it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from qnode.wal.writer import Wal, WalConfig  # noqa: E402

RECORD_SIZE = 1024
APPENDERS = (1, 16, 64, 256)
RECORDS = {1: 3_000, 16: 30_000, 64: 80_000, 256: 120_000}    # per run: bounded
RAW_FSYNC_COUNT = 1_000


def raw_fdatasync_rate(directory: str) -> float:
    """write(1 KiB) + fdatasync per op, ops/s."""
    path = os.path.join(directory, "raw-fsync.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    body = b"r" * RECORD_SIZE
    try:
        started = time.perf_counter()
        for _ in range(RAW_FSYNC_COUNT):
            os.write(fd, body)
            os.fdatasync(fd)
        return RAW_FSYNC_COUNT / (time.perf_counter() - started)
    finally:
        os.close(fd)
        os.remove(path)


async def one_run(directory: str, appenders: int, records: int, fsync: bool) -> tuple[float, float]:
    """(appends/s, average records per fsync) for one fresh log."""
    wal = await Wal.open(directory, WalConfig(fsync=fsync))
    body = b"b" * RECORD_SIZE
    per_appender = records // appenders

    async def appender() -> None:
        for _ in range(per_appender):
            lsn = wal.append(16, body)
            await wal.sync(lsn)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(appenders):
            tg.create_task(appender())
    elapsed = time.perf_counter() - started
    stats = wal.stats()
    await wal.close()
    assert stats["records"] == per_appender * appenders
    return per_appender * appenders / elapsed, stats["batch_records_avg"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=".", help="parent directory for the temp logs")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-fsync", action="store_true", help="WalConfig(fsync=False)")
    args = parser.parse_args()
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    base = tempfile.mkdtemp(prefix="bench-wal-", dir=args.dir)
    try:
        print(f"1 KiB records in {base}, fsync={'off' if args.no_fsync else 'on'}; "
              f"median of {args.runs} runs; raw = write+fdatasync ops/s measured just before each run")
        print(f"{'appenders':>9} {'appends/s':>11} {'MB/s':>7} {'recs/fsync':>10} {'raw fsync/s':>11}")
        for n in APPENDERS:
            rates, batch_sizes, raws = [], [], []
            for run in range(args.runs):
                raws.append(raw_fdatasync_rate(base))
                d = os.path.join(base, f"wal-{n}-{run}")
                rate, batch = runner(one_run(d, n, RECORDS[n], not args.no_fsync))
                shutil.rmtree(d)
                rates.append(rate)
                batch_sizes.append(batch)
            rate = statistics.median(rates)
            print(f"{n:>9} {rate:>11,.0f} {rate * RECORD_SIZE / 1e6:>7.1f} "
                  f"{statistics.median(batch_sizes):>10.1f} {statistics.median(raws):>11,.0f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
