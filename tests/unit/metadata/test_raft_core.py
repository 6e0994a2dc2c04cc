"""RaftCore unit tests, each tied to a section of the Raft paper (Ongaro & Ousterhout 2014) or of
Ongaro's dissertation. Method: real RaftCore instances over the in-memory `raftnet.Net` (persist,
send, apply, advance in order), or a single core fed hand-built messages; assertions are on the
core's observable state and on the messages in its Ready.
"""

from __future__ import annotations

import random

import pytest

from qnode.metadata.raft.core import RaftConfig, RaftCore, Restored, Role
from qnode.metadata.raft.messages import (
    AppendEntries, AppendEntriesResponse, ConfChange, ConfChangeOp, Entry, EntryKind, HardState,
    Heartbeat, RequestVote, RequestVoteResponse,
)
from qnode.protocol.errors import Busy, ErrorCode, InvalidParameter, NotLeader
from tests.unit.metadata.raftnet import Net

IDS = ["n1", "n2", "n3"]


def e(term: int, index: int, data: bytes = b"x") -> Entry:
    return Entry(term, index, EntryKind.NORMAL, data)


def lone(node_id: str = "n1", term: int = 0, vote: str | None = None, entries: tuple[Entry, ...] = (),
         commit: int = 0, config: RaftConfig | None = None) -> RaftCore:
    restored = Restored(HardState(term, vote, commit), None, entries)
    return RaftCore(node_id, tuple(IDS), random.Random(1), config or RaftConfig(), restored)


def drain(core: RaftCore) -> list:
    out = []
    while (rd := core.ready()) is not None:
        out.extend(rd.messages)
        core.advance(rd)
    return out


# --- §5.1 terms -------------------------------------------------------------------------------
def test_follower_rejects_append_with_stale_term():
    core = lone(term=3)
    drain(core)
    core.step(AppendEntries(2, "n2", "n1", 0, 0, (e(2, 1),), 0))
    msgs = drain(core)
    assert core.log.last_index() == 0
    assert msgs == [AppendEntriesResponse(3, "n1", "n2", False, 0)]


def test_higher_term_message_converts_candidate_to_follower():
    core = lone(config=RaftConfig(pre_vote=False))
    core.tick()
    while core.role is Role.FOLLOWER:
        core.tick()
    assert core.role is Role.CANDIDATE
    drain(core)
    core.step(AppendEntries(core.term + 1, "n3", "n1", 0, 0, (), 0))
    assert core.role is Role.FOLLOWER
    assert core.leader == "n3"


# --- §5.2 elections ---------------------------------------------------------------------------
def test_election_timeout_is_randomized_within_range():
    cfg = RaftConfig(election_ticks=10)
    seen = set()
    for seed in range(50):
        core = RaftCore("n1", tuple(IDS), random.Random(seed), cfg)
        assert 10 <= core.randomized_election_ticks < 20
        seen.add(core.randomized_election_ticks)
    assert len(seen) > 3


def test_candidate_with_majority_becomes_the_only_leader():
    net = Net(IDS)
    net.elect("n1")
    roles = {i: c.role for i, c in net.cores.items()}
    assert roles == {"n1": Role.LEADER, "n2": Role.FOLLOWER, "n3": Role.FOLLOWER}
    assert {c.leader for c in net.cores.values()} == {"n1"}
    # §8: the new leader's no-op committed everywhere.
    assert all(c.log.commit == 1 for c in net.cores.values())


def test_vote_granted_at_most_once_per_term():
    core = lone(term=1)
    drain(core)
    core.step(RequestVote(2, "n2", "n1", 0, 0, False))
    core.step(RequestVote(2, "n3", "n1", 0, 0, False))
    msgs = drain(core)
    assert msgs == [RequestVoteResponse(2, "n1", "n2", True, False), RequestVoteResponse(2, "n1", "n3", False, False)]
    assert core.vote == "n2"


def test_voter_rejects_candidate_with_less_up_to_date_log():
    # §5.4.1: last term decides first, then length.
    core = lone(term=2, entries=(e(1, 1), e(2, 2)))
    drain(core)
    core.step(RequestVote(3, "n2", "n1", 5, 1, False))   # longer log, older last term
    core.step(RequestVote(4, "n3", "n1", 1, 2, False))   # same last term, shorter
    msgs = drain(core)
    assert [m.granted for m in msgs] == [False, False]
    assert core.vote is None


def test_vote_is_persisted_before_the_response_is_sent():
    core = lone(term=1)
    drain(core)
    core.step(RequestVote(2, "n2", "n1", 0, 0, False))
    rd = core.ready()
    assert rd.hard_state == HardState(2, "n2", 0)
    assert any(isinstance(m, RequestVoteResponse) and m.granted for m in rd.messages)
    core.advance(rd)


def test_restarted_node_keeps_its_vote():
    net = Net(IDS)
    net.cores["n1"].step(RequestVote(5, "n2", "n1", 0, 0, False))
    net.process("n1")
    net.crash("n1")
    core = net.cores["n1"]
    assert (core.term, core.vote) == (5, "n2")
    core.step(RequestVote(5, "n3", "n1", 9, 9, False))
    msgs = drain(core)
    assert msgs == [RequestVoteResponse(5, "n1", "n3", False, False)]


# --- §5.3 log replication ---------------------------------------------------------------------
def test_follower_rejects_append_whose_previous_entry_does_not_match():
    core = lone(term=2, entries=(e(1, 1),))
    drain(core)
    core.step(AppendEntries(2, "n2", "n1", 1, 2, (e(2, 2),), 0))
    msgs = drain(core)
    assert len(msgs) == 1
    assert msgs[0].success is False
    assert (msgs[0].index, msgs[0].hint_index, msgs[0].hint_term) == (1, 1, 1)
    assert core.log.last_index() == 1


def test_follower_truncates_conflicting_suffix():
    core = lone(term=2, entries=(e(1, 1), e(1, 2), e(1, 3)))
    drain(core)
    core.step(AppendEntries(2, "n2", "n1", 1, 1, (e(2, 2, b"new"),), 1))
    drain(core)
    assert [(x.index, x.term) for x in core.log.entries] == [(1, 1), (2, 2)]
    assert core.log.commit == 1


def test_duplicate_old_append_does_not_truncate():
    core = lone(term=2, entries=(e(2, 1), e(2, 2), e(2, 3)))
    drain(core)
    core.step(AppendEntries(2, "n2", "n1", 0, 0, (e(2, 1),), 0))
    drain(core)
    assert core.log.last_index() == 3


def test_leader_backtracks_to_the_match_point_and_repairs_a_divergent_follower():
    net = Net(IDS)
    net.elect("n1")
    net.isolate("n1")
    for i in range(5):
        net.cores["n1"].propose(b"stale%d" % i)    # only ever in n1's log
    net.stabilize()
    net.tick("n3", net.config.election_ticks)      # n3's leader lease on n1 expires
    net.elect("n2")                                 # n2 and n3 move on in a higher term
    for i in range(8):
        net.cores["n2"].propose(b"new%d" % i)
    net.stabilize()
    net.heal()
    for _ in range(2 * net.config.election_ticks):
        net.tick("n2", 1)
        net.tick("n1", 1)
        net.stabilize()
    logs = {i: [(x.index, x.term, x.data) for x in c.log.entries] for i, c in net.cores.items()}
    assert logs["n1"] == logs["n2"] == logs["n3"]
    assert not any(data.startswith(b"stale") for _i, _t, data in logs["n1"])
    assert net.cores["n1"].log.commit == net.cores["n2"].log.commit


def test_replicating_follower_is_reprobed_after_lost_appends():
    net = Net(IDS)
    net.elect("n1")
    net.isolate("n3")
    for i in range(10):
        net.cores["n1"].propose(b"a%d" % i)
    net.stabilize()
    net.heal()
    net.tick("n1", net.config.stall_heartbeats_max + 1)
    net.stabilize()
    assert net.cores["n3"].log.commit == 11


def test_leader_counts_its_own_entry_only_once_persisted():
    core = RaftCore("n1", ("n1",), random.Random(1))
    for _ in range(2 * core.config.election_ticks):
        core.tick()
        if core.role is Role.LEADER:
            break
    assert core.role is Role.LEADER
    rd = core.ready()
    assert rd is not None
    assert core.log.commit == 0              # the no-op is not yet persisted
    core.advance(rd)
    assert core.log.commit == 1


# --- §5.4.2 commit rule -----------------------------------------------------------------------
def test_leader_does_not_commit_previous_term_entries_by_counting_replicas():
    core = lone(term=2, vote="n1", entries=(e(1, 1),), config=RaftConfig(pre_vote=False))
    drain(core)
    while core.role is not Role.LEADER:
        core.tick()
        if core.role is Role.CANDIDATE:
            drain(core)
            core.step(RequestVoteResponse(core.term, "n2", "n1", True, False))
    drain(core)
    assert core.log.last_index() == 2          # the old entry plus this term's no-op
    core.step(AppendEntriesResponse(core.term, "n2", "n1", True, 1))
    drain(core)
    assert core.log.commit == 0               # index 1 is on a majority but of an older term
    core.step(AppendEntriesResponse(core.term, "n2", "n1", True, 2))
    drain(core)
    assert core.log.commit == 2               # committing the no-op commits index 1 too


# --- leadership and pre-vote ------------------------------------------------------------------
def test_prevote_keeps_a_partitioned_follower_from_disrupting_the_leader():
    net = Net(IDS)
    net.elect("n1")
    term = net.cores["n1"].term
    net.isolate("n3")
    net.tick("n3", 100)
    net.stabilize()
    assert net.cores["n3"].term == term       # pre-votes never raise the term
    net.heal()
    for _ in range(3):
        net.tick("n1", 1)
        net.tick("n3", 1)
        net.stabilize()
    assert net.cores["n1"].role is Role.LEADER
    assert net.cores["n1"].term == term


def test_check_quorum_makes_an_isolated_leader_step_down():
    net = Net(IDS)
    net.elect("n1")
    net.isolate("n1")
    net.tick("n1", 2 * net.config.election_ticks)
    assert net.cores["n1"].role is Role.FOLLOWER


def test_follower_in_lease_ignores_vote_requests():
    net = Net(IDS)
    net.elect("n1")
    n2 = net.cores["n2"]
    term = n2.term
    n2.step(RequestVote(term + 1, "n3", "n2", 100, 100, False))
    assert n2.term == term
    assert drain(n2) == []


def test_proposal_on_follower_raises_not_leader_with_hint():
    net = Net(IDS)
    net.elect("n1")
    with pytest.raises(NotLeader) as info:
        net.cores["n2"].propose(b"x")
    assert info.value.code is ErrorCode.NOT_LEADER
    assert info.value.leader_hint == "n1"


# --- bounds -----------------------------------------------------------------------------------
def test_proposals_get_busy_beyond_uncommitted_bytes():
    cfg = RaftConfig(uncommitted_size_max=100, entry_size_max=60)
    net = Net(IDS, config=cfg)
    net.elect("n1")
    net.isolate("n1")
    leader = net.cores["n1"]
    leader.propose(b"x" * 60)
    with pytest.raises(Busy):
        leader.propose(b"y" * 60)
    with pytest.raises(InvalidParameter):
        leader.propose(b"z" * 61)


def test_appends_respect_entry_count_and_inflight_bounds():
    cfg = RaftConfig(append_entries_count_max=2, inflight_appends_max=3)
    net = Net(IDS, config=cfg)
    net.elect("n1")
    leader = net.cores["n1"]
    for i in range(20):
        leader.propose(b"%d" % i)
    rd = leader.ready()
    appends = [m for m in rd.messages if isinstance(m, AppendEntries) and m.dst == "n2"]
    net.storages["n1"].save(rd.hard_state, rd.snapshot, rd.entries)
    net.queue.extend(rd.messages)
    leader.advance(rd)
    assert all(len(m.entries) <= 2 for m in appends)
    assert sum(1 for m in appends if m.entries) <= 3
    net.stabilize()
    assert net.cores["n2"].log.commit == 21


# --- §7 snapshots -----------------------------------------------------------------------------
def test_lagging_follower_catches_up_through_install_snapshot():
    net = Net(IDS)
    net.elect("n1")
    net.down.add("n3")
    leader = net.cores["n1"]
    for i in range(10):
        leader.propose(b"%d" % i)
    net.stabilize()
    snap = leader.compact(leader.log.applied, b"state-at-11")
    net.storages["n1"].save_snapshot(snap)
    assert leader.log.snapshot_index == 11
    net.down.discard("n3")
    net.tick("n1", net.config.stall_heartbeats_max + 1)
    net.stabilize()
    n3 = net.cores["n3"]
    assert n3.log.snapshot_index == 11
    assert n3.snapshot.data == b"state-at-11"
    assert n3.log.commit == 11
    # It survives a restart from its durable state.
    net.crash("n3")
    assert net.cores["n3"].log.snapshot_index == 11


# --- dissertation §4.1 membership changes ------------------------------------------------------
def test_add_voter_then_remove_the_leader():
    net = Net(IDS)
    net.elect("n1")
    net.add_node("n4")
    leader = net.cores["n1"]
    leader.propose_conf_change(ConfChange(ConfChangeOp.ADD_VOTER, "n4"))
    net.stabilize()
    net.tick("n1", 2)
    net.stabilize()
    assert net.cores["n4"].voters == ("n1", "n2", "n3", "n4")
    assert net.cores["n4"].log.commit == leader.log.commit
    leader.propose_conf_change(ConfChange(ConfChangeOp.REMOVE_VOTER, "n1"))
    net.stabilize()
    # §4.2.2: the leader steps down once the configuration without it is committed.
    assert leader.role is Role.FOLLOWER
    assert net.cores["n2"].voters == ("n2", "n3", "n4")
    for _ in range(4 * net.config.election_ticks):
        for i in ("n2", "n3", "n4"):
            net.tick(i)
        net.stabilize()
        if net.leader() is not None and net.leader().id != "n1":
            break
    assert net.leader().id in ("n2", "n3", "n4")


def test_only_one_membership_change_at_a_time():
    net = Net(IDS)
    net.elect("n1")
    net.isolate("n1")
    leader = net.cores["n1"]
    leader.propose_conf_change(ConfChange(ConfChangeOp.REMOVE_VOTER, "n3"))
    with pytest.raises(Busy):
        leader.propose_conf_change(ConfChange(ConfChangeOp.REMOVE_VOTER, "n2"))


# --- dissertation §6.4 ReadIndex --------------------------------------------------------------
def test_read_index_waits_for_a_heartbeat_quorum():
    net = Net(IDS)
    net.elect("n1")
    leader = net.cores["n1"]
    leader.propose(b"w")
    net.stabilize()
    net.isolate("n1")
    leader.read_index(7)
    net.stabilize()
    assert net.read_states["n1"] == []
    net.heal()
    leader.read_index(8)
    net.stabilize()
    assert [(r.ctx, r.index) for r in net.read_states["n1"]] == [(7, 2), (8, 2)]


def test_read_index_on_follower_raises_not_leader():
    net = Net(IDS)
    net.elect("n1")
    with pytest.raises(NotLeader):
        net.cores["n2"].read_index(1)


def test_heartbeat_commit_never_exceeds_follower_log():
    net = Net(IDS)
    net.elect("n1")
    beats = [m for m in net.sent if isinstance(m, Heartbeat)]
    net.tick("n1", 1)
    net.stabilize()
    beats = [m for m in net.sent if isinstance(m, Heartbeat)]
    assert beats
    assert all(m.commit <= net.cores[m.dst].log.last_index() for m in beats)


def test_read_index_round_is_retried_by_heartbeats_after_loss():
    net = Net(IDS)
    net.elect("n1")
    leader = net.cores["n1"]
    leader.read_index(5)
    rd = leader.ready()              # the read round's heartbeats are lost
    net.storages["n1"].save(rd.hard_state, rd.snapshot, rd.entries)
    leader.advance(rd)
    net.stabilize()
    assert net.read_states["n1"] == []
    net.tick("n1", net.config.heartbeat_ticks)
    net.stabilize()
    assert [(r.ctx, r.index) for r in net.read_states["n1"]] == [(5, 1)]
