"""Deterministic simulation of a SWIM cluster: crash detection time and false positives.

Goal: measure what the failure detector promises, on the real `Swim` core, under packet loss and
delay: (1) from a member's crash until EVERY live member has declared it down (p50/p99 over many
crashes and seeds), (2) live members falsely declared down (target: none).
Method: N `Swim` cores on the generic harness (tests/sim/harness.py: seeded event heap, virtual
clock) and its `SimNetwork` (per-packet loss, delay = min + exponential). Every member joins
through member 0. After a warm-up, a cycle repeats: crash a random member, wait until every live
member has emitted `MemberDown` for it (that span is one sample), restart it half a cycle after the
crash as a fresh process (incarnation 0, joins through a random live member; it must refute its
own death), and crash another at the next cycle. Any `MemberDown` about a member whose process is
running is a false positive. The trace (every membership event and crash/restart) is hashed so two
runs of one seed can be compared.

    python -m tests.sim.swim_sim --members 64 --loss 0.05 --hours 1 --seeds 1,2,3
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field

from qnode.membership.codec import SwimDecodeError  # noqa: F401  (re-exported for tests)
from qnode.membership.config import SwimConfig
from qnode.membership.swim import Swim
from qnode.membership.types import (
    Meta, MemberDown, MemberLeft, MemberSuspect, MemberUp, MemberUpdated,
)
from tests.sim.harness import EventHandle, Simulation
from tests.sim.network import NetworkOptions, PathOptions, SimNetwork

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class SwimSimOptions:
    members: int = 8
    loss_probability: float = 0.05
    delay_ns_min: int = 200_000             # 0.2 ms
    delay_ns_mean: int = 700_000            # min + exponential: median ~0.55 ms, p99 ~2.6 ms
    duration_ns: int = 600 * NS_PER_S       # simulated time after warm-up
    warmup_ns: int = 20 * NS_PER_S
    crash_cycle_ns: int = 40 * NS_PER_S     # one crash per cycle; restart half a cycle later
    detect_deadline_ns: int = 60 * NS_PER_S  # a crash not detected by everyone by then is a miss
    duplicate_probability: float = 0.0
    reorder_probability: float = 0.0        # reordered packets get up to 20 ms extra delay
    config: SwimConfig = field(default_factory=SwimConfig.lan)

    def describe(self) -> str:
        return (f"members={self.members} loss={self.loss_probability} "
                f"delay_min_ms={self.delay_ns_min / 1e6} delay_mean_ms={self.delay_ns_mean / 1e6} "
                f"duration_s={self.duration_ns // NS_PER_S} cycle_s={self.crash_cycle_ns // NS_PER_S}"
                + (f" dup={self.duplicate_probability}" if self.duplicate_probability else "")
                + (f" reorder={self.reorder_probability}" if self.reorder_probability else ""))


@dataclass(slots=True)
class SwimSimResult:
    seed: int
    detection_ns: list[int]                 # one sample per detected crash
    missed_count: int                       # crashes not detected by everyone within the deadline
    false_down_count: int                   # MemberDown about a running member
    false_suspect_count: int                # MemberSuspect about a running member (refuted ones too)
    rejoin_failed_count: int                # restarted members not seen alive by all before next crash
    packets_sent: int
    trace_hash: str
    simulated_s: float


class _Node:
    __slots__ = ("node_id", "address", "swim", "timer", "generation")

    def __init__(self, node_id: str, address: str) -> None:
        self.node_id = node_id
        self.address = address
        self.swim: Swim | None = None
        self.timer: EventHandle | None = None
        self.generation = 0


class SwimSimulation:
    """N SWIM cores on the harness. See the module docstring."""

    def __init__(self, seed: int, options: SwimSimOptions, trace_echo: bool = False,
                 keep_events: bool = False) -> None:
        self.seed = seed
        self.options = options
        self.sim = Simulation(seed, options, trace_echo=trace_echo)
        path = PathOptions(delay_ns_min=options.delay_ns_min, delay_ns_mean=options.delay_ns_mean,
                           loss_probability=options.loss_probability,
                           duplicate_probability=options.duplicate_probability,
                           reorder_probability=options.reorder_probability)
        self.net = SimNetwork(self.sim, self.sim.derive_rng("net"), NetworkOptions(path=path))
        self.rng = self.sim.derive_rng("faults")
        self.nodes: dict[str, _Node] = {}
        self._by_address: dict[str, str] = {}
        for i in range(options.members):
            node_id = f"n{i:03d}"
            address = f"10.0.{i // 250}.{i % 250 + 1}:7946"
            self.nodes[node_id] = _Node(node_id, address)
            self._by_address[address] = node_id
            self.net.register(node_id, self._make_handler(node_id))
        # Measurement state.
        self.running: set[str] = set()
        self._crash: tuple[str, int, set[str]] | None = None   # (victim, crashed_at, not yet seen down by)
        self._rejoin: tuple[str, set[str]] | None = None       # (member, not yet seen up by)
        self.detection_ns: list[int] = []
        self.missed_count = 0
        self.false_down_count = 0
        self.false_suspect_count = 0
        self.rejoin_failed_count = 0
        # (time_ns, observer, event) of every membership event, for tests that drive the
        # cluster by hand (start / crash / net.cut / sim.run); off for long runs.
        self.keep_events = keep_events
        self.events: list[tuple[int, str, object]] = []

    # --- wiring ----------------------------------------------------------------------------------

    def _make_handler(self, node_id: str):
        def handler(src: str, packet: bytes) -> None:
            node = self.nodes[node_id]
            if node.swim is None:
                return
            node.swim.on_packet(self.nodes[src].address, packet, self.sim.now_ns)
            self._pump(node)
        return handler

    def _pump(self, node: _Node) -> None:
        """Carry out a core's effects (STYLE §2.1 order: send, then events, then re-arm timer)."""
        swim = node.swim
        assert swim is not None
        for send in swim.take_outbox():
            self.net.send(node.node_id, self._by_address[send.to_addr], send.packet)
        for event in swim.take_events():
            self._observe(node.node_id, event)
        deadline = max(swim.next_deadline_ns(), self.sim.now_ns)
        if node.timer is not None and not node.timer.cancelled:
            if node.timer.at_ns == deadline:
                return
            node.timer.cancel()
        node.timer = self.sim.schedule(deadline, lambda n=node: self._tick(n))

    def _tick(self, node: _Node) -> None:
        if node.swim is None:
            return
        node.timer = None
        node.swim.tick(self.sim.now_ns)
        self._pump(node)

    def start(self, node_id: str, seeds: list[str]) -> None:
        node = self.nodes[node_id]
        assert node.swim is None
        node.generation += 1
        meta = Meta.build(roles=("backend",), binary_address=node.address.replace("7946", "7700"),
                          cell="c1", load={"queues": 0})
        node.swim = Swim(node_id, node.address, meta, self.options.config,
                         self.sim.derive_rng(f"swim/{node_id}/{node.generation}"))
        self.net.set_up(node_id, True)
        self.running.add(node_id)
        self.sim.record(node_id, f"start generation={node.generation}")
        node.swim.join([self.nodes[s].address for s in seeds])
        self._pump(node)

    def swim(self, node_id: str) -> Swim:
        swim = self.nodes[node_id].swim
        assert swim is not None, f"{node_id} is not running"
        return swim

    def pump(self, node_id: str) -> None:
        """Carry out a core's effects after a test called it directly (leave, update_meta)."""
        self._pump(self.nodes[node_id])

    def events_of(self, observer: str, kind: type, member: str) -> list[tuple[int, object]]:
        return [(t, e) for t, o, e in self.events
                if o == observer and isinstance(e, kind) and e.member.node_id == member]  # type: ignore[attr-defined]

    def crash(self, node_id: str) -> None:
        node = self.nodes[node_id]
        assert node.swim is not None
        node.swim = None
        if node.timer is not None:
            node.timer.cancel()
            node.timer = None
        self.net.set_up(node_id, False)
        self.running.discard(node_id)
        self.sim.record(node_id, "crash")

    # --- measurement -----------------------------------------------------------------------------

    def _observe(self, observer: str, event: object) -> None:
        member = event.member      # type: ignore[attr-defined]
        if self.keep_events:
            self.events.append((self.sim.now_ns, observer, event))
        self.sim.record(observer, f"{type(event).__name__} {member.node_id} inc={member.incarnation}")
        target = member.node_id
        if isinstance(event, MemberDown):
            if target in self.running:
                self.false_down_count += 1
                self.sim.record("sim", f"FALSE DOWN of {target} at {observer}")
            elif self._crash is not None and self._crash[0] == target:
                pending = self._crash[2]
                pending.discard(observer)
                if not pending:
                    self.detection_ns.append(self.sim.now_ns - self._crash[1])
                    self.sim.record("sim", f"detected {target} in "
                                           f"{(self.sim.now_ns - self._crash[1]) / 1e6:.0f} ms")
                    self._crash = None
        elif isinstance(event, MemberSuspect):
            if target in self.running:
                self.false_suspect_count += 1
        elif isinstance(event, MemberUp):
            if self._rejoin is not None and self._rejoin[0] == target:
                self._rejoin[1].discard(observer)
                if not self._rejoin[1]:
                    self._rejoin = None
        elif isinstance(event, (MemberLeft, MemberUpdated)):
            pass
        else:
            assert False, event

    def _cycle(self) -> None:
        opts = self.options
        if self._crash is not None:
            self.missed_count += 1
            self.sim.record("sim", f"MISSED detection of {self._crash[0]}")
            self._crash = None
        if self._rejoin is not None:
            self.rejoin_failed_count += 1
            self.sim.record("sim", f"REJOIN FAILED for {self._rejoin[0]}")
            self._rejoin = None
        victim = self.rng.choice(sorted(self.running))
        self.crash(victim)
        self._crash = (victim, self.sim.now_ns, set(self.running))
        deadline_at = self.sim.now_ns + opts.detect_deadline_ns

        def give_up(victim: str = victim) -> None:
            if self._crash is not None and self._crash[0] == victim:
                self.missed_count += 1
                self.sim.record("sim", f"MISSED detection of {victim}")
                self._crash = None
        self.sim.schedule(deadline_at, give_up)
        self.sim.after(opts.crash_cycle_ns // 2, lambda v=victim: self._restart(v))

    def _restart(self, node_id: str) -> None:
        seed = self.rng.choice(sorted(self.running))
        self._rejoin = (node_id, set(self.running))
        self.start(node_id, [seed])

    # --- running ---------------------------------------------------------------------------------

    def run(self) -> SwimSimResult:
        opts = self.options
        ids = sorted(self.nodes)
        # Staggered start over the first 2 s; everyone joins through the first member.
        self.start(ids[0], [])
        for i, node_id in enumerate(ids[1:], start=1):
            self.sim.schedule(self.sim.now_ns + i * 2 * NS_PER_S // len(ids),
                              lambda n=node_id, s=ids[0]: self.start(n, [s]))
        self.sim.run(opts.warmup_ns)
        self.false_down_count = 0       # joining is not part of the figures
        self.false_suspect_count = 0
        cycles = opts.duration_ns // opts.crash_cycle_ns
        for c in range(cycles):
            self.sim.schedule(opts.warmup_ns + c * opts.crash_cycle_ns, self._cycle)
        self.sim.run(opts.warmup_ns + opts.duration_ns)
        if self._crash is not None:
            self.missed_count += 1
        self.sim.record("sim", f"end packets={self.net.sent_count} delivered={self.net.delivered_count}")
        return SwimSimResult(self.seed, self.detection_ns, self.missed_count, self.false_down_count,
                             self.false_suspect_count, self.rejoin_failed_count,
                             self.net.sent_count, self.sim.trace.hexdigest(),
                             opts.duration_ns / NS_PER_S)


def percentile_ns(samples: list[int], p: float) -> int:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    assert samples
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def run_seeds(seeds: list[int], options: SwimSimOptions) -> list[SwimSimResult]:
    return [SwimSimulation(seed, options).run() for seed in seeds]


def summarize(results: list[SwimSimResult], options: SwimSimOptions) -> str:
    samples = [s for r in results for s in r.detection_ns]
    lines = [f"swim sim: {options.describe()} seeds={[r.seed for r in results]}"]
    if samples:
        lines.append(
            f"crash -> down at every live member: n={len(samples)} "
            f"p50={percentile_ns(samples, 50) / 1e9:.2f}s p99={percentile_ns(samples, 99) / 1e9:.2f}s "
            f"max={max(samples) / 1e9:.2f}s")
    hours = sum(r.simulated_s for r in results) / 3600
    lines.append(f"missed detections: {sum(r.missed_count for r in results)}  "
                 f"failed rejoins: {sum(r.rejoin_failed_count for r in results)}")
    lines.append(f"false downs (live member declared down): {sum(r.false_down_count for r in results)} "
                 f"in {hours:.2f} simulated cluster-hours; "
                 f"MemberSuspect events about live members (all observers; refuted unless "
                 f"counted as false downs): {sum(r.false_suspect_count for r in results)}")
    packets = sum(r.packets_sent for r in results)
    per_member_s = packets / max(1e-9, sum(r.simulated_s for r in results)) / options.members
    lines.append(f"packets per member per second: {per_member_s:.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim.swim_sim", description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--loss", type=float, default=0.05)
    parser.add_argument("--hours", type=float, default=None, help="simulated time per seed (after warm-up)")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--seeds", default="1", help="comma list, or a range like 1-5")
    parser.add_argument("--cycle", type=float, default=40.0, help="seconds between crashes")
    parser.add_argument("--dup", type=float, default=0.0, help="duplication probability")
    parser.add_argument("--reorder", type=float, default=0.0, help="reordering probability")
    parser.add_argument("--trace", action="store_true", help="print every trace line")
    args = parser.parse_args(argv)
    if "-" in args.seeds:
        lo, hi = args.seeds.split("-")
        seeds = list(range(int(lo), int(hi) + 1))
    else:
        seeds = [int(s) for s in args.seeds.split(",")]
    seconds = args.hours * 3600 if args.hours is not None else args.seconds
    options = SwimSimOptions(members=args.members, loss_probability=args.loss,
                             duration_ns=int(seconds * NS_PER_S),
                             crash_cycle_ns=int(args.cycle * NS_PER_S),
                             duplicate_probability=args.dup, reorder_probability=args.reorder)
    started = time.monotonic()
    results = [SwimSimulation(seed, options, trace_echo=args.trace).run() for seed in seeds]
    print(summarize(results, options))
    for r in results:
        print(f"  seed={r.seed} crashes={len(r.detection_ns)} trace={r.trace_hash}")
    print(f"wall time: {time.monotonic() - started:.1f}s")
    bad = sum(r.false_down_count + r.missed_count for r in results)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
