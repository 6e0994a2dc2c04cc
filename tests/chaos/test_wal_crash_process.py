"""Real-process crash test of the WAL: SIGKILL a writer at random moments, reopen, check.

Goal: every record whose fsync was acknowledged survives a process kill intact, across several
kill/restart cycles on the same directory. Method: `python -m qnode.wal._crashdriver DIR` runs 8
concurrent appenders, each printing `ack <lsn>` after `await wal.sync(lsn)`; the test kills it
with SIGKILL after a random number of acks (seeded), collects every ack line it printed, reopens
the directory with SegmentedLog (recovery) and checks each acknowledged LSN's body. The driver
itself reopens the directory on the next cycle, so recovery runs after every kill. Bounded to
about 10 s.
"""

import asyncio
import os
import random
import signal
import sys
import time

import pytest

from qnode.wal._crashdriver import expected_body
from qnode.wal.fs import RealFs
from qnode.wal.log import SegmentedLog

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CYCLES = 6
TIME_BUDGET_S = 10.0


async def _run_and_kill(directory: str, acks_before_kill: int) -> tuple[int, list[int]]:
    """Start the driver, SIGKILL it after `acks_before_kill` acks; (start lsn, acked lsns)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "qnode.wal._crashdriver", directory, "--appenders", "8",
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": REPO_ROOT},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    acked: list[int] = []
    try:
        async with asyncio.timeout(20):
            ready = (await proc.stdout.readline()).decode()
            assert ready.startswith("ready "), ready + (await proc.stderr.read()).decode()
            start = int(ready.split()[1])
            while len(acked) < acks_before_kill:
                line = await proc.stdout.readline()
                assert line, (await proc.stderr.read()).decode()
                acked.append(int(line.split()[1]))
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        async with asyncio.timeout(20):
            rest, _ = await proc.communicate()
    # Lines the driver printed before it died were acknowledged too.
    acked.extend(int(line.split()[1]) for line in rest.decode().splitlines() if line.startswith("ack "))
    assert proc.returncode == -signal.SIGKILL
    return start, acked


@pytest.mark.chaos
async def test_sigkill_never_loses_an_acknowledged_record(tmp_path):
    rng = random.Random(20261127)
    directory = str(tmp_path / "wal")
    all_acked: set[int] = set()
    started = time.monotonic()
    cycles = 0
    while cycles < CYCLES and time.monotonic() - started < TIME_BUDGET_S:
        kill_after = rng.choice([0, 1, rng.randrange(2, 300), rng.randrange(300, 3000)])
        start, acked = await _run_and_kill(directory, kill_after)
        # Recovery of the previous cycle kept everything acknowledged before.
        assert start >= max(all_acked, default=0)
        all_acked.update(acked)
        cycles += 1
        seglog = SegmentedLog.open(RealFs(), directory, cluster_id=7, node_id=1)
        bodies = {r.lsn: r.body for r in seglog.replay()}
        seglog.close()
        missing = sorted(lsn for lsn in all_acked if lsn not in bodies)
        assert not missing, f"cycle {cycles}: acknowledged lsns lost: {missing[:10]}"
        wrong = [lsn for lsn in all_acked if bodies[lsn] != expected_body(lsn)]
        assert not wrong, f"cycle {cycles}: acknowledged lsns damaged: {wrong[:10]}"
    assert cycles >= 3
    assert len(all_acked) > 100
