"""Queue-engine micro benchmarks (core alone, no WAL I/O).

1. cycles/s: send + receive + delete of 1 KiB messages through the sans-IO `Engine`, with the
   shell protocol done in memory (take_records -> logged -> on_durable). Target >= 50,000/s on
   one core.
2. restart: time to rebuild an engine from a log holding N live 1 KiB messages (replay of SEND
   records + start), and from a checkpoint (restore + start). Target: N = 1,000,000 in <= 10 s.

3. service restart (optional, `--service-n N`): BackendService on a real WAL in a temp dir holding
   N live 1 KiB messages; wall time of `BackendService.open` (WAL scan + replay + start), and again
   after a checkpoint.

Run: `python -m benchmarks.bench_engine [--cycles 200000] [--batch 10] [--restart-n 200000]
[--service-n 100000]`
or via pytest-benchmark: `pytest benchmarks/bench_engine.py --benchmark-only`.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time

from qnode.backend.engine import Engine, EngineConfig
from qnode.frontend.api import SendEntry

T0 = 1_700_000_000_000
BODY = b"x" * 1024


class _Driver:
    def __init__(self) -> None:
        self.engine = Engine(EngineConfig(), random.Random(7))
        self.engine.init_secret(bytes(32))
        self.engine.start(T0)
        self.lsn = 0
        self.log: list[tuple[int, bytes]] = []
        self.keep_log = False
        self.flush()
        self.engine.create_queue("bench", {}, {}, T0)
        self.flush()

    def flush(self) -> None:
        records = self.engine.take_records()
        if records:
            if self.keep_log:
                self.log.extend(records)
            self.lsn += len(records)
            self.engine.logged(self.lsn)
            self.engine.on_durable(self.lsn, T0)


def run_cycles(cycles: int, batch: int) -> float:
    """-> send+receive+delete cycles per second (messages moved through the whole life)."""
    d = _Driver()
    e = d.engine
    entries = [SendEntry(BODY, entry_id=str(i)) for i in range(batch)]
    rounds = cycles // batch
    start = time.process_time()      # CPU time of this process: robust on a shared, busy box
    for _ in range(rounds):
        e.send("bench", entries, T0)
        d.flush()
        got = e.receive("bench", batch, 0, None, None, False, T0).messages
        d.flush()
        e.delete("bench", [m.receipt for m in got], T0)
        d.flush()
    elapsed = time.process_time() - start
    assert e.stats().messages == 0
    return rounds * batch / elapsed


def build_log(n: int) -> tuple[list[tuple[int, bytes]], bytes]:
    d = _Driver()
    d.keep_log = True
    d.log.clear()
    entries = [SendEntry(BODY, entry_id=str(i)) for i in range(10)]
    for _ in range(n // 10):
        d.engine.send("bench", entries, T0)
        d.flush()
    d.flush()
    snapshot = d.engine.snapshot()
    return d.log, snapshot


def run_restart(n: int) -> tuple[float, float]:
    """-> (CPU seconds to replay a log of n live messages, to restore a checkpoint of them).
    The garbage collector is paused during recovery, as BackendService.open does."""
    records, snapshot = build_log(n)
    gc.collect()
    gc.disable()
    try:
        return _timed_restart(n, records, snapshot)
    finally:
        gc.enable()


def _timed_restart(n: int, records: list, snapshot: bytes) -> tuple[float, float]:
    secret_engine = Engine(EngineConfig(), random.Random(1))
    start = time.process_time()
    e = secret_engine
    e.init_secret(bytes(32))
    e.take_records()
    from qnode.backend import records as rec
    e.apply_record(rec.QUEUE_CREATE, rec.pack([1, "bench", False, {}, {}, T0]))
    for kind, body in records:
        e.apply_record(kind, body)
    e.start(T0 + 1)
    replay_s = time.process_time() - start
    assert e.stats().messages == n // 10 * 10
    e2 = Engine(EngineConfig(), random.Random(2))
    start = time.process_time()
    e2.restore(snapshot)
    e2.start(T0 + 1)
    restore_s = time.process_time() - start
    assert e2.stats().messages == n // 10 * 10
    return replay_s, restore_s


async def _service_restart(n: int) -> tuple[float, float]:
    import asyncio
    import tempfile
    from pathlib import Path

    from qnode.backend.service import BackendConfig, BackendService
    from qnode.wal.writer import WalConfig

    config = BackendConfig(wal=WalConfig(fsync=False, disk_reserve_size=0))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        svc = await BackendService.open(path, config)
        await svc.create_queue("bench")
        entries = [SendEntry(BODY, entry_id=str(i)) for i in range(10)]
        pending: list = []
        for _ in range(n // 10):
            pending.append(asyncio.ensure_future(svc.send_messages("bench", entries)))
            if len(pending) >= 200:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        await svc.close()
        start = time.perf_counter()
        svc = await BackendService.open(path, config)
        replay_s = time.perf_counter() - start
        assert svc.stats()["backend"]["messages"] == n // 10 * 10
        await svc.checkpoint()
        await svc.close()
        start = time.perf_counter()
        svc = await BackendService.open(path, config)
        checkpoint_s = time.perf_counter() - start
        assert svc.stats()["backend"]["messages"] == n // 10 * 10
        await svc.close()
        return replay_s, checkpoint_s


def test_engine_cycles(benchmark) -> None:
    rate = benchmark.pedantic(run_cycles, args=(50_000, 10), rounds=3, iterations=1)
    assert rate > 0


def test_engine_restart_100k(benchmark) -> None:
    replay_s, restore_s = benchmark.pedantic(run_restart, args=(100_000,), rounds=1, iterations=1)
    assert replay_s > 0 and restore_s > 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--restart-n", type=int, default=200_000)
    parser.add_argument("--service-n", type=int, default=0)
    args = parser.parse_args()
    rates = [run_cycles(args.cycles, args.batch) for _ in range(args.rounds)]
    print("(rates are per CPU-second of this process: process_time, not wall time)")
    print(f"engine cycles/s (send+receive+delete, 1 KiB, batch {args.batch}): "
          f"median {statistics.median(rates):,.0f} over {args.rounds} rounds {[round(r) for r in rates]}")
    single = run_cycles(max(args.cycles // 4, 1), 1)
    print(f"engine cycles/s (batch 1): {single:,.0f}")
    replay_s, restore_s = run_restart(args.restart_n)
    print(f"restart with {args.restart_n:,} live 1 KiB messages: replay {replay_s:.2f} s, "
          f"checkpoint restore {restore_s:.2f} s "
          f"(-> {args.restart_n / replay_s:,.0f} msg/s replay, {args.restart_n / restore_s:,.0f} msg/s restore)")
    if args.service_n:
        import asyncio
        replay_wall, ckpt_wall = asyncio.run(_service_restart(args.service_n))
        print(f"service restart with {args.service_n:,} live 1 KiB messages (real WAL, wall time): "
              f"log replay {replay_wall:.2f} s, from checkpoint {ckpt_wall:.2f} s")


if __name__ == "__main__":
    main()
