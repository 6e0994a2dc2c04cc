"""SimRaftNode: the real RaftCore + RaftStorage + MetadataState wired to simulated I/O.

Owns: one simulated metadata node: its core, its durable record log (`MemRecordLog`, which
survives crashes), its state machine, its pending client operations, and the Ready cycle:

    step/tick/propose/read  ->  core.ready()  ->  storage.save(sync=False)
        -> (after a random fsync delay) storage.sync() -> send messages -> restore snapshot /
           apply committed entries -> serve reads -> core.advance() -> compact if due

Inputs that arrive while a Ready waits for its fsync are queued (bounded: `inbox_count_max`;
beyond it they are dropped, as a full socket buffer would). `crash()` loses everything but the
durable records (the log may keep a torn prefix of the unsynced batch); `restart()` re-runs
recovery. Observers (checkers) get callbacks: on_persist(node, entries), on_apply(node, entry),
on_snapshot(node, index, bytes).
Invariant: nothing is stepped between ready() and advance() (RaftCore asserts it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

from qnode.metadata.raft.core import RaftConfig, RaftCore, Role
from qnode.metadata.raft.memlog import MemRecordLog
from qnode.metadata.raft.messages import ConfChange, Entry, EntryKind, ReadState
from qnode.metadata.raft.storage import RaftStorage
from qnode.metadata.state import ApplyResult, MetadataState
from qnode.protocol.errors import QnodeError
from qnode.wal.fs import MemFs
from qnode.wal.log import SegmentedLog
from tests.sim.harness import EventHandle, Simulation
from tests.sim.network import SimNetwork

inbox_count_max = 10_000
proposal_timeout_ns = 3_000_000_000   # a proposal still unresolved after this is reported unknown


@dataclass(frozen=True, slots=True)
class OpOutcome:
    """What a client learns: `result` (ApplyResult or a read value), or `error` (definite: the op
    had no effect), or neither with `unknown=True` (the op may or may not have taken effect)."""
    result: Any = None
    error: QnodeError | None = None
    unknown: bool = False


Callback = Callable[[OpOutcome], None]


class SimRaftNode:
    def __init__(self, sim: Simulation, net: SimNetwork, node_id: str, peers: tuple[str, ...],
                 config: RaftConfig, tick_ns: int, fsync_delay_ns_max: int, compact_every_count: int,
                 observer: Any, disk: str = "mem") -> None:
        self.sim = sim
        self.net = net
        self.id = node_id
        self.peers = peers
        self.config = config
        self.tick_ns = tick_ns
        self.fsync_delay_ns_max = fsync_delay_ns_max
        self.compact_every_count = compact_every_count
        self.observer = observer
        self.rng = sim.derive_rng(f"node/{node_id}")
        # "mem": the record-level stand-in; "wal": the real SegmentedLog over MemFs, whose crash
        # may tear pages out of order (the WAL's recovery must cut them).
        self.disk_kind = disk
        self.fs = MemFs() if disk == "wal" else None
        self.disk: Any = MemRecordLog() if disk == "mem" else None
        self.up = False
        self.incarnation = 0
        self.core: RaftCore | None = None
        self.storage: RaftStorage | None = None
        self.state = MetadataState()
        self._inbox: list[tuple] = []
        self._busy = False
        self._tick_handle: EventHandle | None = None
        self._proposals: dict[int, tuple[int, Callback, int]] = {}   # index -> (term, callback, deadline)
        self._reads: dict[int, tuple[Callable[[MetadataState], Any], Callback]] = {}
        self._read_ready: list[tuple[ReadState, Callable[[MetadataState], Any], Callback]] = []
        self._read_seq = 0
        self.dropped_inbox_count = 0
        net.register(node_id, self._on_packet)
        net.set_up(node_id, False)

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        assert not self.up
        self.incarnation += 1
        if self.fs is not None:
            self.disk = SegmentedLog.open(self.fs, "/raft", cluster_id=1, node_id=int(self.id.lstrip("n")))
        self.storage = RaftStorage(self.disk)
        restored = self.storage.load()
        core_rng = random.Random(self.rng.getrandbits(64))
        self.core = RaftCore(self.id, self.peers, core_rng, self.config, restored)
        self.state = MetadataState.restore(restored.snapshot.data) if restored.snapshot else MetadataState()
        self.observer.on_restart(self)
        self.up = True
        self._busy = False
        self._inbox = []
        self.net.set_up(self.id, True)
        self._schedule_tick()
        self.sim.record(self.id, f"start incarnation={self.incarnation} {self.core.status().line()}")

    def crash(self, tear_probability: float) -> None:
        assert self.up
        self.up = False
        self.net.set_up(self.id, False)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if self.fs is not None:
            self.fs.crash(self.rng)
        else:
            self.disk.crash(self.rng, tear_probability)
        proposals, self._proposals = self._proposals, {}
        reads, self._reads = self._reads, {}
        ready_reads, self._read_ready = self._read_ready, []
        self.core = None
        self.sim.record(self.id, f"crash durable_lsn={self.disk.durable_lsn}")
        for index in sorted(proposals):
            proposals[index][1](OpOutcome(unknown=True))
        for ctx in sorted(reads):
            reads[ctx][1](OpOutcome(error=QnodeError("node crashed")))
        for _rs, _fn, cb in ready_reads:
            cb(OpOutcome(error=QnodeError("node crashed")))

    def _schedule_tick(self) -> None:
        inc = self.incarnation
        self._tick_handle = self.sim.after(self.tick_ns, lambda: self._on_tick(inc))

    # --- inputs ----------------------------------------------------------------------------
    def _on_tick(self, incarnation: int) -> None:
        if not self.up or incarnation != self.incarnation:
            return
        self._schedule_tick()
        self._expire_proposals()
        self._input(("tick",))

    def _on_packet(self, src: str, msg: Any) -> None:
        if self.up:
            self._input(("msg", msg))

    def propose(self, data: bytes, cb: Callback, kind: EntryKind = EntryKind.NORMAL) -> None:
        """Client entry point; the callback runs exactly once (maybe synchronously)."""
        if not self.up:
            cb(OpOutcome(error=QnodeError("node down")))
            return
        self._input(("propose", data, cb, kind))

    def read(self, fn: Callable[[MetadataState], Any], cb: Callback) -> None:
        if not self.up:
            cb(OpOutcome(error=QnodeError("node down")))
            return
        self._input(("read", fn, cb))

    def _input(self, item: tuple) -> None:
        if self._busy:
            if len(self._inbox) >= inbox_count_max:
                self.dropped_inbox_count += 1
                if item[0] in ("propose", "read"):
                    item[2](OpOutcome(error=QnodeError("inbox full")))
                return
            self._inbox.append(item)
            return
        self._handle(item)
        self._pump()

    def _handle(self, item: tuple) -> None:
        core = self.core
        assert core is not None
        kind = item[0]
        if kind == "tick":
            core.tick()
        elif kind == "msg":
            core.step(item[1])
        elif kind == "propose":
            _, data, cb, entry_kind = item
            try:
                index, term = core.propose(data, entry_kind)
            except QnodeError as exc:
                cb(OpOutcome(error=exc))
                return
            stale = self._proposals.pop(index, None)
            if stale is not None:
                # Our older entry at this index was truncated without being replaced (a new leader's
                # log was shorter). It may still commit through another node's log: unknown.
                assert stale[0] < term, (stale, term)
                stale[1](OpOutcome(unknown=True))
            self._proposals[index] = (term, cb, self.sim.now_ns + proposal_timeout_ns)
        elif kind == "read":
            _, fn, cb = item
            self._read_seq += 1
            ctx = self._read_seq
            try:
                core.read_index(ctx)
            except QnodeError as exc:
                cb(OpOutcome(error=exc))
                return
            self._reads[ctx] = (fn, cb)
        else:
            assert False, item

    # --- the Ready cycle -------------------------------------------------------------------
    def _pump(self) -> None:
        core = self.core
        assert core is not None
        if self._busy:
            return
        was_leader = core.role is Role.LEADER
        rd = core.ready()
        if rd is None:
            self._after_role_change(was_leader)
            return
        self._busy = True
        assert self.storage is not None
        self.storage.save(rd.hard_state, rd.snapshot, rd.entries, sync=False)
        self.observer.on_persist(self, rd.entries)
        delay = self.rng.randint(0, self.fsync_delay_ns_max) if (rd.entries or rd.hard_state) else 0
        inc = self.incarnation
        self.sim.after(delay, lambda: self._finish_ready(inc, rd))

    def _finish_ready(self, incarnation: int, rd: Any) -> None:
        if not self.up or incarnation != self.incarnation:
            return
        core = self.core
        assert core is not None and self.storage is not None
        self.storage.sync()
        for msg in rd.messages:
            self.net.send(self.id, msg.dst, msg)
        if rd.snapshot is not None:
            self.state = MetadataState.restore(rd.snapshot.data)
            assert self.state.applied_index == rd.snapshot.index, (self.state.applied_index, rd.snapshot.index)
            self.observer.on_snapshot_restore(self, rd.snapshot)
            self._fail_proposals_upto(rd.snapshot.index)
        for entry in rd.committed:
            self._apply(entry)
        for rs in rd.read_states:
            fn_cb = self._reads.pop(rs.ctx, None)
            if fn_cb is not None:
                self._read_ready.append((rs, fn_cb[0], fn_cb[1]))
        self._serve_reads()
        core.advance(rd)
        self._maybe_compact()
        self._busy = False
        self.sim.record(self.id, core.status().line())
        # Drain what arrived meanwhile (bounded: the inbox is), then maybe another Ready.
        inbox, self._inbox = self._inbox, []
        for item in inbox:
            self._handle(item)
        self._pump()

    def _apply(self, entry: Entry) -> None:
        self.observer.on_apply(self, entry)
        result: ApplyResult | None = None
        if entry.kind is EntryKind.NORMAL:
            result = self.state.apply(entry.index, entry.data)
        else:
            self.state.skip(entry.index)
            if entry.kind is EntryKind.CONF_CHANGE:
                self.sim.record(self.id, f"conf applied {ConfChange.decode(entry.data)} at {entry.index}")
        pending = self._proposals.pop(entry.index, None)
        if pending is not None:
            term, cb, _deadline = pending
            if term == entry.term:
                cb(OpOutcome(result=result))
            else:
                cb(OpOutcome(error=QnodeError("proposal superseded by another leader's entry")))

    def _fail_proposals_upto(self, index: int) -> None:
        # A snapshot jumped over these indexes: we cannot tell whether ours committed.
        for i in sorted(self._proposals):
            if i <= index:
                _term, cb, _deadline = self._proposals.pop(i)
                cb(OpOutcome(unknown=True))

    def _expire_proposals(self) -> None:
        # The entry may still commit later; the proposer just stops waiting (outcome unknown).
        now = self.sim.now_ns
        for i in sorted(self._proposals):
            if self._proposals[i][2] <= now:
                _term, cb, _deadline = self._proposals.pop(i)
                cb(OpOutcome(unknown=True))

    def _serve_reads(self) -> None:
        keep = []
        for rs, fn, cb in self._read_ready:
            if self.state.applied_index >= rs.index:
                cb(OpOutcome(result=fn(self.state)))
            else:
                keep.append((rs, fn, cb))
        self._read_ready = keep

    def _after_role_change(self, was_leader: bool) -> None:
        core = self.core
        assert core is not None
        if was_leader and core.role is not Role.LEADER:
            pass
        if core.role is not Role.LEADER and self._reads:
            # Leadership lost: these ReadIndex requests will never be confirmed.
            reads, self._reads = self._reads, {}
            for ctx in sorted(reads):
                reads[ctx][1](OpOutcome(error=QnodeError("leadership lost")))

    def _maybe_compact(self) -> None:
        core = self.core
        assert core is not None and self.storage is not None
        applied = core.log.applied
        if applied - core.log.snapshot_index >= self.compact_every_count:
            assert self.state.applied_index == applied, (self.state.applied_index, applied)
            data = self.state.snapshot()
            snap = core.compact(applied, data)
            self.storage.save_snapshot(snap)
            self.observer.on_compact(self, snap)

    def status_line(self) -> str:
        if not self.up or self.core is None:
            return f"{self.id} down"
        return self.core.status().line()
