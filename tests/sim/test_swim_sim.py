"""SWIM failure-detection figures on the deterministic simulator, fast versions with fixed seeds.

Goal: the detector meets its targets under 5 % packet loss and 0.2-2 ms delay with a 1 s probe
period: a crashed member is declared down by EVERY live member within p99 <= 6 s at 8 members and
<= 12 s at 64, no live member is ever declared down, and restarted members rejoin; and a run is a
pure function of its seed (same seed -> same trace hash, even across PYTHONHASHSEED values).
Method: `tests/sim/swim_sim.py` (crash one member per cycle, restart it half a cycle later). These
runs are minutes of simulated time; the hour-long figures are
`python -m tests.sim.swim_sim --members 64 --loss 0.05 --hours 1 --seeds 1-3` (and the slow test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sim.swim_sim import NS_PER_S, SwimSimOptions, SwimSimulation, percentile_ns

ROOT = Path(__file__).resolve().parents[2]


def run(seed: int, members: int, seconds: int, cycle_s: int = 40):
    options = SwimSimOptions(members=members, loss_probability=0.05,
                             duration_ns=seconds * NS_PER_S, crash_cycle_ns=cycle_s * NS_PER_S)
    return SwimSimulation(seed, options).run()


def test_same_seed_gives_the_same_trace_hash():
    first = run(7, 8, 120)
    again = run(7, 8, 120)
    other = run(8, 8, 120)
    assert first.trace_hash == again.trace_hash
    assert first.detection_ns == again.detection_ns
    assert first.trace_hash != other.trace_hash


def test_trace_hash_does_not_depend_on_the_string_hash_seed():
    def trace_of(hash_seed: str) -> str:
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run(
            [sys.executable, "-m", "tests.sim.swim_sim", "--members", "6", "--seconds", "60",
             "--seeds", "3", "--cycle", "30"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        lines = [line for line in out.stdout.splitlines() if "trace=" in line]
        assert len(lines) == 1, out.stdout + out.stderr
        return lines[0].split("trace=")[1]
    assert trace_of("1") == trace_of("2")


def test_8_members_crash_detected_by_all_within_6s_p99_and_no_false_downs():
    results = [run(seed, 8, 600) for seed in (1, 2)]
    samples = [s for r in results for s in r.detection_ns]
    assert len(samples) == 30
    assert percentile_ns(samples, 99) <= 6 * NS_PER_S
    assert sum(r.missed_count for r in results) == 0
    assert sum(r.false_down_count for r in results) == 0
    assert sum(r.rejoin_failed_count for r in results) == 0


def test_64_members_crash_detected_by_all_within_12s_and_no_false_downs():
    result = run(1, 64, 180, cycle_s=30)
    assert len(result.detection_ns) == 6
    assert max(result.detection_ns) <= 12 * NS_PER_S
    assert result.missed_count == 0
    assert result.false_down_count == 0
    assert result.rejoin_failed_count == 0


@pytest.mark.slow
def test_64_members_one_simulated_hour_meets_the_targets():
    results = [run(seed, 64, 3600) for seed in (1, 2)]
    samples = [s for r in results for s in r.detection_ns]
    assert percentile_ns(samples, 99) <= 12 * NS_PER_S
    assert sum(r.false_down_count for r in results) == 0
    assert sum(r.missed_count for r in results) == 0
