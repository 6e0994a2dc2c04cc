"""SWIM core behaviour, one test per protocol rule (SWIM §3-§4, Lifeguard, memberlist).

Goal: each rule of `qnode/membership/swim.py` holds on the real core: probe/ack, indirect probes,
suspicion -> down, refutation by incarnation, graceful leave, join by push-pull, metadata updates,
the retransmit and piggyback bounds, garbage input, determinism.
Method: small clusters of `Swim` cores on the deterministic simulator (tests/sim/swim_sim.py, no
packet loss unless stated; the clock is virtual, so "60 s" runs in milliseconds), or a single
core fed hand-made datagrams whose outbound packets are decoded and inspected."""

from __future__ import annotations

import math
import random

from qnode.membership.codec import Gossip, Ping, Sync, Update, decode, encode
from qnode.membership.config import SwimConfig
from qnode.membership.swim import Swim
from qnode.membership.types import (
    MemberDown, MemberLeft, MemberSuspect, MemberUp, MemberUpdated, Meta, State,
)
from tests.sim.swim_sim import NS_PER_MS, NS_PER_S, SwimSimOptions, SwimSimulation


def cluster(n: int, seed: int = 1, loss: float = 0.0, config: SwimConfig | None = None):
    opts = SwimSimOptions(members=n, loss_probability=loss, config=config or SwimConfig.lan())
    s = SwimSimulation(seed, opts, keep_events=True)
    ids = sorted(s.nodes)
    s.start(ids[0], [])
    for node_id in ids[1:]:
        s.start(node_id, [ids[0]])
    s.sim.run(s.sim.now_ns + 3 * NS_PER_S)
    for node_id in ids:
        alive = [m.node_id for m in s.swim(node_id).members() if m.state == State.ALIVE]
        assert alive == ids, (node_id, alive)
    return s, ids


def run_for(s: SwimSimulation, seconds: float) -> None:
    s.sim.run(s.sim.now_ns + int(seconds * NS_PER_S))


# --- join -----------------------------------------------------------------------------------------

def test_join_by_push_pull_learns_the_seeds_whole_table():
    s = SwimSimulation(1, SwimSimOptions(members=3), keep_events=True)
    a, b, c = sorted(s.nodes)
    s.start(a, [])
    s.start(b, [a])
    run_for(s, 0.05)
    assert s.swim(b).joined
    s.start(c, [b])                         # c's only seed is b, which already knows a
    run_for(s, 0.05)                        # one round trip: no probe or gossip round yet
    assert {m.node_id for m in s.swim(c).members()} == {a, b, c}
    assert s.events_of(c, MemberUp, a)
    run_for(s, 2)
    assert s.events_of(a, MemberUp, c)      # a learns c by gossip


def test_join_retries_until_a_seed_answers():
    s = SwimSimulation(1, SwimSimOptions(members=2), keep_events=True)
    a, b = sorted(s.nodes)
    s.start(b, [a])                         # a is not running yet: the first sync is lost
    s.net.set_up(a, False)
    run_for(s, 0.5)
    s.start(a, [])
    run_for(s, 5)
    assert s.swim(b).joined
    assert s.events_of(b, MemberUp, a)
    assert s.events_of(a, MemberUp, b)


# --- probes ---------------------------------------------------------------------------------------

def test_probes_are_acked_and_nobody_is_suspected_without_loss():
    s, ids = cluster(4)
    before = {n: s.swim(n).stats.probes for n in ids}
    run_for(s, 60)
    for n in ids:
        stats = s.swim(n).stats
        assert stats.probes - before[n] >= 55          # one per 1 s period
        assert stats.probes_failed == 0
        assert s.swim(n).awareness == 0
    assert not [e for _, _, e in s.events if isinstance(e, (MemberSuspect, MemberDown))]


def test_round_robin_probes_every_member_once_per_round():
    s, ids = cluster(5)
    probed: list[str] = []
    original = s.net.send

    def spy(src, dst, packet):
        if src == ids[0]:
            message = decode(packet)
            if isinstance(message, Ping):
                probed.append(message.target)
        original(src, dst, packet)
    s.net.send = spy
    run_for(s, 40.5)
    # SWIM §4.3: within each round of 4 probes every other member is probed exactly once, so
    # between two probes of one member there are at most 2 * (N - 1) - 1 probes of others.
    for member in ids[1:]:
        positions = [i for i, t in enumerate(probed) if t == member]
        assert len(positions) >= 8
        assert max(b - a for a, b in zip(positions, positions[1:])) <= 2 * 4 - 1


def test_indirect_probe_succeeds_when_the_direct_path_is_cut():
    s, ids = cluster(4)
    a, b = ids[0], ids[1]
    s.net.cut(a, b)
    s.net.cut(b, a)
    run_for(s, 30)
    assert s.swim(a).stats.indirect_probes > 0
    assert s.swim(a).stats.probes_failed == 0       # every probe of b got a relayed ack
    assert not s.events_of(a, MemberSuspect, b)
    assert not [e for _, _, e in s.events if isinstance(e, MemberDown)]


# --- suspicion and refutation --------------------------------------------------------------------

def test_crashed_member_is_suspected_then_declared_down_by_everyone():
    s, ids = cluster(5)
    victim = ids[2]
    crashed_at = s.sim.now_ns
    s.crash(victim)
    run_for(s, 20)
    for observer in ids:
        if observer == victim:
            continue
        suspects = s.events_of(observer, MemberSuspect, victim)
        downs = s.events_of(observer, MemberDown, victim)
        assert len(downs) == 1
        assert suspects
        assert suspects[0][0] < downs[0][0]
        assert downs[0][0] - crashed_at < 10 * NS_PER_S
        assert s.swim(observer).member(victim).state == State.DEAD
        assert s.swim(observer).live_count() == 4


def test_suspected_member_refutes_with_a_higher_incarnation():
    s, ids = cluster(3)
    a, b, c = ids
    # c claims b is suspect; a believes it first, then b's refutation overrides it.
    claim = Update(b, s.nodes[b].address, 0, State.SUSPECT, Meta(), c)
    s.swim(a).on_packet(s.nodes[c].address, encode(Gossip(c, (claim,))), s.sim.now_ns)
    s.pump(a)
    assert s.swim(a).member(b).state == State.SUSPECT
    run_for(s, 5)
    assert s.swim(b).incarnation == 1
    assert s.swim(b).stats.refutations == 1
    for observer in (a, c):
        assert s.swim(observer).member(b).state == State.ALIVE
        assert s.swim(observer).member(b).incarnation == 1
    up_after_suspect = [t for t, _ in s.events_of(a, MemberUp, b)]
    assert up_after_suspect[-1] > s.events_of(a, MemberSuspect, b)[0][0]
    assert not [e for _, _, e in s.events if isinstance(e, MemberDown)]


def test_stale_accusation_is_answered_directly_to_the_accuser():
    s, ids = cluster(3)
    a, b, c = ids
    s.swim(b).update_meta(Meta.build(load={"queues": 1}))     # b is now at incarnation 1
    s.pump(b)
    run_for(s, 5)
    assert s.swim(a).member(b).incarnation == 1
    # An accusation about b's incarnation 0 arrives at b from c: b tells c its incarnation.
    stale = Update(b, s.nodes[b].address, 0, State.SUSPECT, Meta(), c)
    s.swim(b).on_packet(s.nodes[c].address, encode(Gossip(c, (stale,))), s.sim.now_ns)
    sends = s.swim(b).take_outbox()
    direct = [decode(x.packet) for x in sends if x.to_addr == s.nodes[c].address]
    assert any(u.node_id == b and u.state == State.ALIVE and u.incarnation == 1
               for m in direct for u in m.updates)


def test_restarted_member_refutes_its_own_death_and_is_up_again():
    s, ids = cluster(4)
    victim = ids[1]
    s.crash(victim)
    run_for(s, 15)
    assert all(s.swim(o).member(victim).state == State.DEAD for o in ids if o != victim)
    s.start(victim, [ids[0]])               # a fresh process: incarnation 0
    run_for(s, 3)
    assert s.swim(victim).incarnation >= 1
    for observer in ids:
        if observer != victim:
            assert s.swim(observer).member(victim).state == State.ALIVE
            assert s.events_of(observer, MemberUp, victim)[-1][0] > s.events_of(observer, MemberDown, victim)[0][0]


# --- leave and metadata --------------------------------------------------------------------------

def test_leave_is_announced_as_left_not_down():
    s, ids = cluster(4)
    leaver = ids[3]
    s.swim(leaver).leave()
    s.pump(leaver)
    run_for(s, 2)
    assert not s.swim(leaver).leave_pending()
    s.crash(leaver)                         # then the process exits
    run_for(s, 20)
    for observer in ids[:3]:
        assert len(s.events_of(observer, MemberLeft, leaver)) == 1
        assert not s.events_of(observer, MemberDown, leaver)
        assert not s.events_of(observer, MemberSuspect, leaver)
        assert s.swim(observer).member(leaver).state == State.LEFT


def test_metadata_update_is_disseminated_with_an_incarnation_bump():
    s, ids = cluster(4)
    node = ids[2]
    meta = Meta.build(roles=("backend",), binary_address="10.0.0.3:7700", cell="c2",
                      load={"queues": 42})
    s.swim(node).update_meta(meta)
    s.pump(node)
    run_for(s, 2)
    for observer in ids:
        if observer != node:
            updated = s.events_of(observer, MemberUpdated, node)
            assert len(updated) == 1
            member = updated[0][1].member
            assert member.meta.load_map() == {"queues": 42}
            assert member.meta.cell == "c2"
            assert member.incarnation == 1


# --- bounds ---------------------------------------------------------------------------------------

def _lone_core(config: SwimConfig, seed: int = 3) -> Swim:
    swim = Swim("me", "10.9.0.1:7946", Meta(), config, random.Random(seed))
    swim.tick(0)
    return swim


def _introduce(swim: Swim, count: int, now_ns: int) -> list[str]:
    ids = [f"m{i:03d}" for i in range(count)]
    for chunk in range(0, count, 4):
        updates = tuple(Update(i, f"10.9.1.{k + 1}:7946", 0, State.ALIVE, Meta(), i)
                        for k, i in enumerate(ids[chunk:chunk + 4], start=chunk))
        swim.on_packet("10.9.9.9:7946", encode(Gossip(ids[chunk], updates)), now_ns)
    return ids


def test_each_update_is_retransmitted_at_most_mult_log_n_times():
    config = SwimConfig.lan()
    swim = _lone_core(config)
    _introduce(swim, 9, 0)                   # 10 members: limit = 4 * ceil(log10(11)) = 8
    swim.take_outbox()
    swim.update_meta(Meta.build(load={"queues": 1}))
    limit = config.retransmit_mult * math.ceil(math.log10(len(swim.members()) + 1))
    assert limit == 8
    sent = 0
    now = 0
    while now < 20 * NS_PER_S:
        now = max(now + 1, swim.next_deadline_ns())
        swim.tick(now)
        for out in swim.take_outbox():
            message = decode(out.packet)
            if isinstance(message, Sync):
                continue
            sent += sum(1 for u in getattr(message, "updates", ())
                        if u.node_id == "me" and u.incarnation == 1)
    assert sent == limit


def test_piggyback_buffer_and_datagrams_stay_within_their_bounds():
    config = SwimConfig.lan().with_(broadcast_queue_max=16, packet_size_max=600)
    swim = _lone_core(config)
    ids = _introduce(swim, 100, 0)
    assert len(swim._broadcasts) <= 16
    assert swim._broadcasts.dropped_count >= 100 - 16
    now = 0
    for _ in range(200):
        now = max(now + 1, swim.next_deadline_ns())
        swim.tick(now)
        for out in swim.take_outbox():
            message = decode(out.packet)
            if isinstance(message, Sync):
                assert len(out.packet) <= config.sync_packet_size_max
            else:
                assert len(out.packet) <= config.packet_size_max


def test_member_table_is_bounded():
    swim = _lone_core(SwimConfig.lan().with_(members_max=10))
    _introduce(swim, 20, 0)
    assert len(swim.members()) == 10
    assert swim.stats.members_rejected == 11


# --- robustness and determinism ------------------------------------------------------------------

def test_garbage_datagrams_are_counted_and_dropped():
    swim = _lone_core(SwimConfig.lan())
    for garbage in (b"", b"\xff\xfe", b"\x93\x01\x02\x03", encode(Gossip("x", ()))[:-1]):
        swim.on_packet("10.9.9.9:1", garbage, 1)
    assert swim.stats.decode_errors == 4
    assert swim.take_outbox() == []
    assert [m.node_id for m in swim.members()] == ["me"]


def test_ping_for_another_node_id_is_not_acked():
    swim = _lone_core(SwimConfig.lan())
    swim.on_packet("10.9.9.9:1", encode(Ping(7, "x", "someone-else")), 1)
    assert swim.take_outbox() == []
    assert swim.stats.wrong_target_pings == 1


def test_same_seed_same_inputs_same_datagrams():
    def run(seed: int) -> list[bytes]:
        swim = _lone_core(SwimConfig.lan(), seed=seed)
        _introduce(swim, 12, 0)
        out: list[bytes] = []
        now = 0
        for _ in range(100):
            now = max(now + 1, swim.next_deadline_ns())
            swim.tick(now)
            out += [x.packet for x in swim.take_outbox()]
        return out
    assert run(5) == run(5)
    assert run(5) != run(6)


def test_config_profiles_are_valid_and_validate_reports_every_problem():
    assert SwimConfig.lan().validate() == []
    assert SwimConfig.local_test().validate() == []
    bad = SwimConfig.lan().with_(probe_interval_ns=0, gossip_nodes=-1)
    problems = bad.validate()
    assert len(problems) == 2
    late = SwimConfig.lan().with_(probe_timeout_ns=700 * NS_PER_MS, indirect_timeout_ns=800 * NS_PER_MS)
    assert late.validate() == ["probe_timeout_ns + indirect_timeout_ns must fit in probe_interval_ns"]


def test_sides_of_a_healed_partition_find_each_other_again():
    s, ids = cluster(8)
    left, right = ids[:4], ids[4:]
    s.net.partition(left, right)
    run_for(s, 60)                          # long enough to be declared down and forgotten
    for observer in left:
        assert s.swim(observer).live_count() == 4
        assert all(s.swim(observer).member(o) is None or s.swim(observer).member(o).state == State.DEAD
                   for o in right)
    s.net.heal()
    healed_at = s.sim.now_ns
    deadline = healed_at + 300 * NS_PER_S
    while s.sim.now_ns < deadline:
        run_for(s, 5)
        if all(s.swim(o).live_count() == 8 for o in ids):
            break
    assert all(s.swim(o).live_count() == 8 for o in ids), [s.swim(o).live_count() for o in ids]
    assert s.sim.now_ns - healed_at <= 120 * NS_PER_S


def test_push_pull_of_a_large_table_fits_one_datagram_and_decodes():
    config = SwimConfig.lan().with_(members_max=2000)
    swim = _lone_core(config)
    _introduce(swim, 1200, 0)
    swim.take_outbox()
    swim.on_packet("10.9.9.9:7946", encode(Sync("m000", True, ())), 1)
    replies = [decode(x.packet) for x in swim.take_outbox() if isinstance(decode(x.packet), Sync)]
    assert len(replies) == 1
    assert 300 <= len(replies[0].members) <= 512
    assert replies[0].members[0].node_id == "me"


def test_local_health_slows_an_isolated_member_but_not_the_healthy_ones():
    # Lifeguard §IV-A: the isolated member gets neither acks nor nacks and backs off; the others
    # fail their probes of it too, but their relays answer with nacks, so they stay at score 0.
    s, ids = cluster(5)
    lonely = ids[0]
    s.net.isolate(lonely)
    probes_before = s.swim(lonely).stats.probes
    run_for(s, 20)
    assert s.swim(lonely).awareness >= 3
    assert s.swim(lonely).stats.probes - probes_before < 12     # 20 at full speed
    for other in ids[1:]:
        assert s.swim(other).awareness == 0
        assert s.swim(other).member(lonely).state == State.DEAD


def test_ack_to_a_suspect_prober_carries_our_suspicion():
    # A suspect that probes us is alive; our ack tells it it is suspected, so it refutes to us
    # even if its gossiped refutation never reached us.
    swim = _lone_core(SwimConfig.lan())
    swim.on_packet("10.9.1.1:7946", encode(Gossip("b", (Update("b", "10.9.1.1:7946", 3, State.ALIVE, Meta(), "b"),))), 1)
    swim.on_packet("10.9.1.2:7946", encode(Gossip("c", (Update("b", "10.9.1.1:7946", 3, State.SUSPECT, Meta(), "c"),))), 2)
    assert swim.member("b").state == State.SUSPECT
    swim.take_outbox()
    swim.on_packet("10.9.1.1:7946", encode(Ping(11, "b", "me")), 3)
    acks = [decode(x.packet) for x in swim.take_outbox() if x.to_addr == "10.9.1.1:7946"]
    assert len(acks) == 1
    first = acks[0].updates[0]
    assert (first.node_id, first.state, first.incarnation, first.source) == ("b", State.SUSPECT, 3, "me")
    assert sum(1 for u in acks[0].updates if u.node_id == "b") == 1     # not duplicated
