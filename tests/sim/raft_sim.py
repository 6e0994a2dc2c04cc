"""One simulated run of the Raft metadata cluster: safety phase, liveness phase, checks.

Owns: assembling a run from (seed, options): nodes, network, nemesis (crashes, restarts,
partitions, membership changes), clients; and deciding pass/fail.

    result = run(seed, events=2000)           # options default to swarm(derive_rng("options"))
    result.ok, result.failure, result.trace_hash, result.report()

Phases (TigerBeetle VOPR style):
  1. safety: `events` harness events with faults on; checkers run after every event.
  2. liveness: heal every partition, make the network reliable, restart every crashed node, stop
     faults and new client operations; within `liveness_ns_max` of simulated time there must be
     one leader whose configuration's voters all have commit == applied == its last index, a
     committed entry of its own term, and no proposal left pending anywhere.
  3. linearizability of each key's history (linearizability.py).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field, replace

from qnode.metadata.raft.core import RaftConfig, Role
from qnode.metadata.raft.messages import ConfChange, ConfChangeOp, EntryKind
from tests.sim import linearizability
from tests.sim.checkers import RaftCheckers
from tests.sim.harness import Simulation
from tests.sim.network import NetworkOptions, PathOptions, SimNetwork
from tests.sim.node import OpOutcome, SimRaftNode
from tests.sim.options import SimOptions, swarm
from tests.sim.workload import Client

liveness_ns_max = 30_000_000_000
liveness_poll_ns = 100_000_000


@dataclass
class RunResult:
    seed: int
    events: int
    options: SimOptions
    ok: bool
    failure: str = ""
    trace_hash: str = ""
    trace_tail: list[str] = field(default_factory=list)
    status_lines: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    def replay_command(self) -> str:
        return f"python -m tests.sim --seed {self.seed} --events {self.events}"

    def report(self) -> str:
        lines = [f"seed={self.seed} events={self.events} ok={self.ok} trace={self.trace_hash}"]
        if not self.ok:
            lines.append(f"FAILURE: {self.failure}")
            lines.append(f"options: {self.options.describe()}")
            lines.append(f"replay: {self.replay_command()}")
            lines.append("--- last trace lines ---")
            lines.extend(self.trace_tail)
            lines.append("--- node status ---")
            lines.extend(self.status_lines)
        lines.append(" ".join(f"{k}={v}" for k, v in sorted(self.stats.items())))
        return "\n".join(lines)


class RaftSimulation:
    def __init__(self, seed: int, options: SimOptions | None = None, trace_echo: bool = False) -> None:
        self.seed = seed
        probe = Simulation(seed)
        self.options = options or swarm(probe.derive_rng("options"))
        o = self.options
        self.sim = Simulation(seed, self.options, trace_echo=trace_echo)
        self.net = SimNetwork(self.sim, self.sim.derive_rng("net"), NetworkOptions(o.path))
        self.checkers = RaftCheckers()
        ids = tuple(f"n{i}" for i in range(1, o.node_count + 1))
        config = RaftConfig(election_ticks=10, heartbeat_ticks=2, append_entries_count_max=8,
                            inflight_appends_max=4, uncommitted_size_max=64 << 10, entry_size_max=4 << 10)
        skew_rng = self.sim.derive_rng("skew")
        ticks_ns = [int(o.tick_ns * (1 + skew_rng.uniform(-o.tick_skew, o.tick_skew))) for _ in ids]
        self.nodes = [SimRaftNode(self.sim, self.net, i, ids, config, tick_ns, o.fsync_delay_ns_max,
                                  o.compact_every_count, self.checkers, o.disk) for i, tick_ns in zip(ids, ticks_ns)]
        self.checkers.nodes = self.nodes
        self.keys = [f"q{i}" for i in range(o.key_count)]
        self.history: dict[str, list[linearizability.Op]] = {k: [] for k in self.keys}
        self.clients = [Client(i, self.sim, self.nodes, self.sim.derive_rng(f"client/{i}"), self.keys,
                               self.history, o.client_op_interval_ns_mean) for i in range(o.client_count)]
        self.nemesis_rng = self.sim.derive_rng("nemesis")
        self.faults_on = True
        self.sim.add_checker(self.checkers.check_after_event)
        self.crash_count = 0
        self.partition_count = 0
        self.conf_change_count = 0

    # --- nemesis ---------------------------------------------------------------------------
    def _schedule_fault(self) -> None:
        self.sim.after(self.options.fault_interval_ns, self._fault)

    def _fault(self) -> None:
        if not self.faults_on:
            return
        o, rng = self.options, self.nemesis_rng
        up = [n for n in self.nodes if n.up]
        if up and rng.random() < o.crash_probability:
            node = rng.choice(up)
            node.crash(o.tear_probability)
            self.crash_count += 1
            delay = rng.randint(0, o.restart_delay_ns_max)
            self.sim.after(delay, lambda n=node: self._restart(n))
        if rng.random() < o.partition_probability:
            self._partition(rng)
        elif self.net.cut_count() and rng.random() < o.heal_probability:
            self.net.heal()
            self.sim.record("sim", "heal")
        if o.membership_changes and rng.random() < 0.2:
            self._change_membership(rng)
        self._schedule_fault()

    def _restart(self, node: SimRaftNode) -> None:
        if not node.up:
            node.start()

    def _partition(self, rng) -> None:
        ids = [n.id for n in self.nodes]
        kind = rng.randrange(3)
        if kind == 0:
            victim = rng.choice(ids)
            self.net.isolate(victim)
            self.sim.record("sim", f"isolate {victim}")
        elif kind == 1:
            shuffled = ids[:]
            rng.shuffle(shuffled)
            cut = rng.randint(1, len(ids) - 1)
            a, b = sorted(shuffled[:cut]), sorted(shuffled[cut:])
            self.net.partition(a, b)
            self.sim.record("sim", f"partition {a} | {b}")
        else:
            src, dst = rng.sample(ids, 2)
            self.net.cut(src, dst)
            self.sim.record("sim", f"cut {src}->{dst}")
        self.partition_count += 1

    def _leader(self) -> SimRaftNode | None:
        leaders = [n for n in self.nodes if n.up and n.core.role is Role.LEADER]
        if not leaders:
            return None
        return max(leaders, key=lambda n: n.core.term)

    def _change_membership(self, rng) -> None:
        leader = self._leader()
        if leader is None:
            return
        voters = leader.core.voters
        all_ids = [n.id for n in self.nodes]
        missing = [i for i in all_ids if i not in voters]
        if missing:
            change = ConfChange(ConfChangeOp.ADD_VOTER, rng.choice(missing))
        elif len(voters) >= 3:
            change = ConfChange(ConfChangeOp.REMOVE_VOTER, rng.choice(list(voters)))
        else:
            return
        self.sim.record("sim", f"propose {change} via {leader.id}")
        self.conf_change_count += 1
        leader.propose(change.encode(), lambda outcome: None, EntryKind.CONF_CHANGE)

    # --- phases ----------------------------------------------------------------------------
    def run(self, events: int) -> RunResult:
        try:
            for n in self.nodes:
                n.start()
            for c in self.clients:
                c.start()
            self._schedule_fault()
            self.sim.run_events(events)
            self._liveness()
            self._check_linearizable()
        except Exception as exc:  # noqa: BLE001 - any exception in a run is a failure to report with its seed
            return self._result(False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}", events)
        return self._result(True, "", events)

    def _liveness(self) -> None:
        self.faults_on = False
        for c in self.clients:
            c.stop()
        self.net.heal()
        self.net.heal_paths()
        self.net.options = NetworkOptions(PathOptions())
        for n in self.nodes:
            if not n.up:
                n.start()
        self.sim.record("sim", "liveness phase: healed, all nodes up")
        deadline = self.sim.now_ns + liveness_ns_max
        settled_final = {"done": False, "sent": False}
        while self.sim.now_ns < deadline:
            self.sim.run(self.sim.now_ns + liveness_poll_ns)
            leader = self._leader()
            if leader is None or not self._converged(leader):
                continue
            if self.options.membership_changes:
                missing = [n.id for n in self.nodes if n.id not in leader.core.voters]
                if missing and leader.core._pending_conf_index <= leader.core.log.commit:
                    leader.propose(ConfChange(ConfChangeOp.ADD_VOTER, missing[0]).encode(),
                                   lambda outcome: None, EntryKind.CONF_CHANGE)
                    continue
                if missing:
                    continue
            if not settled_final["sent"]:
                settled_final["sent"] = True
                leader.propose(b"", lambda o: settled_final.__setitem__("done", o.error is None and not o.unknown),
                               EntryKind.NOOP)
                continue
            if settled_final["done"]:
                return
            settled_final["sent"] = False
        assert False, "liveness: no convergence after healing (" + "; ".join(n.status_line() for n in self.nodes) + ")"

    def _converged(self, leader: SimRaftNode) -> bool:
        core = leader.core
        if core.log.term(core.log.commit) != core.term:
            return False
        last = core.log.last_index()
        for n in self.nodes:
            if n.id not in core.voters:
                continue
            if not n.up or n.core.log.commit != last or n.core.log.applied != last:
                return False
            if n._proposals or n._busy:
                return False
        return not any(c.outstanding for c in self.clients)

    def _check_linearizable(self) -> None:
        for key in self.keys:
            ok, why = linearizability.check(self.history[key])
            if not ok:
                ops = "\n  ".join(str(op) for op in sorted(self.history[key], key=lambda o: o.invoke_ns))
                assert False, f"linearizability: key {key}: {why}\n  {ops}"

    def _result(self, ok: bool, failure: str, events: int) -> RunResult:
        leader = self._leader()
        stats = {
            "sim_ms": self.sim.now_ns // 1_000_000,
            "events_run": self.sim.events_run,
            "crashes": self.crash_count,
            "partitions": self.partition_count,
            "conf_changes": self.conf_change_count,
            "msgs_sent": self.net.sent_count,
            "msgs_dropped": self.net.dropped_count,
            "applied": self.checkers.apply_count,
            "commit_max": self.checkers.commit_max,
            "ops": sum(len(h) for h in self.history.values()),
            "leader_term": leader.core.term if leader else 0,
        }
        return RunResult(self.seed, events, self.options, ok, failure, self.sim.trace.hexdigest(),
                         self.sim.trace.tail(), [n.status_line() for n in self.nodes], stats)


def run(seed: int, events: int = 2000, options: SimOptions | None = None, trace_echo: bool = False) -> RunResult:
    return RaftSimulation(seed, options, trace_echo).run(events)
