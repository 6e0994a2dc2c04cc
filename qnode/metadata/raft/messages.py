"""Raft wire messages, log entries, snapshots and hard state: frozen, slotted dataclasses.

Owns: the vocabulary between RaftCore instances and between the core and its driver. Every type is
immutable and validates itself when built; callers dispatch on `type(msg)`. Node ids are strings.
Encoding to msgpack (for the TCP transport and the WAL) lives in `codec.py`, not here.

Pairs (Raft paper, Ongaro & Ousterhout 2014, fig. 2; pre-vote from Ongaro's dissertation §9.6):
  RequestVote / RequestVoteResponse      (pre_vote=True for the pre-vote phase)
  AppendEntries / AppendEntriesResponse  (also answers InstallSnapshot)
  Heartbeat / HeartbeatResponse          (carries commit and the ReadIndex context)
  InstallSnapshot                        (answered by AppendEntriesResponse)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class EntryKind(IntEnum):
    NORMAL = 0        # an application command (opaque bytes)
    NOOP = 1          # appended by every new leader (Raft §8) so it can commit in its own term
    CONF_CHANGE = 2   # data is an encoded ConfChange (dissertation §4.1, one server at a time)


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    kind: EntryKind
    data: bytes

    def __post_init__(self) -> None:
        assert self.term >= 1, self
        assert self.index >= 1, self
        assert isinstance(self.data, bytes)


class ConfChangeOp(IntEnum):
    ADD_VOTER = 0
    REMOVE_VOTER = 1


@dataclass(frozen=True, slots=True)
class ConfChange:
    """Add or remove one voter. `voters` is the resulting configuration, filled in by the leader
    when it proposes the change, so a node that never saw the bootstrap configuration (a joiner
    catching up from an empty log) still learns the full voter set from the entry."""
    op: ConfChangeOp
    node_id: str
    voters: tuple[str, ...] = ()

    def encode(self) -> bytes:
        return ":".join([str(int(self.op)), self.node_id, *self.voters]).encode()

    @staticmethod
    def decode(data: bytes) -> "ConfChange":
        op, node, *voters = data.decode().split(":")
        return ConfChange(ConfChangeOp(int(op)), node, tuple(voters))

    def resolve(self, voters: tuple[str, ...]) -> "ConfChange":
        """This change with `voters` set to its result when applied to `voters`."""
        if self.op is ConfChangeOp.ADD_VOTER:
            result = tuple(sorted(set(voters) | {self.node_id}))
        else:
            result = tuple(sorted(v for v in voters if v != self.node_id))
        return ConfChange(self.op, self.node_id, result)

    def apply(self, voters: tuple[str, ...]) -> tuple[str, ...]:
        return self.voters if self.voters else self.resolve(voters).voters

    def __str__(self) -> str:
        return f"{self.op.name.lower()}({self.node_id})"


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before any message that depends on it is sent (Raft fig. 2)."""
    term: int = 0
    vote: str | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    index: int              # last index the snapshot covers
    term: int               # term of that entry
    voters: tuple[str, ...] # configuration as of `index` (dissertation §5.1)
    data: bytes             # the state machine's snapshot

    def __post_init__(self) -> None:
        assert self.index >= 0
        assert self.term >= 0
        assert tuple(sorted(self.voters)) == self.voters


@dataclass(frozen=True, slots=True)
class RequestVote:
    term: int
    src: str
    dst: str
    last_index: int
    last_term: int
    pre_vote: bool


@dataclass(frozen=True, slots=True)
class RequestVoteResponse:
    term: int
    src: str
    dst: str
    granted: bool
    pre_vote: bool


@dataclass(frozen=True, slots=True)
class AppendEntries:
    term: int
    src: str
    dst: str
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int

    def __post_init__(self) -> None:
        for offset, e in enumerate(self.entries):
            assert e.index == self.prev_index + 1 + offset, (self.prev_index, e)


@dataclass(frozen=True, slots=True)
class AppendEntriesResponse:
    term: int
    src: str
    dst: str
    success: bool
    index: int              # success: highest index known to match; reject: the rejected prev_index
    hint_index: int = 0     # reject: follower's suggested probe point (§5.3 optimisation)
    hint_term: int = 0      # reject: term of the follower's entry at hint_index (0 if none)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    term: int
    src: str
    dst: str
    commit: int             # min(follower match, leader commit): never beyond what it holds
    ctx: int                # ReadIndex round (0: none)


@dataclass(frozen=True, slots=True)
class HeartbeatResponse:
    term: int
    src: str
    dst: str
    ctx: int


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    term: int
    src: str
    dst: str
    snapshot: Snapshot


Message = (RequestVote | RequestVoteResponse | AppendEntries | AppendEntriesResponse | Heartbeat
           | HeartbeatResponse | InstallSnapshot)
MESSAGE_TYPES = (RequestVote, RequestVoteResponse, AppendEntries, AppendEntriesResponse, Heartbeat,
                 HeartbeatResponse, InstallSnapshot)


@dataclass(frozen=True, slots=True)
class ReadState:
    """A ReadIndex answer: the read with `ctx` may be served once applied >= index (§6.4)."""
    ctx: int
    index: int
