"""SWIM membership core (sans-IO): failure detection, suspicion, dissemination, join and leave.

Owns: one node's view of the cluster (`Swim`): the member table, the probe schedule, pending
indirect probes, suspicion timers and the piggyback buffer. Protocol sources: SWIM (Das, Gupta,
Motivala, DSN 2002) §3-§4, Lifeguard (Dadgar et al. 2018), HashiCorp memberlist.

Driving it (the shell's loop, as etcd's `Ready` handling; the order matters):
    1. feed input: `on_packet(from_addr, data, now_ns)` for each datagram, `tick(now_ns)` when
       `next_deadline_ns()` is reached (and `join`, `leave`, `update_meta` when asked);
    2. send every `Send` from `take_outbox()` (UDP datagrams, fire and forget);
    3. deliver `take_events()` to subscribers;
    4. sleep until `next_deadline_ns()` or the next datagram.
Time is a monotonic integer in ns supplied by the caller; randomness only from the injected
`random.Random`. Same inputs + same seed => same outputs (the simulator relies on it).

Protocol summary (details and the state table in docs/design/membership.md):
- Every probe period (scaled by local health, Lifeguard §IV-A) probe the next member of a
  randomized round-robin list (reshuffled each round, new members inserted at a random position,
  SWIM §4.3): ping; no ack within `probe_timeout` -> ping-req through `indirect_checks` members;
  still no ack by the end of the period -> suspect it (SWIM §4.2).
- A suspicion times out into "down" unless refuted; the timeout shrinks from max to min as
  independent members confirm it (Lifeguard §IV-B, `suspicion.py`).
- A member that hears a suspect/down claim about itself refutes it with a higher incarnation.
- Every state change is piggybacked on pings, acks and ping-reqs, and gossiped to
  `gossip_nodes` random members every `gossip_interval` while pending, each at most
  `retransmit_mult * ceil(log10(N+1))` times (`broadcast.py`).
- Join: push-pull state exchange (`Sync`) with seeds, retried with backoff; periodic push-pull
  with one random member repairs what gossip missed.
- Leave: a `LEFT` update about itself (distinct from down); a left member is never refuted.

Override rules (SWIM §4.2, per member, incarnation i):
    ALIVE(i)   overrides SUSPECT(j), ALIVE(j)         for i > j  (and DEAD/LEFT(j), i > j: rejoin)
    SUSPECT(i) overrides ALIVE(j)                      for i >= j
    DEAD(i) / LEFT(i) override ALIVE(j), SUSPECT(j)    for i >= j
    claims about oneself never override: SUSPECT/DEAD are refuted, ALIVE(i > own) is outbid.

Invariants (checked by `_check_invariants` after every step): a suspicion timer exists iff the
member is SUSPECT; the local record's incarnation equals `incarnation`; outbox, events, relays,
piggyback buffer and member table stay within their configured bounds.
Must never: import asyncio, socket, os, time or random; block; raise on bad input (garbage
datagrams are counted in `stats.decode_errors` and dropped).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Protocol, Sequence, TypeVar

from qnode.membership.broadcast import BroadcastQueue
from qnode.membership.codec import (
    UPDATES_COUNT_MAX, Ack, Gossip, Message, Nack, Ping, PingReq, Sync, SwimDecodeError, Update,
    decode, encode_wire, update_to_wire, wire_size,
)
from qnode.membership.config import SwimConfig
from qnode.membership.suspicion import Suspicion, suspicion_timeouts_ns
from qnode.membership.types import (
    Member, MemberDown, MemberEvent, MemberLeft, MemberSuspect, MemberUp, MemberUpdated,
    Meta, Send, State, check_address, check_node_id,
)

_T = TypeVar("_T")


class Rng(Protocol):
    """The part of `random.Random` the core uses (a core never imports `random` itself)."""

    def randrange(self, stop: int) -> int: ...
    def random(self) -> float: ...
    def randint(self, a: int, b: int) -> int: ...
    def uniform(self, a: float, b: float) -> float: ...
    def shuffle(self, x: list) -> None: ...
    def sample(self, population: Sequence[_T], k: int) -> list[_T]: ...
    def choice(self, seq: Sequence[_T]) -> _T: ...


_UPDATES_ARRAY_OVERHEAD = 8     # msgpack "g" key + array header, generously


@dataclass(slots=True)
class SwimStats:
    """Counters (exported as qnode_swim_* metrics by the shell)."""

    packets_in: int = 0
    packets_out: int = 0
    decode_errors: int = 0
    probes: int = 0
    probes_failed: int = 0
    indirect_probes: int = 0
    suspicions_raised: int = 0
    refutations: int = 0
    wrong_target_pings: int = 0
    relays_dropped: int = 0
    members_rejected: int = 0
    outbox_dropped: int = 0
    events_dropped: int = 0
    syncs: int = 0


@dataclass(slots=True)
class _Record:
    node_id: str
    address: str
    incarnation: int
    state: State
    meta: Meta
    state_change_ns: int

    def snapshot(self) -> Member:
        return Member(self.node_id, self.address, self.incarnation, self.state, self.meta)

    def update(self, state: State) -> Update:
        return Update(self.node_id, self.address, self.incarnation, state, self.meta, self.node_id)


@dataclass(slots=True)
class _Probe:
    seq: int
    target: str
    ack_deadline_ns: int        # when to fall back to indirect probes
    decide_ns: int              # no ack by then: the probe failed
    indirect_sent: bool = False
    acked: bool = False
    expected_nacks: int = 0
    nacks: int = 0


@dataclass(slots=True)
class _Relay:
    requester_addr: str
    requester_seq: int
    deadline_ns: int            # after this, answer the requester with a nack


@dataclass(slots=True)
class _Join:
    seeds: tuple[str, ...]
    attempt: int
    next_ns: int | None         # None: set on the next tick (join() has no clock)


class Swim:
    def __init__(self, node_id: str, address: str, meta: Meta, config: SwimConfig,
                 rng: Rng, logger: logging.Logger | None = None) -> None:
        problems = config.validate()
        assert not problems, problems
        self.node_id = check_node_id(node_id)
        self.address = check_address(address)
        self._config = config
        self._rng = rng
        self._log = logger or logging.getLogger(__name__)
        self.incarnation = 0
        self._meta = meta
        self._left = False
        self._members: dict[str, _Record] = {
            node_id: _Record(node_id, address, 0, State.ALIVE, meta, 0)}
        self._broadcasts = BroadcastQueue(config.broadcast_queue_max)
        self._suspicions: dict[str, Suspicion] = {}
        self._probe_order: list[str] = []
        self._probe_first: list[str] = []   # suspects others raised, to probe before the round
        self._probe_index = 0
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}
        self._seq = 0
        self.awareness = 0
        self._outbox: list[Send] = []
        self._events: list[MemberEvent] = []
        self._join: _Join | None = None
        self.stats = SwimStats()
        self._now_ns: int | None = None
        self._next_probe_ns = 0
        self._next_gossip_ns = 0
        self._next_sync_ns = 0
        self._next_reap_ns = 0
        self._next_unknown_sync_ns = 0
        # Forgotten down members (node id -> (address, forgotten at)), retried by push-pull now
        # and then, so that the two sides of a healed partition find each other again (serf's
        # reconnect). Bounded by members_max; entries expire after reconnect_timeout_ns.
        self._failed: dict[str, tuple[str, int]] = {}

    # --- public API ------------------------------------------------------------------------------

    def on_packet(self, from_addr: str, packet: bytes, now_ns: int) -> None:
        """Handle one datagram from `from_addr`. Garbage is counted and dropped, never raised."""
        self._advance(now_ns)
        self.stats.packets_in += 1
        try:
            message = decode(packet)
        except SwimDecodeError as exc:
            self.stats.decode_errors += 1
            self._log.debug("dropped bad datagram", extra={"from": from_addr, "error": exc.message})
            return
        self._handle(from_addr, message, now_ns)
        self._check_invariants()

    def tick(self, now_ns: int) -> None:
        """Run every timer due at `now_ns` (probes, indirect probes, suspicions, gossip, sync)."""
        self._advance(now_ns)
        self._tick_relays(now_ns)
        self._tick_suspicions(now_ns)
        if not self._left:
            probe = self._probe
            if probe is not None and not probe.acked and not probe.indirect_sent \
                    and now_ns >= probe.ack_deadline_ns:
                self._send_indirect_probes(probe)
            if probe is not None and now_ns >= probe.decide_ns:
                self._finish_probe(now_ns)
            if now_ns >= self._next_probe_ns:
                self._finish_probe(now_ns)
                self._start_probe(now_ns)
            if now_ns >= self._next_sync_ns:
                self._next_sync_ns = now_ns + self._sync_interval_ns()
                self._sync_with_random_member()
                self._reconnect(now_ns)
            self._tick_join(now_ns)
        if now_ns >= self._next_gossip_ns and len(self._broadcasts) > 0:
            self._next_gossip_ns = now_ns + self._config.gossip_interval_ns
            self._gossip(now_ns)
        if now_ns >= self._next_reap_ns:
            self._next_reap_ns = now_ns + self._config.probe_interval_ns
            self._reap(now_ns)
        self._check_invariants()

    def next_deadline_ns(self) -> int:
        """The earliest time `tick` has work to do (0 before the first call: tick now)."""
        if self._now_ns is None:
            return 0
        deadline = self._next_reap_ns
        if not self._left:
            deadline = min(deadline, self._next_probe_ns, self._next_sync_ns)
            probe = self._probe
            if probe is not None:
                deadline = min(deadline, probe.decide_ns)
                if not probe.acked and not probe.indirect_sent:
                    deadline = min(deadline, probe.ack_deadline_ns)
            if self._join is not None:
                deadline = min(deadline, self._join.next_ns if self._join.next_ns is not None
                               else self._now_ns)
        if len(self._broadcasts) > 0:
            deadline = min(deadline, self._next_gossip_ns)
        for suspicion in self._suspicions.values():
            deadline = min(deadline, suspicion.deadline_ns)
        for relay in self._relays.values():
            deadline = min(deadline, relay.deadline_ns)
        return deadline

    def take_outbox(self) -> list[Send]:
        """Datagrams to send, oldest first; the caller sends them (order is not significant)."""
        out, self._outbox = self._outbox, []
        return out

    def take_events(self) -> list[MemberEvent]:
        """Membership events since the last call, in the order they happened."""
        events, self._events = self._events, []
        return events

    def join(self, seed_addresses: list[str] | tuple[str, ...]) -> None:
        """Start joining through `seed_addresses` (push-pull with each; retried until one answers).

        Seeds equal to our own address are skipped; with no other seed this is a no-op.
        """
        seeds = tuple(sorted({check_address(a) for a in seed_addresses} - {self.address}))
        if not seeds or self._left:
            return
        self._join = _Join(seeds, attempt=1, next_ns=None)
        for seed in seeds:
            self._send_sync(seed, reply=True)
        self._check_invariants()

    @property
    def joined(self) -> bool:
        """False while a join is still waiting for its first answer from a seed."""
        return self._join is None

    def leave(self) -> None:
        """Announce a graceful departure: stop probing, gossip a LEFT update about ourselves.

        The shell should keep delivering packets and ticks until `leave_pending()` is False (or
        a timeout), then stop. Idempotent.
        """
        if self._left:
            return
        self._left = True
        self._join = None
        self._probe = None
        me = self._members[self.node_id]
        me.state = State.LEFT
        self._broadcast(me.update(State.LEFT))
        self._next_gossip_ns = self._now_ns or 0        # gossip it at the next tick
        self._log.info("leaving", extra={"node": self.node_id})
        self._check_invariants()

    def leave_pending(self) -> bool:
        """True while our LEFT update still has transmits to go."""
        return self._left and self._broadcasts.transmits_of(self.node_id) is not None

    def update_meta(self, meta: Meta) -> None:
        """Advertise new metadata (roles, addresses, cell, load): bump incarnation and gossip."""
        if self._left:
            return
        self._meta = meta
        self._bump_incarnation(self.incarnation + 1)
        self._check_invariants()

    def members(self) -> list[Member]:
        """Every known member, ourselves included, sorted by node id (down/left ones until they
        are forgotten `gossip_to_dead_ns` after the change)."""
        return [self._members[k].snapshot() for k in sorted(self._members)]

    def member(self, node_id: str) -> Member | None:
        record = self._members.get(node_id)
        return None if record is None else record.snapshot()

    def live_count(self) -> int:
        """Members (ourselves included) that are ALIVE or SUSPECT."""
        return sum(1 for r in self._members.values() if r.state in (State.ALIVE, State.SUSPECT))

    # --- input handling --------------------------------------------------------------------------

    def _advance(self, now_ns: int) -> None:
        if self._now_ns is None:
            # First contact with the clock: stagger the first probe so that nodes started
            # together do not probe in lockstep.
            self._next_probe_ns = now_ns + self._rng.randrange(self._config.probe_interval_ns)
            self._next_sync_ns = now_ns + self._rng.randrange(self._config.sync_interval_ns)
            self._next_gossip_ns = now_ns
            self._next_reap_ns = now_ns + self._config.probe_interval_ns
        else:
            assert now_ns >= self._now_ns, "time went backwards"
        self._now_ns = now_ns

    def _handle(self, from_addr: str, message: Message, now_ns: int) -> None:
        if isinstance(message, Ping):
            self._apply_all(message.updates, now_ns, from_addr)
            if message.target != self.node_id:
                self.stats.wrong_target_pings += 1
                return
            lead = self._check_prober(from_addr, message.source, now_ns)
            self._send(from_addr, Ack(message.seq, self.node_id), lead=lead)
        elif isinstance(message, Ack):
            self._apply_all(message.updates, now_ns, from_addr)
            probe = self._probe
            if probe is not None and probe.seq == message.seq:
                probe.acked = True
            elif message.seq in self._relays:
                relay = self._relays.pop(message.seq)
                self._send(relay.requester_addr, Ack(relay.requester_seq, self.node_id))
        elif isinstance(message, PingReq):
            self._apply_all(message.updates, now_ns, from_addr)
            if len(self._relays) >= self._config.relays_max:
                self.stats.relays_dropped += 1
                return
            seq = self._next_seq()
            self._relays[seq] = _Relay(from_addr, message.seq, now_ns + self._config.probe_timeout_ns)
            self._send(message.target_address, Ping(seq, self.node_id, message.target),
                       lead=self._suspicion_claim(message.target))
        elif isinstance(message, Nack):
            probe = self._probe
            if probe is not None and probe.seq == message.seq:
                probe.nacks += 1
        elif isinstance(message, Gossip):
            self._apply_all(message.updates, now_ns, from_addr)
        elif isinstance(message, Sync):
            self._handle_sync(from_addr, message, now_ns)
        else:
            assert False, message

    def _check_prober(self, from_addr: str, source: str, now_ns: int) -> Update | None:
        """A member probing us is alive. If we hold it suspect or down (we may have missed its
        refutation), put our claim first in the ack so that it reasserts itself to us; if we do
        not know it at all
        (we forgot it), ask it for a push-pull sync, at most once per probe interval.
        Returns the claim to lead the ack with, or None."""
        record = self._members.get(source)
        if record is None:
            if now_ns >= self._next_unknown_sync_ns and not self._left:
                self._next_unknown_sync_ns = now_ns + self._config.probe_interval_ns
                self._send_sync(from_addr, reply=True)
            return None
        if record.state in (State.DEAD, State.LEFT):
            return Update(record.node_id, record.address, record.incarnation, record.state,
                          record.meta, self.node_id)
        # A suspect that probes us is alive: tell it, so it refutes (or reasserts) to us.
        return self._suspicion_claim(source)

    def _handle_sync(self, from_addr: str, message: Sync, now_ns: int) -> None:
        self.stats.syncs += 1
        for update in message.members:
            if update.state == State.DEAD and update.node_id != self.node_id:
                # memberlist: a peer's "dead" learned by push-pull becomes a suspicion here, so
                # one stale table cannot take a live member down without a local timeout.
                update = Update(update.node_id, update.address, update.incarnation,
                                State.SUSPECT, update.meta, update.source)
            if update.state == State.SUSPECT and update.node_id not in self._members \
                    and update.node_id != self.node_id:
                # Learn the member first, so that the suspicion has something to apply to.
                self._apply(Update(update.node_id, update.address, update.incarnation,
                                   State.ALIVE, update.meta, update.source), now_ns)
            self._apply(update, now_ns, from_addr)
        if message.reply and not self._left:
            self._send_sync(from_addr, reply=False)
        if not message.reply and self._join is not None:
            self._join = None
            self._log.info("joined", extra={"node": self.node_id, "seed": from_addr})

    def _apply_all(self, updates: tuple[Update, ...], now_ns: int, from_addr: str) -> None:
        for update in updates:
            self._apply(update, now_ns, from_addr)

    def _apply(self, u: Update, now_ns: int, from_addr: str | None = None) -> None:
        if u.node_id == self.node_id:
            self._apply_about_self(u, from_addr)
            return
        record = self._members.get(u.node_id)
        if u.state == State.ALIVE:
            self._on_alive(u, record, now_ns)
        elif u.state == State.SUSPECT:
            self._on_suspect(u, record, now_ns)
        elif u.state in (State.DEAD, State.LEFT):
            self._on_down(u, record, now_ns)
        else:
            assert False, u

    def _apply_about_self(self, u: Update, from_addr: str | None) -> None:
        if self._left:
            return          # a leaving member never refutes
        if u.state == State.ALIVE:
            if u.incarnation > self.incarnation:
                # An older life of ours (before a restart) is still gossiped: outbid it.
                self._bump_incarnation(u.incarnation + 1)
            return
        if u.incarnation < self.incarnation:
            # A stale accusation: we refuted it already, but its source (or the member that
            # passed it on) has not heard. Tell them directly and re-gossip our record, or the
            # accuser would declare us down unopposed.
            self._reassert(u.source, from_addr)
            return
        # SWIM §4.2: refute by bumping the incarnation; Lifeguard §IV-A: being accused is a sign
        # that we may be the slow one, so lower our own health score.
        self.stats.refutations += 1
        self._bump_awareness(1)
        self._bump_incarnation(u.incarnation + 1)
        self._reassert(u.source, from_addr)
        self._log.info("refuting suspicion", extra={"node": self.node_id, "claim": u.state.name,
                                                    "by": u.source, "incarnation": self.incarnation})

    def _on_alive(self, u: Update, record: _Record | None, now_ns: int) -> None:
        if record is None:
            if len(self._members) >= self._config.members_max:
                self.stats.members_rejected += 1
                return
            record = _Record(u.node_id, u.address, u.incarnation, State.ALIVE, u.meta, now_ns)
            self._members[u.node_id] = record
            self._failed.pop(u.node_id, None)
            # SWIM §4.3: a new member goes to a random position of the rest of this round.
            position = self._rng.randint(self._probe_index, len(self._probe_order))
            self._probe_order.insert(position, u.node_id)
            self._emit(MemberUp(record.snapshot()))
            self._broadcast(u)
            self._log.info("member up", extra={"node": self.node_id, "member": u.node_id})
            return
        if u.incarnation <= record.incarnation:
            return
        old_state = record.state
        changed = record.address != u.address or record.meta != u.meta
        record.incarnation = u.incarnation
        record.address = u.address
        record.meta = u.meta
        record.state = State.ALIVE
        self._suspicions.pop(u.node_id, None)
        if old_state != State.ALIVE:
            record.state_change_ns = now_ns
            if old_state in (State.DEAD, State.LEFT) and u.node_id not in self._probe_order:
                position = self._rng.randint(self._probe_index, len(self._probe_order))
                self._probe_order.insert(position, u.node_id)
            self._emit(MemberUp(record.snapshot()))
            self._log.info("member up", extra={"node": self.node_id, "member": u.node_id,
                                               "was": old_state.name})
        elif changed:
            self._emit(MemberUpdated(record.snapshot()))
        self._broadcast(u)

    def _on_suspect(self, u: Update, record: _Record | None, now_ns: int) -> None:
        if record is None or u.incarnation < record.incarnation:
            return
        if record.state in (State.DEAD, State.LEFT):
            return
        if record.state == State.SUSPECT:
            suspicion = self._suspicions[u.node_id]
            if suspicion.confirm(u.source):
                self._broadcast(u)      # re-gossip so others count this confirmation too
            return
        assert record.state == State.ALIVE, record
        record.incarnation = u.incarnation
        record.state = State.SUSPECT
        record.state_change_ns = now_ns
        min_ns, max_ns = suspicion_timeouts_ns(
            self._config.suspicion_mult, self._config.suspicion_max_mult, self.live_count(),
            self._config.probe_interval_ns)
        k = self._config.suspicion_confirmations
        if self.live_count() - 2 < k:
            k = 0       # memberlist: too few members to ever collect k confirmations
        self._suspicions[u.node_id] = Suspicion(u.incarnation, u.source, now_ns, min_ns, max_ns, k)
        if u.source != self.node_id and u.node_id not in self._probe_first:
            self._probe_first.append(u.node_id)
        self._emit(MemberSuspect(record.snapshot()))
        self._broadcast(u)
        self._log.info("member suspect", extra={"node": self.node_id, "member": u.node_id,
                                                "by": u.source})

    def _on_down(self, u: Update, record: _Record | None, now_ns: int) -> None:
        if record is None or u.incarnation < record.incarnation:
            return
        if record.state in (State.DEAD, State.LEFT):
            return
        record.incarnation = u.incarnation
        record.state = u.state
        record.state_change_ns = now_ns
        self._suspicions.pop(u.node_id, None)
        if u.state == State.DEAD:
            self._emit(MemberDown(record.snapshot()))
            self._log.info("member down", extra={"node": self.node_id, "member": u.node_id})
        else:
            self._emit(MemberLeft(record.snapshot()))
            self._log.info("member left", extra={"node": self.node_id, "member": u.node_id})
        self._broadcast(u)

    # --- timers ----------------------------------------------------------------------------------

    def _tick_relays(self, now_ns: int) -> None:
        expired = [seq for seq, relay in self._relays.items() if now_ns >= relay.deadline_ns]
        for seq in expired:
            relay = self._relays.pop(seq)
            self._send(relay.requester_addr, Nack(relay.requester_seq, self.node_id))

    def _tick_suspicions(self, now_ns: int) -> None:
        expired = [node_id for node_id, s in self._suspicions.items() if now_ns >= s.deadline_ns]
        for node_id in expired:
            record = self._members[node_id]
            assert record.state == State.SUSPECT, record
            self._on_down(Update(node_id, record.address, record.incarnation, State.DEAD,
                                 record.meta, self.node_id), record, now_ns)

    def _finish_probe(self, now_ns: int) -> None:
        probe = self._probe
        self._probe = None
        if probe is None:
            return
        if probe.acked:
            self._bump_awareness(-1)
            return
        self.stats.probes_failed += 1
        # Lifeguard §IV-A: if the relays answered with nacks, the target is the problem; each
        # missing nack (or, with no relays, the failure itself) counts against our own health.
        if probe.expected_nacks > 0:
            self._bump_awareness(max(0, probe.expected_nacks - probe.nacks))
        else:
            self._bump_awareness(1)
        record = self._members.get(probe.target)
        if record is None or record.state not in (State.ALIVE, State.SUSPECT):
            return
        self.stats.suspicions_raised += 1
        suspect = Update(record.node_id, record.address, record.incarnation, State.SUSPECT,
                         record.meta, self.node_id)
        self._on_suspect(suspect, record, now_ns)

    def _start_probe(self, now_ns: int) -> None:
        scale = self.awareness + 1
        self._next_probe_ns = now_ns + self._config.probe_interval_ns * scale
        target = self._next_probe_target()
        if target is None:
            return
        record = self._members[target]
        self.stats.probes += 1
        seq = self._next_seq()
        ack_deadline_ns = now_ns + self._config.probe_timeout_ns * scale
        self._probe = _Probe(seq, target, ack_deadline_ns,
                             ack_deadline_ns + self._config.indirect_timeout_ns * scale)
        # Lifeguard "buddy system": a probe of a suspect carries our suspicion first, so the
        # suspect learns of it (or, if it refuted already, tells us its newer incarnation).
        self._send(record.address, Ping(seq, self.node_id, target),
                   lead=self._suspicion_claim(target))

    def _suspicion_claim(self, node_id: str) -> Update | None:
        """Our SUSPECT claim about `node_id` if we suspect it, else None (buddy system)."""
        record = self._members.get(node_id)
        if record is None or record.state != State.SUSPECT:
            return None
        return Update(record.node_id, record.address, record.incarnation, State.SUSPECT,
                      record.meta, self.node_id)

    def _next_probe_target(self) -> str | None:
        # Suspect-first probing: a member suspected by someone else is probed by us next, so
        # that a real failure collects Lifeguard's independent confirmations within about one
        # period (the suspicion timeout then drops to its minimum), while a live suspect just
        # answers. It displaces one round-robin probe per suspicion, so every member is still
        # probed within a bounded time (SWIM §4.3).
        while self._probe_first:
            node_id = self._probe_first.pop(0)
            record = self._members.get(node_id)
            if record is not None and record.state == State.SUSPECT:
                return node_id
        for _ in range(2):
            while self._probe_index < len(self._probe_order):
                node_id = self._probe_order[self._probe_index]
                self._probe_index += 1
                record = self._members.get(node_id)
                if record is not None and record.state in (State.ALIVE, State.SUSPECT):
                    return node_id
            # SWIM §4.3: a new round probes every member once, in a fresh random order.
            self._probe_order = sorted(
                k for k, r in self._members.items()
                if k != self.node_id and r.state in (State.ALIVE, State.SUSPECT))
            self._rng.shuffle(self._probe_order)
            self._probe_index = 0
            if not self._probe_order:
                return None
        return None

    def _send_indirect_probes(self, probe: _Probe) -> None:
        probe.indirect_sent = True
        target = self._members.get(probe.target)
        if target is None:
            return
        helpers = sorted(k for k, r in self._members.items()
                         if r.state == State.ALIVE and k not in (self.node_id, probe.target))
        chosen = self._rng.sample(helpers, min(self._config.indirect_checks, len(helpers)))
        probe.expected_nacks = len(chosen)
        for node_id in chosen:
            self.stats.indirect_probes += 1
            self._send(self._members[node_id].address,
                       PingReq(probe.seq, self.node_id, target.node_id, target.address))

    def _gossip(self, now_ns: int) -> None:
        horizon = now_ns - self._config.gossip_to_dead_ns
        candidates = sorted(
            k for k, r in self._members.items()
            if k != self.node_id and (r.state in (State.ALIVE, State.SUSPECT)
                                      or r.state_change_ns >= horizon))
        chosen = self._rng.sample(candidates, min(self._config.gossip_nodes, len(candidates)))
        for node_id in chosen:
            if len(self._broadcasts) == 0:
                break
            self._send(self._members[node_id].address, Gossip(self.node_id, ()),
                       require_updates=True)

    def _sync_with_random_member(self) -> None:
        candidates = sorted(k for k, r in self._members.items()
                            if k != self.node_id and r.state == State.ALIVE)
        if candidates:
            self._send_sync(self._members[self._rng.choice(candidates)].address, reply=True)

    def _reconnect(self, now_ns: int) -> None:
        """serf's reconnect: with probability failed/alive, push-pull with one down member."""
        horizon = now_ns - self._config.reconnect_timeout_ns
        for node_id in [k for k, (_, at) in self._failed.items() if at < horizon]:
            del self._failed[node_id]
        down = sorted(k for k, r in self._members.items() if r.state == State.DEAD)
        candidates = down + sorted(k for k in self._failed if k not in self._members)
        if not candidates:
            return
        alive = max(1, self.live_count() - 1)
        if self._rng.random() >= len(candidates) / alive:
            return
        node_id = self._rng.choice(candidates)
        record = self._members.get(node_id)
        address = record.address if record is not None else self._failed[node_id][0]
        self._send_sync(address, reply=True)

    def _tick_join(self, now_ns: int) -> None:
        join = self._join
        if join is None:
            return
        if join.next_ns is None:
            join.next_ns = now_ns + self._join_backoff_ns(join.attempt)
            return
        if now_ns < join.next_ns:
            return
        if join.attempt >= self._config.join_attempts_max:
            self._log.warning("join gave up", extra={"node": self.node_id, "seeds": join.seeds})
            self._join = None
            return
        join.attempt += 1
        join.next_ns = now_ns + self._join_backoff_ns(join.attempt)
        for seed in join.seeds:
            self._send_sync(seed, reply=True)

    def _join_backoff_ns(self, attempt: int) -> int:
        base = self._config.join_retry_ns * (2 ** min(attempt - 1, 6))
        return int(base * self._rng.uniform(0.75, 1.25))

    def _reap(self, now_ns: int) -> None:
        horizon = now_ns - self._config.gossip_to_dead_ns
        gone = [k for k, r in self._members.items()
                if r.state in (State.DEAD, State.LEFT) and r.state_change_ns < horizon
                and k != self.node_id]
        for node_id in gone:
            record = self._members.pop(node_id)
            if record.state == State.DEAD:
                if len(self._failed) >= self._config.members_max:
                    del self._failed[next(iter(self._failed))]     # the oldest
                self._failed[node_id] = (record.address, now_ns)

    # --- output ----------------------------------------------------------------------------------

    def _send(self, to_addr: str, message: Message, first_key: str | None = None,
              require_updates: bool = False, lead: Update | None = None) -> None:
        """Queue one datagram; probes and gossip are filled with pending updates up to
        `packet_size_max`. `first_key`: a queued update to piggyback first; `lead`: a claim to
        put first that is not in the queue (and is not counted as a transmit)."""
        if len(self._outbox) >= self._config.outbox_max:
            self.stats.outbox_dropped += 1
            return
        if isinstance(message, (Ping, Ack, PingReq, Gossip)):
            base = len(encode_wire(message, [])) + _UPDATES_ARRAY_OVERHEAD
            wires: list[dict] = []
            if lead is not None:
                wires.append(update_to_wire(lead))
                base += wire_size(wires[0])
            wires += self._broadcasts.take(self._config.packet_size_max - base, 0,
                                           self._transmit_limit(), first_key=first_key,
                                           skip_key=None if lead is None else lead.node_id)
            if require_updates and not wires:
                return
            packet = encode_wire(message, wires)
        else:
            packet = encode_wire(message)
        self.stats.packets_out += 1
        self._outbox.append(Send(to_addr, packet))

    def _send_sync(self, to_addr: str, reply: bool) -> None:
        budget = self._config.sync_packet_size_max - 64
        me = self._members[self.node_id]
        updates = [me.update(me.state)]
        used = wire_size(update_to_wire(updates[0]))
        others = sorted(k for k in self._members if k != self.node_id)
        self._rng.shuffle(others)   # over budget, each exchange carries a different subset
        for node_id in others:
            record = self._members[node_id]
            update = Update(record.node_id, record.address, record.incarnation, record.state,
                            record.meta, self.node_id)
            if len(updates) >= UPDATES_COUNT_MAX:
                break               # the receiver's decoder caps a datagram's update count
            size = wire_size(update_to_wire(update))
            if used + size > budget:
                continue
            used += size
            updates.append(update)
        self._send(to_addr, Sync(self.node_id, reply, tuple(updates)))

    def _sync_interval_ns(self) -> int:
        # memberlist pushPullScale: beyond 32 members, stretch the interval by
        # ceil(log2(N) - log2(32)) + 1, so cluster-wide sync traffic grows ~N log N, not N^2.
        n = len(self._members)
        if n <= 32:
            return self._config.sync_interval_ns
        return self._config.sync_interval_ns * (math.ceil(math.log2(n) - 5) + 1)

    def _transmit_limit(self) -> int:
        # memberlist retransmitLimit: mult * ceil(log10(N + 1)).
        return self._config.retransmit_mult * max(1, math.ceil(math.log10(len(self._members) + 1)))

    def _broadcast(self, u: Update) -> None:
        wire = update_to_wire(u)
        self._broadcasts.queue(u.node_id, wire, wire_size(wire))

    def _emit(self, event: MemberEvent) -> None:
        if len(self._events) >= self._config.events_max:
            del self._events[0]
            self.stats.events_dropped += 1
        self._events.append(event)

    def _bump_incarnation(self, incarnation: int) -> None:
        assert incarnation > self.incarnation
        self.incarnation = incarnation
        me = self._members[self.node_id]
        me.incarnation = incarnation
        me.meta = self._meta
        me.state = State.ALIVE
        self._broadcast(me.update(State.ALIVE))

    def _reassert(self, accuser: str, from_addr: str | None) -> None:
        """Send our current record straight to whoever accused us (and to the sender of the
        datagram that carried the accusation), besides gossiping it."""
        me = self._members[self.node_id]
        alive = me.update(State.ALIVE)
        self._broadcast(alive)
        targets = set()
        if from_addr is not None:
            targets.add(from_addr)
        record = self._members.get(accuser)
        if record is not None and accuser != self.node_id:
            targets.add(record.address)
        for address in sorted(targets):
            self._send(address, Gossip(self.node_id, ()), lead=alive)

    def _bump_awareness(self, delta: int) -> None:
        self.awareness = min(max(self.awareness + delta, 0), self._config.awareness_max - 1)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _check_invariants(self) -> None:
        for node_id in self._suspicions:
            assert self._members[node_id].state == State.SUSPECT, node_id
        me = self._members[self.node_id]
        assert me.incarnation == self.incarnation
        assert (me.state == State.LEFT) == self._left
        assert len(self._outbox) <= self._config.outbox_max
        assert len(self._events) <= self._config.events_max
        assert len(self._relays) <= self._config.relays_max
        assert len(self._members) <= self._config.members_max
        assert len(self._probe_first) <= len(self._members)
        assert len(self._failed) <= self._config.members_max
