"""Per-run fault options for simulations, chosen from the seed ("swarm testing").

Owns: the knobs of one simulated run. `swarm(rng)` draws a different mix of fault rates for each
seed, so that across many seeds some runs are calm, some lossy, some partition-heavy, etc.
(TigerBeetle VOPR / swarm testing). `fast()` is a calm profile for quick tests.
Invariant: every field is a plain value, printed in failure reports, so a run is replayable from
(seed, options) alone; options are a pure function of the rng they are drawn from.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from tests.sim.network import PathOptions

NS_PER_MS = 1_000_000


@dataclass(frozen=True, slots=True)
class SimOptions:
    node_count: int = 3
    tick_ns: int = 10 * NS_PER_MS               # one Raft tick
    tick_skew: float = 0.0                      # each node's tick is tick_ns * (1 +- up to this): clock drift
    path: PathOptions = PathOptions()
    fsync_delay_ns_max: int = 2 * NS_PER_MS      # persist latency: uniform in [0, max]
    crash_probability: float = 0.0              # per fault-step, one node crashes
    restart_delay_ns_max: int = 500 * NS_PER_MS
    tear_probability: float = 0.5               # on crash: keep a torn prefix of unsynced writes
    partition_probability: float = 0.0          # per fault-step, a new partition
    heal_probability: float = 0.3               # per fault-step, heal all partitions
    fault_interval_ns: int = 100 * NS_PER_MS     # time between fault-steps
    client_count: int = 3
    client_op_interval_ns_mean: int = 30 * NS_PER_MS
    key_count: int = 3                          # queue names the workload touches
    membership_changes: bool = False            # propose remove/add of one voter now and then
    compact_every_count: int = 16               # snapshot + compact the log every N applied entries
    disk: str = "mem"                           # "mem": MemRecordLog; "wal": SegmentedLog over MemFs

    def describe(self) -> str:
        d = asdict(self)
        path = d.pop("path")
        parts = [f"{k}={v}" for k, v in d.items()] + [f"path.{k}={v}" for k, v in path.items()]
        return " ".join(parts)


def fast() -> SimOptions:
    return SimOptions()


def swarm(rng: random.Random) -> SimOptions:
    """Pick fault rates for one run. Each fault class is on in roughly half the runs."""
    def maybe(p_on: float, lo: float, hi: float) -> float:
        return rng.uniform(lo, hi) if rng.random() < p_on else 0.0

    path = PathOptions(
        delay_ns_min=rng.choice([50_000, 200_000, 1_000_000]),
        delay_ns_mean=rng.choice([2_000_000, 5_000_000, 15_000_000]),
        loss_probability=maybe(0.6, 0.01, 0.2),
        duplicate_probability=maybe(0.4, 0.01, 0.1),
        reorder_probability=maybe(0.4, 0.01, 0.2),
        reorder_delay_ns_max=rng.choice([5, 20, 60]) * NS_PER_MS,
    )
    return SimOptions(
        node_count=rng.choice([3, 3, 5]),
        tick_skew=rng.choice([0.0, 0.0, 0.1, 0.5]),
        path=path,
        fsync_delay_ns_max=rng.choice([0, 1, 5, 20]) * NS_PER_MS,
        crash_probability=maybe(0.7, 0.05, 0.4),
        restart_delay_ns_max=rng.choice([50, 300, 1000]) * NS_PER_MS,
        tear_probability=rng.choice([0.0, 0.5, 1.0]),
        partition_probability=maybe(0.7, 0.05, 0.4),
        heal_probability=rng.uniform(0.1, 0.6),
        fault_interval_ns=rng.choice([50, 100, 300]) * NS_PER_MS,
        client_count=rng.choice([1, 3, 5]),
        client_op_interval_ns_mean=rng.choice([5, 30, 100]) * NS_PER_MS,
        key_count=rng.choice([1, 2, 4]),
        membership_changes=rng.random() < 0.3,
        compact_every_count=rng.choice([4, 16, 64]),
        disk=rng.choice(["mem", "mem", "wal"]),
    )
