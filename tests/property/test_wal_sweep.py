"""Seeded random sweep of SegmentedLog over MemFs with power losses (a small VOPR for the WAL).

Goal: for every seed, after any sequence of writes, syncs, durability markers, checkpoints,
suffix truncations and crashes, recovery opens the log and replay is a prefix of what was
written that holds every synced record, starting right after the checkpoint. Method: one
`random.Random(seed)` drives the operations and the MemFs crash model; a failing seed replays
exactly (`pytest -k 'seed_454'`). Seed 454 once found a roll onto an existing segment name.
With `mid_op_crashes`, an armed MemFs also cuts the power inside an operation (between the file
calls of a write, roll, sync, marker, checkpoint or suffix truncation; a truncation cut short
may leave the old suffix, never lose a record at or below its LSN). With `preallocate`, zeros
are also written ahead of the tail after writes (as the WAL thread does between batches), so
later batches overwrite them in place, and power may fail inside that too. The default run
covers 600 seeds each way; the `slow` one 20,000.
"""

import random

import pytest

from qnode.wal.errors import CheckpointNotWritten
from qnode.wal.fs import MemFs
from qnode.wal.log import SegmentedLog

REGRESSION_SEEDS = [454]


def _body(lsn: int, size: int) -> bytes:
    return (lsn.to_bytes(8, "little") * (size // 8 + 1))[:size]


def _open(fs: MemFs) -> SegmentedLog:
    return SegmentedLog.open(fs, "/w", cluster_id=1, node_id=1, segment_size_max=6000)


class PowerLoss(OSError):
    """Raised by an armed MemFs in the middle of an operation: the power went out here."""


class _ArmedFs(MemFs):
    """MemFs whose n-th mutating call raises PowerLoss (the crash point inside an operation)."""

    def __init__(self) -> None:
        super().__init__()
        self.countdown: int | None = None

    def _tick(self) -> None:
        if self.countdown is not None:
            self.countdown -= 1
            if self.countdown <= 0:
                self.countdown = None
                raise PowerLoss(5, "power loss")

    def append(self, handle, data):
        self._tick()
        return super().append(handle, data)

    def write_zeros(self, handle, offset, size):
        self._tick()
        return super().write_zeros(handle, offset, size)

    def fsync(self, handle):
        self._tick()
        return super().fsync(handle)

    def fsync_dir(self, directory):
        self._tick()
        return super().fsync_dir(directory)

    def truncate(self, handle, size):
        self._tick()
        return super().truncate(handle, size)

    def rename(self, src, dst):
        self._tick()
        return super().rename(src, dst)

    def remove(self, path):
        self._tick()
        return super().remove(path)


def run_seed(seed: int, *, mid_op_crashes: bool = False, preallocate: bool = False) -> None:
    """Run one seed; with `mid_op_crashes`, power may also fail inside any operation; with
    `preallocate`, writes are followed by preallocations drawn from a second stream (so the
    operations of a seed stay the same with and without)."""
    rng = random.Random(seed)
    zeros_rng = random.Random(seed ^ 0x5EED) if preallocate else None
    fs = _ArmedFs()
    written: dict[int, bytes] = {}
    synced = 0
    checkpoint = None
    for _ in range(rng.randint(1, 5)):
        seglog = _open(fs)
        assert seglog.last_lsn >= synced, seed
        new_checkpoint = None
        for _ in range(rng.randint(1, 30)):
            r = rng.random()
            if mid_op_crashes and rng.random() < 0.1:
                fs.countdown = rng.randint(1, 6)
            floor = [synced]
            try:
                synced = _step(seglog, rng, r, written, synced, floor, zeros_rng)
            except (PowerLoss, CheckpointNotWritten) as exc:
                # A checkpoint reports a power cut in its temp file as CheckpointNotWritten.
                if not isinstance(exc, PowerLoss) and not isinstance(exc.__cause__, PowerLoss):
                    raise
                if 0.75 <= r < 0.85:
                    new_checkpoint = seglog.durable_lsn
                synced = floor[0]     # a cut-short truncation may have dropped the suffix
                break
            finally:
                fs.countdown = None
            if r >= 0.75 and r < 0.85 and seglog.checkpoint_lsn:
                checkpoint = seglog.checkpoint_lsn
        fs.crash(rng)
        seglog = _open(fs)
        start = checkpoint or 0
        if seglog.checkpoint is not None and seglog.checkpoint[0] == new_checkpoint:
            checkpoint = start = new_checkpoint     # the interrupted checkpoint made it
        if checkpoint is not None:
            assert seglog.checkpoint == (checkpoint, b"c%d" % checkpoint), seed
        got = [(rec.lsn, rec.body) for rec in seglog.replay()]
        assert [lsn for lsn, _ in got] == list(range(start + 1, start + 1 + len(got))), seed
        assert all(written[lsn] == body for lsn, body in got), seed
        assert seglog.last_lsn >= synced, (seed, seglog.last_lsn, synced)
        for gone in [x for x in written if x > seglog.last_lsn]:
            del written[gone]
        synced = seglog.last_lsn
        seglog.close()


def _step(seglog: SegmentedLog, rng: random.Random, r: float, written: dict[int, bytes],
          synced: int, floor: list[int], zeros_rng: random.Random | None = None) -> int:
    """One operation chosen by `r`; returns the synced LSN after it. `floor[0]` is the synced
    LSN that recovery must keep even if the power fails inside the operation."""
    if r < 0.5:
        first = seglog.last_lsn + 1
        records = [(16, _body(first + i, rng.randint(0, 1500))) for i in range(rng.randint(1, 6))]
        seglog.write_batch(records)
        for i, (_, body) in enumerate(records):
            written[first + i] = body
        if zeros_rng is not None and zeros_rng.random() < 0.5:
            seglog.preallocate(zeros_rng.randint(0, 9000))
    elif r < 0.70:
        seglog.sync()
    elif r < 0.75:
        seglog.write_durability_marker()
    elif r < 0.85:
        if seglog.durable_lsn > seglog.checkpoint_lsn:
            checkpoint = seglog.durable_lsn
            seglog.write_checkpoint(checkpoint, b"c%d" % checkpoint)
    else:
        lsn = rng.randint(seglog.checkpoint_lsn, max(seglog.checkpoint_lsn, seglog.last_lsn))
        floor[0] = min(synced, lsn)
        seglog.truncate_after(lsn)
        for gone in [x for x in written if x > lsn]:
            del written[gone]
        synced = min(synced, lsn)
    return max(synced, seglog.durable_lsn)


@pytest.mark.parametrize("seed", REGRESSION_SEEDS, ids=lambda s: f"seed_{s}")
def test_regression_seeds(seed):
    run_seed(seed)


def test_sweep_600_seeds():
    for seed in range(600):
        run_seed(seed)


def test_sweep_600_seeds_with_power_loss_inside_operations():
    for seed in range(600):
        run_seed(seed, mid_op_crashes=True)


def test_sweep_600_seeds_with_preallocated_zeros():
    for seed in range(600):
        run_seed(seed, preallocate=True)
        run_seed(seed, mid_op_crashes=True, preallocate=True)


@pytest.mark.slow
def test_sweep_20000_seeds():
    for seed in range(1000, 21000):
        run_seed(seed)
        run_seed(seed, mid_op_crashes=True)
        run_seed(seed, mid_op_crashes=True, preallocate=True)
