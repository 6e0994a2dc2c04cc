"""SimNetwork: a seeded packet simulator between named nodes.

Owns: delivery of messages between nodes of one Simulation, with per-path delay, loss,
duplication, reordering, path capacity and partitions. It never inspects message contents.

    net = SimNetwork(sim, sim.derive_rng("net"), NetworkOptions(...))
    net.register(node_id, handler)       # handler(src, msg) is called by the harness on delivery
    net.set_up(node_id, False)           # a down (crashed) node drops everything sent to/from it
    net.send(src, dst, msg)              # schedule delivery (or drop) per the options
    net.partition({"a"}, {"b", "c"})     # symmetric: no delivery across the two groups
    net.cut("a", "b")                    # asymmetric: a -> b dropped, b -> a still delivered
    net.isolate("a")                     # a can neither send nor receive
    net.heal()                           # remove every cut; options (loss, delay) stay
    net.set_path(src, dst, PathOptions)  # override delay/loss for one direction

Delivery checks cuts twice: when sent and when delivered, so a partition started while a packet
is in flight drops it too (as a real switch would). Reordering comes from independent random
delays plus, with `reorder_probability`, an extra delay of up to `reorder_delay_ns_max`.
Invariants: a path holds at most `path_capacity_count` packets in flight (more are dropped, as a
full switch queue would), and every random draw comes from the injected rng, in send order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any, Callable

from tests.sim.harness import Simulation

Handler = Callable[[str, Any], None]


@dataclass(frozen=True, slots=True)
class PathOptions:
    delay_ns_min: int = 100_000          # 0.1 ms
    delay_ns_mean: int = 1_000_000       # 1 ms: added exponential delay with this mean
    loss_probability: float = 0.0
    duplicate_probability: float = 0.0
    reorder_probability: float = 0.0
    reorder_delay_ns_max: int = 20_000_000
    path_capacity_count: int = 1_000

    def __post_init__(self) -> None:
        assert 0 <= self.delay_ns_min <= self.delay_ns_mean
        for p in (self.loss_probability, self.duplicate_probability, self.reorder_probability):
            assert 0.0 <= p <= 1.0
        assert self.path_capacity_count > 0


@dataclass(frozen=True, slots=True)
class NetworkOptions:
    path: PathOptions = PathOptions()


class SimNetwork:
    def __init__(self, sim: Simulation, rng: random.Random, options: NetworkOptions | None = None) -> None:
        self.sim = sim
        self.rng = rng
        self.options = options or NetworkOptions()
        self._handlers: dict[str, Handler] = {}
        self._up: dict[str, bool] = {}
        self._cuts: set[tuple[str, str]] = set()   # (src, dst) directions that drop
        self._paths: dict[tuple[str, str], PathOptions] = {}
        self._in_flight: dict[tuple[str, str], int] = {}
        self.sent_count = 0
        self.delivered_count = 0
        self.dropped_count = 0

    # --- topology --------------------------------------------------------------------------
    def register(self, node_id: str, handler: Handler) -> None:
        self._handlers[node_id] = handler
        self._up[node_id] = True

    def node_ids(self) -> list[str]:
        return sorted(self._handlers)

    def set_up(self, node_id: str, up: bool) -> None:
        assert node_id in self._handlers
        self._up[node_id] = up

    def set_path(self, src: str, dst: str, path: PathOptions) -> None:
        self._paths[(src, dst)] = path

    def cut(self, src: str, dst: str) -> None:
        """Asymmetric partition: packets src -> dst are dropped."""
        self._cuts.add((src, dst))

    def partition(self, group_a: set[str] | list[str], group_b: set[str] | list[str]) -> None:
        """Symmetric partition between two groups."""
        for a in sorted(group_a):
            for b in sorted(group_b):
                if a != b:
                    self._cuts.add((a, b))
                    self._cuts.add((b, a))

    def isolate(self, node_id: str) -> None:
        others = [n for n in self.node_ids() if n != node_id]
        self.partition([node_id], others)

    def heal(self) -> None:
        self._cuts.clear()

    def heal_paths(self) -> None:
        """Drop per-path overrides as well (used by liveness phases)."""
        self._paths.clear()

    def is_cut(self, src: str, dst: str) -> bool:
        return (src, dst) in self._cuts

    def cut_count(self) -> int:
        return len(self._cuts)

    # --- delivery --------------------------------------------------------------------------
    def _path(self, src: str, dst: str) -> PathOptions:
        return self._paths.get((src, dst), self.options.path)

    def _delay_ns(self, path: PathOptions) -> int:
        extra = path.delay_ns_mean - path.delay_ns_min
        delay = path.delay_ns_min + (int(self.rng.expovariate(1.0 / extra)) if extra > 0 else 0)
        if path.reorder_probability and self.rng.random() < path.reorder_probability:
            delay += self.rng.randrange(path.reorder_delay_ns_max + 1)
        return delay

    def send(self, src: str, dst: str, msg: Any) -> None:
        assert dst in self._handlers, dst
        self.sent_count += 1
        path = self._path(src, dst)
        if not self._up.get(src, False) or self.is_cut(src, dst):
            self.dropped_count += 1
            return
        if path.loss_probability and self.rng.random() < path.loss_probability:
            self.dropped_count += 1
            return
        copies = 1
        if path.duplicate_probability and self.rng.random() < path.duplicate_probability:
            copies = 2
        for _ in range(copies):
            key = (src, dst)
            if self._in_flight.get(key, 0) >= path.path_capacity_count:
                self.dropped_count += 1
                continue
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
            self.sim.after(self._delay_ns(path), lambda s=src, d=dst, m=msg: self._deliver(s, d, m))

    def _deliver(self, src: str, dst: str, msg: Any) -> None:
        key = (src, dst)
        self._in_flight[key] -= 1
        if not self._up.get(dst, False) or self.is_cut(src, dst):
            self.dropped_count += 1
            return
        self.delivered_count += 1
        self._handlers[dst](src, msg)


def lossy(path: PathOptions, loss_probability: float) -> PathOptions:
    return replace(path, loss_probability=loss_probability)
