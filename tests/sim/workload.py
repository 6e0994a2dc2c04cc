"""Seeded clients for the Raft metadata simulation: create/delete/get on a few queue names.

Owns: the clients and the per-key operation history the linearizability checker reads. Each
client runs one operation at a time against a node it believes is the leader (learned from
NotLeader hints), with a timeout. Outcomes:
  definite failure (NotLeader, Busy, node down, superseded entry) -> not in the history (no effect)
  result                                                          -> a completed operation
  unknown (crash, timeout, snapshot jump)                         -> an operation with no completion
Reads that fail or time out are dropped (they have no effect). Bounded: at most
`ops_per_key_max` recorded operations per key, so the checker's search stays small.
"""

from __future__ import annotations

import random
from typing import Any

from qnode.metadata import commands
from qnode.metadata.state import ApplyResult, MetadataState
from qnode.protocol.errors import ErrorCode
from tests.sim.harness import Simulation
from tests.sim.linearizability import Op
from tests.sim.node import OpOutcome, SimRaftNode

ops_per_key_max = 12
op_timeout_ns = 2_000_000_000


class Client:
    def __init__(self, index: int, sim: Simulation, nodes: list[SimRaftNode], rng: random.Random,
                 keys: list[str], history: dict[str, list[Op]], interval_ns_mean: int) -> None:
        self.index = index
        self.sim = sim
        self.nodes = nodes
        self.rng = rng
        self.keys = keys
        self.history = history
        self.interval_ns_mean = interval_ns_mean
        self.guess: str | None = None
        self.stopped = False
        self.outstanding = False
        self._op_seq = 0
        self.reserved: dict[str, int] = {}

    def start(self) -> None:
        self._schedule_next()

    def stop(self) -> None:
        self.stopped = True

    def _schedule_next(self) -> None:
        if self.stopped:
            return
        delay = int(self.rng.expovariate(1.0 / self.interval_ns_mean))
        self.sim.after(delay, self._issue)

    def _budget_left(self, key: str) -> bool:
        return len(self.history[key]) + self._outstanding_on(key) < ops_per_key_max

    def _outstanding_on(self, key: str) -> int:
        return self.reserved.get(key, 0)

    def _pick_node(self) -> SimRaftNode:
        by_id = {n.id: n for n in self.nodes}
        if self.guess in by_id and self.rng.random() < 0.9:
            return by_id[self.guess]
        return self.rng.choice(self.nodes)

    def _issue(self) -> None:
        if self.stopped or self.outstanding:
            return
        keys = [k for k in self.keys if self._budget_left(k)]
        if not keys:
            self.stopped = True
            return
        key = self.rng.choice(keys)
        f = self.rng.choice(["create", "create", "delete", "get", "get"])
        arg = self.rng.choice(["a", "b"]) if f == "create" else None
        node = self._pick_node()
        self._op_seq += 1
        seq = self._op_seq
        invoke_ns = self.sim.now_ns
        self.outstanding = True
        self.reserved[key] = self.reserved.get(key, 0) + 1
        done = {"v": False}

        def finish(outcome: OpOutcome | None) -> None:
            if done["v"]:
                return
            done["v"] = True
            self.outstanding = False
            self.reserved[key] -= 1
            if outcome is None:        # timeout
                if f != "get":
                    self._record(key, Op(self.index, invoke_ns, None, f, arg, None), "timeout")
            elif outcome.unknown:
                if f != "get":
                    self._record(key, Op(self.index, invoke_ns, None, f, arg, None), "unknown")
            elif outcome.error is not None:
                if outcome.error.code is ErrorCode.NOT_LEADER:
                    self.guess = outcome.error.leader_hint
                elif self.rng.random() < 0.5:
                    self.guess = None
            else:
                ret = _ret(f, outcome.result)
                self._record(key, Op(self.index, invoke_ns, self.sim.now_ns, f, arg, ret), "ok")
                self.guess = node.id
            self._schedule_next()

        self.sim.after(op_timeout_ns, lambda: finish(None))
        self.sim.record(f"c{self.index}", f"invoke #{seq} {f}({key},{arg}) -> {node.id}")
        if f == "create":
            node.propose(commands.create_queue(key, {"v": arg}).encode(), finish)
        elif f == "delete":
            node.propose(commands.delete_queue(key).encode(), finish)
        else:
            node.read(lambda st, k=key: _get(st, k), finish)

    def _record(self, key: str, op: Op, how: str) -> None:
        self.history[key].append(op)
        self.sim.record(f"c{self.index}", f"{how} {op.f}({key},{op.arg}) = {op.ret}")


def _get(state: MetadataState, key: str) -> Any:
    q = state.get_queue(key)
    return None if q is None else q.attributes["v"]


def _ret(f: str, result: Any) -> Any:
    if f == "get":
        return result
    assert isinstance(result, ApplyResult), result
    if result.ok:
        return "ok"
    if result.error_code is ErrorCode.QUEUE_ALREADY_EXISTS:
        return "exists"
    if result.error_code is ErrorCode.QUEUE_DOES_NOT_EXIST:
        return "missing"
    assert False, result
