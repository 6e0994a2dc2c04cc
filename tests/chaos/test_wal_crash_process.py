"""Real-process crash test of the WAL: SIGKILL a writer at random moments, reopen, check.

Goal: every record whose fsync was acknowledged survives a process kill intact, across several
kill/restart cycles on the same directory, including kills during segment rolls and
checkpoints. Method: `python -m qnode.wal._crashdriver DIR --small` runs 8 concurrent appenders,
each printing `ack <lsn>` after `await wal.sync(lsn)`, with 3 MiB segments and a checkpoint every
~1000 records (printing `ckpt <lsn>` once durable). The test kills it with SIGKILL after a random
number of acks (seeded), collects every line it printed, reopens the directory with
SegmentedLog (recovery) and checks: the newest acknowledged checkpoint (or a newer one) is
loaded, and every acknowledged LSN above the checkpoint replays with its exact body. The driver
reopens the directory on the next cycle, so recovery runs after every kill. About 10 s by
default; the `slow` variant runs 20 kills.
"""

import asyncio
import os
import random
import signal
import sys
import time

import pytest

from qnode.wal._crashdriver import checkpoint_payload, expected_body
from qnode.wal.fs import RealFs
from qnode.wal.log import SegmentedLog

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


async def _run_and_kill(directory: str, acks_before_kill: int) -> tuple[int, list[int], list[int]]:
    """Start the driver, SIGKILL it after `acks_before_kill` acks.

    Returns (start lsn, acknowledged lsns, acknowledged checkpoint lsns).
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "qnode.wal._crashdriver", directory, "--appenders", "8", "--small",
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": REPO_ROOT},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    lines: list[str] = []
    try:
        async with asyncio.timeout(30):
            ready = (await proc.stdout.readline()).decode()
            assert ready.startswith("ready "), ready + (await proc.stderr.read()).decode()
            start = int(ready.split()[1])
            acks = 0
            while acks < acks_before_kill:
                line = (await proc.stdout.readline()).decode()
                assert line, (await proc.stderr.read()).decode()
                lines.append(line)
                acks += line.startswith("ack ")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        async with asyncio.timeout(30):
            rest, _ = await proc.communicate()
    # Lines the driver printed before it died were acknowledged too.
    lines.extend(rest.decode().splitlines())
    assert proc.returncode == -signal.SIGKILL
    acked = [int(x.split()[1]) for x in lines if x.startswith("ack ")]
    ckpts = [int(x.split()[1]) for x in lines if x.startswith("ckpt ")]
    return start, acked, ckpts


async def _kill_cycles(directory: str, seed: int, cycles_max: int, time_budget_s: float) -> int:
    rng = random.Random(seed)
    all_acked: set[int] = set()
    ckpt_acked = 0
    started = time.monotonic()
    cycles = 0
    while cycles < cycles_max and time.monotonic() - started < time_budget_s:
        kill_after = rng.choice([0, 1, rng.randrange(2, 300), rng.randrange(300, 4000)])
        start, acked, ckpts = await _run_and_kill(directory, kill_after)
        # Recovery of the previous cycle kept everything acknowledged before.
        assert start >= max(all_acked, default=0)
        all_acked.update(acked)
        ckpt_acked = max([ckpt_acked] + ckpts)
        cycles += 1
        seglog = SegmentedLog.open(RealFs(), directory, cluster_id=7, node_id=1)
        ckpt = seglog.checkpoint
        ckpt_lsn = 0 if ckpt is None else ckpt[0]
        assert ckpt_lsn >= ckpt_acked, (ckpt_lsn, ckpt_acked)
        if ckpt is not None:
            assert ckpt[1] == checkpoint_payload(ckpt_lsn)
        bodies = {r.lsn: r.body for r in seglog.replay()}
        seglog.close()
        live = [lsn for lsn in all_acked if lsn > ckpt_lsn]
        missing = sorted(lsn for lsn in live if lsn not in bodies)
        assert not missing, f"cycle {cycles}: acknowledged lsns lost: {missing[:10]}"
        wrong = [lsn for lsn in live if bodies[lsn] != expected_body(lsn)]
        assert not wrong, f"cycle {cycles}: acknowledged lsns damaged: {wrong[:10]}"
    assert len(all_acked) > 100
    return cycles


@pytest.mark.chaos
async def test_sigkill_never_loses_an_acknowledged_record(tmp_path):
    cycles = await _kill_cycles(str(tmp_path / "wal"), seed=20261127, cycles_max=6, time_budget_s=10.0)
    assert cycles >= 3


@pytest.mark.chaos
@pytest.mark.slow
async def test_sigkill_twenty_times_never_loses_an_acknowledged_record(tmp_path):
    cycles = await _kill_cycles(str(tmp_path / "wal"), seed=7, cycles_max=20, time_budget_s=120.0)
    assert cycles == 20
