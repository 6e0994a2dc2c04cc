"""RaftCore: the Raft consensus algorithm as pure logic (sans-IO, etcd-raft style).

Owns: one node's Raft state: role, term, vote, log, commit/applied indexes, configuration
(voters), per-follower progress, pending ReadIndex requests. It never touches sockets, files,
clocks, asyncio or the global random: time arrives as `tick()` calls, randomness from the injected
`random.Random`, and I/O leaves as a `Ready`.

Driving it (the order is the contract; see etcd-raft's README and driver.py):

    core.step(msg)          # an inbound message        } any number of these,
    core.tick()             # one logical clock tick    } then:
    core.propose(data)      # leader only; -> (index, term); raises NotLeader / Busy
    core.read_index(ctx)    # leader only; a ReadState(ctx, index) appears in a later Ready
    rd = core.ready()       # None if there is nothing to do
    1. persist rd.snapshot (if any), rd.entries and rd.hard_state, and fsync them
    2. send rd.messages (they may depend on step 1: votes, append acks)
    3. restore the state machine from rd.snapshot (if any), then apply rd.committed in order
    4. serve rd.read_states once applied >= ReadState.index
    core.advance(rd)        # nothing may be stepped between ready() and advance()

Safety rules implemented here, citing Ongaro & Ousterhout, "In Search of an Understandable
Consensus Algorithm" (2014) and Ongaro's dissertation (2014):
  §5.1  a higher term always wins; a stale-term message is rejected or answered with our term.
  §5.2  randomized election timeouts in [election_ticks, 2*election_ticks).
  §5.3  AppendEntries consistency check on (prev_index, prev_term); a conflicting suffix is
        truncated; rejections carry a hint (index, term) for fast backtracking.
  §5.4.1 votes only for candidates whose log is at least as up-to-date.
  §5.4.2 a leader commits only entries of its own term by counting replicas.
  §7    snapshots: the log prefix is compacted; lagging followers get InstallSnapshot.
  §8 / dissertation §6.4: every new leader appends a no-op; ReadIndex serves linearizable reads
        after confirming leadership with a heartbeat round.
  dissertation §4.1: single-server membership changes; a configuration is used as soon as it is
        in the log; at most one uncommitted change; the leader's first entry of its term must
        commit before it proposes one (the fix for the single-server change bug).
  dissertation §4.2.2: a leader removed from the configuration steps down once it commits.
  dissertation §9.6: pre-vote; §6.2 / §4.2.3: check-quorum, and followers that heard from a
        leader within the minimum election timeout ignore vote requests.
Durability: term, vote and entries reach `Ready.hard_state` / `Ready.entries`, and every message
that depends on them is in the same Ready, which the driver sends only after the fsync.
The leader counts its own log toward commit only up to `log.stable` (what it has persisted).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from qnode import limits
from qnode.metadata.raft.log import RaftLog
from qnode.metadata.raft.messages import (
    AppendEntries, AppendEntriesResponse, ConfChange, Entry, EntryKind, HardState, Heartbeat,
    HeartbeatResponse, InstallSnapshot, Message, ReadState, RequestVote, RequestVoteResponse,
    Snapshot,
)
from qnode.protocol.errors import Busy, InvalidParameter, NotLeader


class Rng(Protocol):
    """What the core needs from the injected `random.Random(seed)` (never the global random)."""

    def randrange(self, stop: int) -> int: ...


class Role(Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class ProgressState(Enum):
    PROBE = "probe"           # one append at a time until the match point is found
    REPLICATE = "replicate"   # pipelined appends, up to inflight_appends_max
    SNAPSHOT = "snapshot"     # an InstallSnapshot is outstanding


@dataclass(frozen=True, slots=True)
class RaftConfig:
    election_ticks: int = limits.raft_election_ticks          # minimum election timeout (§5.2)
    heartbeat_ticks: int = limits.raft_heartbeat_ticks        # leader heartbeat interval
    append_entries_count_max: int = limits.raft_append_entries_count_max
    append_size_max: int = limits.raft_append_size_max        # at least one entry is always sent
    inflight_appends_max: int = limits.raft_inflight_appends_max   # per follower
    uncommitted_size_max: int = limits.raft_uncommitted_size_max   # then proposals get Busy
    entry_size_max: int = limits.raft_entry_size_max          # one proposal's bytes
    apply_count_max: int = 256          # committed entries handed out per Ready
    stall_heartbeats_max: int = 3       # heartbeat acks without progress before re-probing
    pre_vote: bool = True
    check_quorum: bool = True

    def validate(self) -> list[str]:
        problems = []
        if self.heartbeat_ticks < 1:
            problems.append("heartbeat_ticks must be >= 1")
        if self.election_ticks <= self.heartbeat_ticks:
            problems.append("election_ticks must exceed heartbeat_ticks")
        for name in ("append_entries_count_max", "append_size_max", "inflight_appends_max",
                     "uncommitted_size_max", "entry_size_max", "apply_count_max", "stall_heartbeats_max"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1")
        if self.uncommitted_size_max < self.entry_size_max:
            problems.append("uncommitted_size_max must be >= entry_size_max")
        return problems


@dataclass(slots=True)
class Progress:
    match: int = 0
    next: int = 1
    state: ProgressState = ProgressState.PROBE
    probe_sent: bool = False
    inflight: deque = field(default_factory=deque)   # last index of each unacked append
    pending_snapshot: int = 0
    recent_active: bool = False
    stall_count: int = 0
    commit_sent: int = 0


@dataclass(slots=True)
class _PendingRead:
    ctx: int
    index: int
    round: int
    acks: set


@dataclass(frozen=True, slots=True)
class Ready:
    hard_state: HardState | None         # persist if not None
    snapshot: Snapshot | None            # a received snapshot: persist, then restore the state machine
    entries: tuple[Entry, ...]           # persist; entries[0].index may overwrite a suffix
    messages: tuple[Message, ...]        # send after persisting
    committed: tuple[Entry, ...]         # apply in order after persisting
    read_states: tuple[ReadState, ...]   # serve once applied >= index

    def is_empty(self) -> bool:
        return (self.hard_state is None and self.snapshot is None and not self.entries
                and not self.messages and not self.committed and not self.read_states)


@dataclass(frozen=True, slots=True)
class Status:
    node_id: str
    role: Role
    term: int
    leader: str | None
    commit: int
    applied: int
    first_index: int
    last_index: int
    voters: tuple[str, ...]

    def line(self) -> str:
        return (f"{self.node_id} {self.role.value[:4]} t={self.term} lead={self.leader or '-'} "
                f"commit={self.commit} applied={self.applied} log=[{self.first_index},{self.last_index}] "
                f"voters={','.join(self.voters)}")


@dataclass(frozen=True, slots=True)
class Restored:
    """What a node recovered from its storage at start (see storage.py)."""
    hard_state: HardState = HardState()
    snapshot: Snapshot | None = None
    entries: tuple[Entry, ...] = ()


class RaftCore:
    def __init__(self, node_id: str, peers: tuple[str, ...] | list[str], rng: Rng,
                 config: RaftConfig | None = None, restored: Restored | None = None) -> None:
        """`peers` is the bootstrap configuration (including node_id) used only when storage is
        empty; a node joining an existing cluster passes () and waits to be contacted."""
        self.id = node_id
        self.rng = rng
        self.config = config or RaftConfig()
        problems = self.config.validate()
        assert not problems, problems
        restored = restored or Restored()
        snap = restored.snapshot
        self.log = RaftLog(snap.index if snap else 0, snap.term if snap else 0,
                           list(restored.entries), restored.hard_state.commit)
        self._snapshot: Snapshot | None = snap
        # Conf entries in the log, newest last, plus the base config from the snapshot/bootstrap.
        self._base_voters: tuple[str, ...] = snap.voters if snap else tuple(sorted(peers))
        self._conf_entries: list[tuple[int, tuple[str, ...]]] = []
        voters = self._base_voters
        for e in self.log.entries:
            if e.kind is EntryKind.CONF_CHANGE:
                voters = ConfChange.decode(e.data).apply(voters)
                self._conf_entries.append((e.index, voters))
        self.voters: tuple[str, ...] = voters
        # A torn write can leave entries of a term whose hard state never reached disk; the node
        # never voted in that term durably, so taking the term from the log is safe.
        hs = restored.hard_state
        self.term = max(hs.term, self.log.last_term())
        self.vote: str | None = hs.vote if hs.term == self.term else None
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_ticks = 0
        self._reset_randomized_timeout()
        self._votes: dict[str, bool] = {}
        self.progress: dict[str, Progress] = {}
        self._outbox: list[Message] = []
        self._read_states: list[ReadState] = []
        self._pending_reads: list[_PendingRead] = []
        self._reads_awaiting_commit: list[int] = []
        self._read_round = 0
        self._uncommitted_size = 0
        self._pending_conf_index = 0
        self._term_start_index = 0
        self._pending_snapshot: Snapshot | None = None
        self._prev_hard_state = HardState(self.term, self.vote, self.log.commit)
        self._in_ready: Ready | None = None
        self._check_invariants()

    # --- public inputs ---------------------------------------------------------------------
    def tick(self) -> None:
        assert self._in_ready is None, "tick between ready() and advance()"
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._tick_election()
        self._check_invariants()

    def step(self, msg: Message) -> None:
        """Handle one inbound message. Messages for another node are a caller bug (assert)."""
        assert self._in_ready is None, "step between ready() and advance()"
        assert msg.dst == self.id, (msg, self.id)
        if msg.src == self.id:
            return
        self._step(msg)
        self._check_invariants()

    def propose(self, data: bytes, kind: EntryKind = EntryKind.NORMAL) -> tuple[int, int]:
        """Append a command to the leader's log. Returns (index, term); the command is committed
        when an entry with that index *and* term is applied. Raises NotLeader (with leader_hint),
        Busy (uncommitted bytes bound, or a conf change already pending), InvalidParameter."""
        assert self._in_ready is None, "propose between ready() and advance()"
        if self.role is not Role.LEADER:
            raise NotLeader(leader_hint=self.leader)
        if len(data) > self.config.entry_size_max:
            raise InvalidParameter(f"raft entry of {len(data)} bytes exceeds {self.config.entry_size_max}")
        if self._uncommitted_size > 0 and self._uncommitted_size + len(data) > self.config.uncommitted_size_max:
            raise Busy("too many uncommitted raft bytes", retry_after_ms=50)
        if kind is EntryKind.CONF_CHANGE:
            # Dissertation §4.1: one change at a time, and only after this term's first entry commits.
            if self._pending_conf_index > self.log.commit:
                raise Busy("a configuration change is in progress", retry_after_ms=50)
            change = ConfChange.decode(data).resolve(self.voters)
            if not change.voters:
                raise InvalidParameter("cannot remove the last voter")
            data = change.encode()
        entry = self._append_as_leader(kind, data)
        if kind is EntryKind.CONF_CHANGE:
            self._pending_conf_index = entry.index
        self._broadcast_append()
        self._check_invariants()
        return entry.index, entry.term

    def propose_conf_change(self, change: ConfChange) -> tuple[int, int]:
        return self.propose(change.encode(), EntryKind.CONF_CHANGE)

    def read_index(self, ctx: int) -> None:
        """Start a linearizable read (dissertation §6.4). A ReadState(ctx, index) appears in a
        later Ready once leadership is confirmed; if leadership is lost first, it never appears
        (callers time out or fail on role change). Raises NotLeader."""
        assert self._in_ready is None
        if self.role is not Role.LEADER:
            raise NotLeader(leader_hint=self.leader)
        if self.log.commit < self._term_start_index:
            # §6.4 step 1: the leader must first commit an entry of its own term.
            self._reads_awaiting_commit.append(ctx)
        else:
            self._start_read(ctx)
        self._check_invariants()

    def compact(self, index: int, data: bytes) -> Snapshot:
        """Take a snapshot at applied index `index` with state machine bytes `data` and drop the
        log prefix (§7). The caller persists the returned snapshot (storage.save_snapshot)."""
        assert self._in_ready is None
        assert self.log.snapshot_index < index <= self.log.applied, (index, self.log.applied)
        term = self.log.term(index)
        assert term is not None
        snap = Snapshot(index, term, self._voters_at(index), data)
        self.log.compact(index)
        self._snapshot = snap
        self._base_voters = snap.voters
        self._conf_entries = [(i, v) for i, v in self._conf_entries if i > index]
        self._check_invariants()
        return snap

    # --- outputs ---------------------------------------------------------------------------
    def has_ready(self) -> bool:
        return (self._hard_state() != self._prev_hard_state or self._pending_snapshot is not None
                or self.log.stable < self.log.last_index() or bool(self._outbox)
                or self.log.applied < self.log.commit or bool(self._read_states))

    def ready(self) -> Ready | None:
        assert self._in_ready is None, "ready() twice without advance()"
        if not self.has_ready():
            return None
        hs = self._hard_state()
        commit_to = min(self.log.commit, self.log.applied + self.config.apply_count_max)
        committed = tuple(self.log.entry(i) for i in range(self.log.applied + 1, commit_to + 1))
        rd = Ready(
            hard_state=hs if hs != self._prev_hard_state else None,
            snapshot=self._pending_snapshot,
            entries=tuple(self.log.unstable()),
            messages=tuple(self._outbox),
            committed=committed,
            read_states=tuple(self._read_states),
        )
        self._outbox = []
        self._read_states = []
        self._in_ready = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """The driver finished persisting, sending and applying `rd`."""
        assert self._in_ready is rd, "advance() with a Ready not returned by ready()"
        self._in_ready = None
        if rd.hard_state is not None:
            self._prev_hard_state = rd.hard_state
        if rd.snapshot is not None:
            self._pending_snapshot = None
        if rd.entries:
            self.log.stable = rd.entries[-1].index
        if rd.committed:
            self.log.applied = rd.committed[-1].index
        if self.role is Role.LEADER:
            # The leader's own persisted log now counts toward the quorum (§5.4.2 via stable).
            own = self.progress.get(self.id)
            if own is not None:
                own.match = self.log.stable
                own.next = own.match + 1
            if self._maybe_commit():
                self._broadcast_append()   # followers learn the new commit index promptly
            self._maybe_step_down_removed()
        self._check_invariants()

    def status(self) -> Status:
        return Status(self.id, self.role, self.term, self.leader, self.log.commit, self.log.applied,
                      self.log.first_index(), self.log.last_index(), self.voters)

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    # --- roles (only these change self.role) -----------------------------------------------
    def _become_follower(self, term: int, leader: str | None) -> None:
        was_leader = self.role is Role.LEADER
        if term > self.term:
            self.term = term
            self.vote = None
        self.role = Role.FOLLOWER
        self.leader = leader
        self.election_elapsed = 0
        self._reset_randomized_timeout()
        if was_leader:
            self.progress = {}
            self._pending_reads = []
            self._reads_awaiting_commit = []
            self._uncommitted_size = 0

    def _become_pre_candidate(self) -> None:
        assert self.role is not Role.LEADER
        self.role = Role.PRE_CANDIDATE
        self.leader = None
        self._votes = {self.id: True}
        self.election_elapsed = 0
        self._reset_randomized_timeout()

    def _become_candidate(self) -> None:
        assert self.role is not Role.LEADER
        self.term += 1
        self.vote = self.id
        self.role = Role.CANDIDATE
        self.leader = None
        self._votes = {self.id: True}
        self.election_elapsed = 0
        self._reset_randomized_timeout()

    def _become_leader(self) -> None:
        assert self.role is Role.CANDIDATE
        assert self.vote == self.id
        self.role = Role.LEADER
        self.leader = self.id
        self.heartbeat_elapsed = 0
        self.election_elapsed = 0
        last = self.log.last_index()
        self.progress = {v: Progress(match=0, next=last + 1, recent_active=(v == self.id)) for v in self.voters}
        if self.id in self.progress:
            self.progress[self.id].match = self.log.stable
            self.progress[self.id].next = self.log.stable + 1
        self._uncommitted_size = 0
        self._pending_reads = []
        self._reads_awaiting_commit = []
        # Dissertation §4.1 bug fix: no conf change until this term's first entry commits.
        self._pending_conf_index = last + 1
        self._term_start_index = last + 1
        self._append_as_leader(EntryKind.NOOP, b"")   # §8
        self._broadcast_append()

    # --- ticks -----------------------------------------------------------------------------
    def _reset_randomized_timeout(self) -> None:
        # §5.2: randomized in [election, 2*election) to split votes rarely.
        n = self.config.election_ticks
        self.randomized_election_ticks = n + self.rng.randrange(n)

    def _promotable(self) -> bool:
        return self.id in self.voters

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self._promotable() and self.election_elapsed >= self.randomized_election_ticks:
            self.election_elapsed = 0
            self._campaign()

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_ticks:
            self.election_elapsed = 0
            if self.config.check_quorum and not self._quorum_active():
                # §6.2 check-quorum: a leader cut off from a majority steps down.
                self._become_follower(self.term, None)
                return
            for node_id, pr in self.progress.items():
                pr.recent_active = node_id == self.id
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            # Carry the newest ReadIndex round while reads wait, so a lost round is retried.
            self._broadcast_heartbeat(self._read_round if self._pending_reads else 0)

    def _quorum_active(self) -> bool:
        active = sum(1 for v in self.voters if v in self.progress and self.progress[v].recent_active)
        return active >= self._quorum()

    def _quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def _campaign(self) -> None:
        if self.config.pre_vote:
            self._become_pre_candidate()
            self._request_votes(pre_vote=True)
        else:
            self._become_candidate()
            self._request_votes(pre_vote=False)

    def _request_votes(self, pre_vote: bool) -> None:
        term = self.term + 1 if pre_vote else self.term
        if self._tally() is True:       # a single-voter cluster wins at once
            self._won_vote(pre_vote)
            return
        for v in self.voters:
            if v != self.id:
                self._send(RequestVote(term, self.id, v, self.log.last_index(), self.log.last_term(), pre_vote))

    def _tally(self) -> bool | None:
        granted = sum(1 for v in self.voters if self._votes.get(v) is True)
        rejected = sum(1 for v in self.voters if self._votes.get(v) is False)
        if granted >= self._quorum():
            return True
        if rejected >= self._quorum():
            return False
        return None

    def _won_vote(self, pre_vote: bool) -> None:
        if pre_vote:
            self._become_candidate()
            self._request_votes(pre_vote=False)
        else:
            self._become_leader()

    # --- step ------------------------------------------------------------------------------
    def _in_lease(self) -> bool:
        # Dissertation §4.2.3: ignore vote requests while a leader is believed alive.
        return (self.config.check_quorum and self.leader is not None
                and self.election_elapsed < self.config.election_ticks)

    def _step(self, msg: Message) -> None:
        if msg.term > self.term:
            if isinstance(msg, RequestVote):
                if self._in_lease():
                    # A leader (or a follower that heard from one recently) ignores disruptive
                    # votes; check-quorum makes a cut-off leader step down on its own.
                    return
                if not msg.pre_vote:   # a pre-vote never changes our term
                    self._become_follower(msg.term, None)
            elif isinstance(msg, RequestVoteResponse) and msg.pre_vote and msg.granted:
                pass       # granted pre-votes carry the future term; no change
            elif isinstance(msg, (AppendEntries, Heartbeat, InstallSnapshot)):
                self._become_follower(msg.term, msg.src)
            else:
                self._become_follower(msg.term, None)
        elif msg.term < self.term:
            if isinstance(msg, (AppendEntries, Heartbeat, InstallSnapshot)):
                # §5.1: tell a stale leader about the newer term (needed with pre-vote + check-quorum,
                # or a partitioned old leader would never learn it must step down).
                self._send(AppendEntriesResponse(self.term, self.id, msg.src, False, 0))
            elif isinstance(msg, RequestVote) and msg.pre_vote:
                self._send(RequestVoteResponse(self.term, self.id, msg.src, False, True))
            return

        if isinstance(msg, RequestVote):
            self._handle_request_vote(msg)
        elif self.role is Role.LEADER:
            self._step_leader(msg)
        elif self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            self._step_candidate(msg)
        else:
            self._step_follower(msg)

    def _handle_request_vote(self, msg: RequestVote) -> None:
        if msg.pre_vote:
            can_vote = msg.term > self.term
        else:
            can_vote = self.vote == msg.src or (self.vote is None and self.leader is None)
        if can_vote and self.log.is_up_to_date(msg.last_index, msg.last_term):
            if not msg.pre_vote:
                self.vote = msg.src          # persisted (hard state) before the response is sent
                self.election_elapsed = 0
            self._send(RequestVoteResponse(msg.term, self.id, msg.src, True, msg.pre_vote))
        else:
            self._send(RequestVoteResponse(self.term, self.id, msg.src, False, msg.pre_vote))

    def _step_candidate(self, msg: Message) -> None:
        if isinstance(msg, (AppendEntries, Heartbeat, InstallSnapshot)):
            self._become_follower(msg.term, msg.src)
            self._step_follower(msg)
        elif isinstance(msg, RequestVoteResponse):
            if msg.pre_vote != (self.role is Role.PRE_CANDIDATE):
                return
            self._votes.setdefault(msg.src, msg.granted)
            result = self._tally()
            if result is True:
                self._won_vote(msg.pre_vote)
            elif result is False:
                self._become_follower(self.term, None)

    def _step_follower(self, msg: Message) -> None:
        if isinstance(msg, AppendEntries):
            self.leader = msg.src
            self.election_elapsed = 0
            self._handle_append(msg)
        elif isinstance(msg, Heartbeat):
            self.leader = msg.src
            self.election_elapsed = 0
            assert msg.commit <= self.log.last_index(), (msg, self.log.last_index())
            if msg.commit > self.log.commit:
                self.log.commit = msg.commit
            self._send(HeartbeatResponse(self.term, self.id, msg.src, msg.ctx))
        elif isinstance(msg, InstallSnapshot):
            self.leader = msg.src
            self.election_elapsed = 0
            self._handle_snapshot(msg)

    def _handle_append(self, msg: AppendEntries) -> None:
        log = self.log
        if msg.prev_index < log.commit:
            # Everything up to commit already matches (§5.3 + Log Matching); ack what we have.
            self._send(AppendEntriesResponse(self.term, self.id, msg.src, True, log.commit))
            return
        if not log.matches(msg.prev_index, msg.prev_term):
            hint_index = min(msg.prev_index, log.last_index())
            hint_term = log.term(hint_index) or 0
            self._send(AppendEntriesResponse(self.term, self.id, msg.src, False, msg.prev_index,
                                             hint_index, hint_term))
            return
        for e in msg.entries:
            t = log.term(e.index)
            if t == e.term:
                continue
            if t is not None:
                assert e.index > log.commit, ("conflict at a committed index", e, log.commit)
                log.truncate_from(e.index)          # §5.3: delete the conflicting suffix
                self._conf_entries = [(i, v) for i, v in self._conf_entries if i < e.index]
                self.voters = self._conf_entries[-1][1] if self._conf_entries else self._base_voters
            self._append_entry(e)
        last_new = msg.prev_index + len(msg.entries)
        if msg.commit > log.commit:
            log.commit = max(log.commit, min(msg.commit, last_new))
        self._send(AppendEntriesResponse(self.term, self.id, msg.src, True, last_new))

    def _handle_snapshot(self, msg: InstallSnapshot) -> None:
        snap = msg.snapshot
        log = self.log
        if snap.index <= log.commit:
            self._send(AppendEntriesResponse(self.term, self.id, msg.src, True, log.commit))
            return
        if log.matches(snap.index, snap.term):
            # We already hold the snapshot's entries: just learn the commit point (etcd does the same).
            log.commit = snap.index
            self._send(AppendEntriesResponse(self.term, self.id, msg.src, True, snap.index))
            return
        # §7: discard the whole log and restore from the snapshot.
        log.restore(snap.index, snap.term)
        self._snapshot = snap
        self._pending_snapshot = snap
        self._base_voters = snap.voters
        self._conf_entries = []
        self.voters = snap.voters
        self._send(AppendEntriesResponse(self.term, self.id, msg.src, True, snap.index))

    def _step_leader(self, msg: Message) -> None:
        pr = self.progress.get(msg.src)
        if pr is None:
            return   # not (or no longer) in the configuration
        if isinstance(msg, AppendEntriesResponse):
            pr.recent_active = True
            if msg.success:
                self._handle_append_success(msg.src, pr, msg.index)
            else:
                self._handle_append_reject(msg.src, pr, msg)
        elif isinstance(msg, HeartbeatResponse):
            pr.recent_active = True
            if pr.state is ProgressState.PROBE:
                pr.probe_sent = False
            if pr.match < self.log.last_index():
                pr.stall_count += 1
                if pr.stall_count >= self.config.stall_heartbeats_max and pr.state is not ProgressState.PROBE:
                    # Appends (or a snapshot) were probably lost: start probing again.
                    self._to_probe(pr, pr.match + 1)
                self._send_append(msg.src)
            if msg.ctx:
                self._ack_reads(msg.src, msg.ctx)

    def _handle_append_success(self, node_id: str, pr: Progress, index: int) -> None:
        if index > pr.match:
            pr.match = index
            pr.stall_count = 0
        pr.next = max(pr.next, pr.match + 1)
        while pr.inflight and pr.inflight[0] <= pr.match:
            pr.inflight.popleft()
        if pr.state is ProgressState.PROBE:
            pr.state = ProgressState.REPLICATE
            pr.probe_sent = False
            pr.inflight.clear()
            pr.next = pr.match + 1
        elif pr.state is ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
            self._to_probe(pr, pr.match + 1)
            pr.state = ProgressState.REPLICATE
        if self._maybe_commit():
            self._broadcast_append()
        else:
            self._send_append(node_id)
        self._maybe_step_down_removed()

    def _handle_append_reject(self, node_id: str, pr: Progress, msg: AppendEntriesResponse) -> None:
        # Ignore stale rejections (§5.3 backtracking must only react to the current probe).
        if msg.index <= pr.match:
            return
        if pr.state is ProgressState.PROBE and msg.index != pr.next - 1:
            return
        if pr.state is ProgressState.SNAPSHOT:
            return
        if msg.hint_term > 0:
            next_index = self.log.find_conflict_by_term(msg.hint_index, msg.hint_term) + 1
        else:
            next_index = msg.hint_index + 1
        next_index = max(pr.match + 1, min(next_index, msg.index))
        self._to_probe(pr, next_index)
        self._send_append(node_id)

    def _to_probe(self, pr: Progress, next_index: int) -> None:
        pr.state = ProgressState.PROBE
        pr.probe_sent = False
        pr.inflight.clear()
        pr.pending_snapshot = 0
        pr.stall_count = 0
        pr.next = max(next_index, pr.match + 1)

    # --- leader replication ----------------------------------------------------------------
    def _append_as_leader(self, kind: EntryKind, data: bytes) -> Entry:
        entry = Entry(self.term, self.log.last_index() + 1, kind, data)
        self._append_entry(entry)
        self._uncommitted_size += len(data)
        return entry

    def _append_entry(self, entry: Entry) -> None:
        self.log.append(entry)
        if entry.kind is EntryKind.CONF_CHANGE:
            # Dissertation §4.1: a server uses the newest configuration in its log, committed or not.
            voters = ConfChange.decode(entry.data).apply(self.voters)
            self._conf_entries.append((entry.index, voters))
            self._set_voters(voters)

    def _set_voters(self, voters: tuple[str, ...]) -> None:
        self.voters = voters
        if self.role is Role.LEADER:
            for v in voters:
                if v not in self.progress:
                    self.progress[v] = Progress(match=0, next=self.log.last_index() + 1, recent_active=True)
            for v in sorted(self.progress):
                if v not in voters and v != self.id:
                    del self.progress[v]

    def _voters_at(self, index: int) -> tuple[str, ...]:
        voters = self._base_voters
        for i, v in self._conf_entries:
            if i <= index:
                voters = v
        return voters

    def _maybe_commit(self) -> bool:
        """§5.4.2: commit the highest index replicated on a quorum, if it is of the current term."""
        matches = sorted((self.progress[v].match if v in self.progress else 0 for v in self.voters),
                         reverse=True)
        if not matches:
            return False
        candidate = matches[self._quorum() - 1]
        if candidate <= self.log.commit or self.log.term(candidate) != self.term:
            return False
        for i in range(self.log.commit + 1, candidate + 1):
            self._uncommitted_size = max(0, self._uncommitted_size - len(self.log.entry(i).data))
        self.log.commit = candidate
        if self._reads_awaiting_commit and self.log.commit >= self._term_start_index:
            waiting, self._reads_awaiting_commit = self._reads_awaiting_commit, []
            for ctx in waiting:
                self._start_read(ctx)
        return True

    def _maybe_step_down_removed(self) -> None:
        # Dissertation §4.2.2: a leader not in the committed configuration steps down (after
        # its caller broadcast the commit index that includes the change).
        if self.role is Role.LEADER and self.id not in self.voters and self._pending_conf_index <= self.log.commit:
            self._become_follower(self.term, None)

    def _broadcast_append(self) -> None:
        if self.role is not Role.LEADER:
            return
        for v in sorted(self.progress):
            if v != self.id:
                self._send_append(v)

    def _send_append(self, to: str) -> None:
        pr = self.progress[to]
        if pr.state is ProgressState.SNAPSHOT:
            return
        if pr.state is ProgressState.PROBE and pr.probe_sent:
            return
        if pr.state is ProgressState.REPLICATE and len(pr.inflight) >= self.config.inflight_appends_max:
            return
        prev_index = pr.next - 1
        prev_term = self.log.term(prev_index)
        if prev_term is None:
            assert prev_index < self.log.snapshot_index or prev_index > self.log.last_index(), prev_index
            if prev_index > self.log.last_index():
                self._to_probe(pr, self.log.last_index() + 1)
                prev_index = pr.next - 1
                prev_term = self.log.term(prev_index)
                assert prev_term is not None
            else:
                self._send_snapshot(to, pr)
                return
        entries = self.log.slice(pr.next, self.log.last_index() + 1,
                                 self.config.append_entries_count_max, self.config.append_size_max)
        commit = self.log.commit
        if not entries and pr.state is ProgressState.REPLICATE and pr.commit_sent >= commit:
            return
        self._send(AppendEntries(self.term, self.id, to, prev_index, prev_term, tuple(entries), commit))
        pr.commit_sent = max(pr.commit_sent, commit)
        if pr.state is ProgressState.PROBE:
            pr.probe_sent = True
        elif entries:
            pr.next = entries[-1].index + 1
            pr.inflight.append(entries[-1].index)

    def _send_snapshot(self, to: str, pr: Progress) -> None:
        snap = self._snapshot
        assert snap is not None, "log compacted without a snapshot"
        pr.state = ProgressState.SNAPSHOT
        pr.pending_snapshot = snap.index
        pr.stall_count = 0
        self._send(InstallSnapshot(self.term, self.id, to, snap))

    def _broadcast_heartbeat(self, ctx: int) -> None:
        for v in sorted(self.progress):
            if v != self.id:
                pr = self.progress[v]
                self._send(Heartbeat(self.term, self.id, v, min(pr.match, self.log.commit), ctx))

    # --- ReadIndex (dissertation §6.4) -----------------------------------------------------
    def _start_read(self, ctx: int) -> None:
        if self._quorum() == 1 and self.id in self.voters:
            self._read_states.append(ReadState(ctx, self.log.commit))
            return
        self._read_round += 1
        acks = {self.id} if self.id in self.voters else set()
        self._pending_reads.append(_PendingRead(ctx, self.log.commit, self._read_round, acks))
        self._broadcast_heartbeat(self._read_round)

    def _ack_reads(self, node_id: str, round_: int) -> None:
        if node_id not in self.voters:
            return
        released = 0
        for i, read in enumerate(self._pending_reads):
            if read.round <= round_:
                read.acks.add(node_id)
            if len(read.acks) >= self._quorum():
                released = i + 1
        # A confirmed round also confirms every earlier read (leadership was held since then).
        for read in self._pending_reads[:released]:
            self._read_states.append(ReadState(read.ctx, read.index))
        del self._pending_reads[:released]

    # --- helpers ---------------------------------------------------------------------------
    def _send(self, msg: Message) -> None:
        self._outbox.append(msg)

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.log.commit)

    def _check_invariants(self) -> None:
        self.log.check()
        assert self.term >= self.log.last_term(), (self.term, self.log.last_term())
        assert self.role is not Role.LEADER or self.leader == self.id
        if self.role is Role.LEADER:
            assert self.vote == self.id, (self.vote, self.id)
            for node_id, pr in self.progress.items():
                assert pr.match < pr.next, (node_id, pr)
                assert pr.match <= self.log.last_index(), (node_id, pr)
                assert len(pr.inflight) <= self.config.inflight_appends_max
            assert self._uncommitted_size >= 0
        elif self.role is Role.CANDIDATE:
            assert self.vote == self.id
        else:
            assert not self.progress
        assert len(self._outbox) < 100_000, "outbox overflow: driver not draining"
