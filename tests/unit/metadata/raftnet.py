"""Test helper: RaftCore instances joined by an in-memory network (etcd raft_test.go `network`).

`Net(ids)` builds one core per id over a MemRecordLog-backed RaftStorage. `stabilize()` runs the
Ready cycle (persist, send, apply, advance) on every node and delivers messages until nothing is
left, in a fixed order, dropping messages across cut links. `crash(id)` rebuilds a node from its
durable records only.
"""

from __future__ import annotations

import random

from qnode.metadata.raft.core import RaftConfig, RaftCore, Role
from qnode.metadata.raft.memlog import MemRecordLog
from qnode.metadata.raft.messages import Entry, Message, ReadState
from qnode.metadata.raft.storage import RaftStorage

stabilize_rounds_max = 10_000


class Net:
    def __init__(self, ids: list[str], config: RaftConfig | None = None, seed: int = 1,
                 peers: list[str] | None = None) -> None:
        self.config = config or RaftConfig(election_ticks=10, heartbeat_ticks=1)
        self.seed = seed
        self.peers = tuple(peers if peers is not None else ids)
        self.disks = {i: MemRecordLog() for i in ids}
        self.cores: dict[str, RaftCore] = {}
        self.storages: dict[str, RaftStorage] = {}
        self.applied: dict[str, list[Entry]] = {i: [] for i in ids}
        self.read_states: dict[str, list[ReadState]] = {i: [] for i in ids}
        self.cut: set[tuple[str, str]] = set()
        self.down: set[str] = set()
        self.queue: list[Message] = []
        self.sent: list[Message] = []
        for i in ids:
            self._boot(i)

    def _boot(self, i: str, peers: tuple[str, ...] | None = None) -> None:
        storage = RaftStorage(self.disks[i])
        restored = storage.load()
        self.storages[i] = storage
        self.cores[i] = RaftCore(i, self.peers if peers is None else peers,
                                 random.Random(f"{self.seed}/{i}/{len(self.sent)}"), self.config, restored)

    def add_node(self, i: str) -> None:
        """A new, empty node that joins an existing cluster (boots with no peers)."""
        self.disks[i] = MemRecordLog()
        self.applied[i] = []
        self.read_states[i] = []
        self._boot(i, peers=())

    def crash(self, i: str) -> None:
        self.disks[i].crash(random.Random(0), tear_probability=0.0)
        self.applied[i] = []
        self._boot(i)

    def isolate(self, i: str) -> None:
        for j in sorted(self.cores):
            if j != i:
                self.cut.add((i, j))
                self.cut.add((j, i))

    def heal(self) -> None:
        self.cut.clear()

    def process(self, i: str) -> None:
        core = self.cores[i]
        while (rd := core.ready()) is not None:
            self.storages[i].save(rd.hard_state, rd.snapshot, rd.entries)
            for m in rd.messages:
                self.sent.append(m)
                if (m.src, m.dst) not in self.cut and m.dst not in self.down:
                    self.queue.append(m)
            if rd.snapshot is not None:
                self.applied[i] = [e for e in self.applied[i] if e.index <= rd.snapshot.index]
            self.applied[i].extend(rd.committed)
            self.read_states[i].extend(rd.read_states)
            core.advance(rd)

    def stabilize(self) -> None:
        for _ in range(stabilize_rounds_max):
            for i in sorted(self.cores):
                if i not in self.down:
                    self.process(i)
            if not self.queue:
                return
            batch, self.queue = self.queue, []
            for m in batch:
                if m.dst in self.cores and m.dst not in self.down:
                    self.cores[m.dst].step(m)
        assert False, "did not stabilize"

    def tick(self, i: str, n: int = 1) -> None:
        for _ in range(n):
            self.cores[i].tick()

    def elect(self, i: str) -> None:
        """Tick node i until it campaigns, then stabilize; asserts it won."""
        core = self.cores[i]
        for _ in range(2 * self.config.election_ticks + 1):
            core.tick()
            if core.role is not Role.FOLLOWER:
                break
        self.stabilize()
        assert core.role is Role.LEADER, core.status().line()

    def leader(self) -> RaftCore | None:
        leaders = [c for c in self.cores.values() if c.role is Role.LEADER and c.id not in self.down]
        return max(leaders, key=lambda c: c.term) if leaders else None
