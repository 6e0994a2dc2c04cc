"""SWIM membership figures and core cost.

1. detection: on the deterministic simulator (tests/sim/swim_sim.py), 8 and 64 members, 5 %
   packet loss, 0.2 ms + exp(0.5 ms) delay, 1 s probe period, `SwimConfig.lan()`: time from a
   member's crash until every live member has declared it down (p50/p99/max over all crashes of
   all seeds), and live members falsely declared down. Targets: p99 <= 6 s at 8 members,
   <= 12 s at 64, no false downs.
2. core cost: datagrams per second one `Swim` core handles (decode, apply, answer), measured as
   ping -> ack round trips between two cores in memory, with a 64-member table.

Run: `python -m benchmarks.bench_swim [--hours 1] [--seeds 1-3] [--members 8,64]`
(an hour of 64 members takes about a minute of CPU per seed).
"""

from __future__ import annotations

import argparse
import random
import time

from qnode.membership.codec import Gossip, Ping, Update, encode
from qnode.membership.config import SwimConfig
from qnode.membership.swim import Swim
from qnode.membership.types import Meta, State
from tests.sim.swim_sim import NS_PER_S, SwimSimOptions, SwimSimulation, summarize


def detection(members: int, seeds: list[int], hours: float) -> str:
    options = SwimSimOptions(members=members, loss_probability=0.05,
                             duration_ns=int(hours * 3600 * NS_PER_S))
    results = [SwimSimulation(seed, options).run() for seed in seeds]
    return summarize(results, options)


def core_datagrams_per_s(round_trips: int = 20_000) -> float:
    config = SwimConfig.lan()
    a = Swim("a", "10.0.0.1:7946", Meta.build(roles=("backend",)), config, random.Random(1))
    b = Swim("b", "10.0.0.2:7946", Meta.build(roles=("backend",)), config, random.Random(2))
    table = tuple(Update(f"m{i:02d}", f"10.0.1.{i + 1}:7946", 0, State.ALIVE, Meta(), f"m{i:02d}")
                  for i in range(62))
    for core in (a, b):
        core.tick(0)
        for chunk in range(0, len(table), 8):
            core.on_packet("10.0.9.9:1", encode(Gossip("m00", table[chunk:chunk + 8])), 0)
        core.on_packet("10.0.9.9:1", encode(Gossip("a", (Update("a", "10.0.0.1:7946", 0, State.ALIVE, Meta(), "a"),
                                                          Update("b", "10.0.0.2:7946", 0, State.ALIVE, Meta(), "b")))), 0)
        core.take_outbox()
        core.take_events()
    now = 1
    started = time.perf_counter()
    for seq in range(round_trips):
        b.on_packet(a.address, encode(Ping(seq, "a", "b")), now)
        for send in b.take_outbox():
            a.on_packet(b.address, send.packet, now)
        a.take_outbox()
        now += 1
    elapsed = time.perf_counter() - started
    return 2 * round_trips / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_swim")
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--seeds", default="1-3")
    parser.add_argument("--members", default="8,64")
    args = parser.parse_args()
    if "-" in args.seeds:
        lo, hi = args.seeds.split("-")
        seeds = list(range(int(lo), int(hi) + 1))
    else:
        seeds = [int(s) for s in args.seeds.split(",")]
    print(f"core: {core_datagrams_per_s():,.0f} datagrams/s handled by one Swim core (64-member table)")
    for members in (int(m) for m in args.members.split(",")):
        started = time.monotonic()
        print(detection(members, seeds, args.hours))
        print(f"  ({time.monotonic() - started:.0f} s wall)")


if __name__ == "__main__":
    main()
