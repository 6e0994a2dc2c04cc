"""Deterministic simulation of the Raft metadata cluster, as a pytest suite.

Goal: every seed in tests/sim/seeds.txt (seeds that once failed) and a few fixed seeds run clean
through the safety phase (crashes, partitions, loss, duplication, reordering, clock skew, torn
writes), the liveness phase and the linearizability check; and a run is a pure function of its
seed (same trace hash twice, and under different PYTHONHASHSEED values).
Method: `tests.sim.raft_sim.run(seed, events)`; on failure the assertion message is the full
report (seed, options, replay command, last 200 trace lines).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sim.harness import Simulation
from tests.sim.network import PathOptions, SimNetwork
from tests.sim.raft_sim import run

SEEDS_FILE = Path(__file__).with_name("seeds.txt")
FIXED_SEEDS = [0, 1, 2, 3, 4, 5, 6, 7, 42, 1234]
REPO = Path(__file__).resolve().parents[2]


def _seeds_from_file() -> list[tuple[int, int]]:
    out = []
    for line in SEEDS_FILE.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            parts = line.split()
            out.append((int(parts[0]), int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 2000))
    return out


@pytest.mark.parametrize("seed,events", _seeds_from_file())
def test_seed_that_once_failed_now_passes(seed: int, events: int):
    result = run(seed, events)
    assert result.ok, result.report()


@pytest.mark.parametrize("seed", FIXED_SEEDS)
def test_fixed_seed_passes(seed: int):
    result = run(seed, 2000)
    assert result.ok, result.report()


@pytest.mark.parametrize("seed", [77, 2026])
def test_long_run_passes(seed: int):
    result = run(seed, 15_000)
    assert result.ok, result.report()


@pytest.mark.slow
def test_sweep_of_500_seeds():
    failed = [r.report() for r in (run(seed, 2000) for seed in range(10_000, 10_500)) if not r.ok]
    assert not failed, failed[0]


def test_same_seed_gives_the_same_trace_hash():
    a = run(11, 1500)
    b = run(11, 1500)
    assert a.trace_hash == b.trace_hash
    assert a.stats == b.stats
    assert run(12, 1500).trace_hash != a.trace_hash


def test_trace_hash_does_not_depend_on_pythonhashseed():
    hashes = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run([sys.executable, "-m", "tests.sim", "--seed", "5", "--events", "1000"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        m = re.search(r"trace=([0-9a-f]+)", out.stdout)
        assert m, out.stdout + out.stderr
        hashes.add(m.group(1))
    assert len(hashes) == 1


def test_network_partition_and_heal_control_delivery():
    sim = Simulation(3)
    net = SimNetwork(sim, sim.derive_rng("net"))
    got: list[tuple[str, str]] = []
    for n in ("a", "b", "c"):
        net.register(n, lambda src, msg, n=n: got.append((src, n)))
    net.partition(["a"], ["b", "c"])
    net.cut("b", "c")
    for src, dst in (("a", "b"), ("b", "a"), ("b", "c"), ("c", "b")):
        net.send(src, dst, "m")
    sim.run(10**9)
    assert got == [("c", "b")]
    net.heal()
    net.send("a", "b", "m")
    sim.run(2 * 10**9)
    assert got[-1] == ("a", "b")


def test_network_loss_and_duplication_follow_the_options():
    sim = Simulation(4)
    net = SimNetwork(sim, sim.derive_rng("net"))
    got = []
    net.register("a", lambda src, msg: None)
    net.register("b", lambda src, msg: got.append(msg))
    net.set_path("a", "b", PathOptions(loss_probability=0.5, duplicate_probability=0.5))
    for i in range(1000):
        net.send("a", "b", i)
    sim.run(10**10)
    delivered = set(got)
    assert 350 < len(delivered) < 650           # about half lost
    assert len(got) - len(delivered) > 150      # about half of the rest duplicated
