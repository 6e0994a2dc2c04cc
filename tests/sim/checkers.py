"""Raft safety checkers for the simulator, run on every persist/apply and after every event.

Owns: the global oracles of one run. Properties (Raft paper fig. 3):
  Election Safety     at most one leader per term            (`check_after_event`)
  Log Matching        two logs with an entry of the same (index, term) hold the same command and
                      agree on the previous entry's term, hence on the whole prefix by induction
                      (`on_persist`, every entry any node ever persists)
  Leader Completeness a node that becomes leader holds every committed entry (`check_after_event`)
  State Machine Safety every node applies the same entry at each index (`on_apply`), commit
                      prefixes agree (`check_after_event`), and snapshots taken at the same index
                      are byte-identical (`on_compact`)
  Durability          a node never restarts with a commit index below what it had made durable
Violations raise AssertionError with a message naming the property.
"""

from __future__ import annotations

import hashlib
from typing import Any

from qnode.metadata.raft.core import Role
from qnode.metadata.raft.messages import Entry, Snapshot


def _digest(entry: Entry) -> tuple[int, int, bytes]:
    return (entry.term, int(entry.kind), hashlib.blake2b(entry.data, digest_size=8).digest())


class RaftCheckers:
    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.leader_by_term: dict[int, str] = {}
        self.entries: dict[tuple[int, int], tuple[tuple[int, int, bytes], int]] = {}  # (index, term) -> (digest, prev_term)
        self.committed: dict[int, tuple[int, int, bytes]] = {}   # index -> digest
        self.commit_max = 0
        self.snapshots: dict[int, bytes] = {}
        self._checked_commit: dict[str, int] = {}
        self._leader_seen: dict[str, int] = {}   # node -> last term it was checked as leader
        self.apply_count = 0

    # --- observer callbacks ----------------------------------------------------------------
    def on_restart(self, node: Any) -> None:
        core = node.core
        self._checked_commit[node.id] = core.log.snapshot_index
        self._leader_seen.pop(node.id, None)

    def on_persist(self, node: Any, entries: tuple[Entry, ...]) -> None:
        log = node.core.log
        for e in entries:
            prev_term = log.term(e.index - 1)
            key = (e.index, e.term)
            value = (_digest(e), prev_term if prev_term is not None else -1)
            seen = self.entries.get(key)
            if seen is None:
                self.entries[key] = value
            else:
                assert seen[0] == value[0], f"Log Matching: {node.id} has a different entry at {key}"
                if seen[1] != -1 and value[1] != -1:
                    assert seen[1] == value[1], f"Log Matching: {node.id} disagrees on the term before {key}"

    def on_apply(self, node: Any, entry: Entry) -> None:
        self.apply_count += 1
        self._check_committed(node.id, entry.index, _digest(entry))

    def on_snapshot_restore(self, node: Any, snap: Snapshot) -> None:
        self._check_snapshot(node.id, snap.index, snap.data)

    def on_compact(self, node: Any, snap: Snapshot) -> None:
        self._check_snapshot(node.id, snap.index, snap.data)

    def _check_snapshot(self, node_id: str, index: int, data: bytes) -> None:
        h = hashlib.blake2b(data, digest_size=16).digest()
        seen = self.snapshots.setdefault(index, h)
        assert seen == h, f"State Machine Safety: {node_id}'s snapshot at {index} differs"

    def _check_committed(self, node_id: str, index: int, digest: tuple[int, int, bytes]) -> None:
        seen = self.committed.setdefault(index, digest)
        assert seen == digest, f"State Machine Safety: {node_id} committed {digest[:2]} at {index}, others {seen[:2]}"
        self.commit_max = max(self.commit_max, index)

    # --- after every event -----------------------------------------------------------------
    def check_after_event(self) -> None:
        for node in self.nodes:
            if not node.up:
                continue
            core = node.core
            log = core.log
            done = self._checked_commit.get(node.id, 0)
            if log.commit > done:
                for i in range(max(done, log.snapshot_index) + 1, log.commit + 1):
                    self._check_committed(node.id, i, _digest(log.entry(i)))
                self._checked_commit[node.id] = log.commit
            if core.role is Role.LEADER:
                prior = self.leader_by_term.setdefault(core.term, node.id)
                assert prior == node.id, f"Election Safety: {prior} and {node.id} both lead term {core.term}"
                if self._leader_seen.get(node.id) != core.term:
                    self._leader_seen[node.id] = core.term
                    self._check_leader_completeness(node)

    def _check_leader_completeness(self, node: Any) -> None:
        log = node.core.log
        for i in range(log.snapshot_index + 1, self.commit_max + 1):
            digest = self.committed.get(i)
            if digest is None:
                continue
            assert i <= log.last_index(), f"Leader Completeness: leader {node.id} lacks committed index {i}"
            assert _digest(log.entry(i)) == digest, f"Leader Completeness: leader {node.id} differs at {i}"
