"""SWIM configuration: every timer, multiplier and bound of the membership layer, with profiles.

Owns: `SwimConfig`, a frozen dataclass, its profiles (`lan()`, `local_test()`) and `validate()`.
Invariants: all times are integer nanoseconds (`_ns`); `validate()` returns every problem at once
(an empty list means valid); the core asserts `validate() == []` when it is built.
Must never: read the environment, files or the clock; each component receives its config.

Starting points are HashiCorp memberlist's `DefaultLANConfig` and Lifeguard (Dadgar et al.,
"Lifeguard: Local Health Awareness for More Accurate Failure Detection", 2018); the values that
differ are tuned with the simulator (`python -m tests.sim.swim_sim`), see docs/design/membership.md.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from qnode import limits

MS = 1_000_000
S = 1_000 * MS


@dataclass(frozen=True, slots=True)
class SwimConfig:
    # --- failure detection (SWIM §4, §4.3) ---
    probe_interval_ns: int = 1 * S
    # SWIM's protocol period T': each member probes one member per period.
    probe_timeout_ns: int = 200 * MS
    # Wait this long for a direct ack before asking `indirect_checks` members to probe (ping-req);
    # a relay also waits this long for the target before it answers with a nack. Many LAN round
    # trips (RTT is ~1 ms) plus event-loop lag slack; memberlist uses 500 ms. A node whose loop
    # lags misses acks, and local health awareness then stretches this timeout (x2..x8).
    indirect_timeout_ns: int = 300 * MS
    # After the ping-reqs, wait this long for a relayed ack (or the relays' nacks) before the
    # probe counts as failed: relay timeout + two hops + slack. probe + indirect timeouts must fit
    # in the period; deciding after 500 ms rather than at the end of the period (SWIM's rule,
    # and memberlist's) raises a real failure's suspicion 0.5 s earlier.
    indirect_checks: int = 3
    # SWIM's k: members asked to probe indirectly. More is more robust to a lossy link between
    # the prober and the target, at the cost of 2*k extra packets per failed direct probe.

    # --- suspicion (SWIM §4.2, Lifeguard §IV-B "dynamic suspicion timeout") ---
    suspicion_mult: float = 1.5
    # Minimum suspicion timeout = suspicion_mult * max(1, log10 N) * probe_interval: grows with
    # the time gossip needs to reach N members (1.5 s up to 10 members, 2.7 s at 64).
    # memberlist's LAN default is 4, which cannot meet p99 <= 6 s at 8 members (see
    # docs/design/membership.md); 1.5 meets it with no false downs at 5 % (and 10 %) loss in the
    # simulator, because an unconfirmed suspicion waits suspicion_max_mult times longer and
    # refutations reach the accuser directly. (1.2 was tried: p50 drops, p99 does not move.)
    suspicion_max_mult: float = 6.0
    # Maximum suspicion timeout = suspicion_max_mult * minimum. A suspicion nobody else confirms
    # waits this long, giving a live but slow or lossy member time to refute (memberlist: 6).
    suspicion_confirmations: int = 2
    # Lifeguard's K: independent confirmations (other members' own failed probes) that shrink
    # the timeout from the maximum to the minimum (log-scaled in between). memberlist derives
    # it as suspicion_mult - 2; we set it apart so the minimum can be lowered on its own.

    # --- local health awareness (Lifeguard §IV-A) ---
    awareness_max: int = 8
    # The probe interval and probe timeout are multiplied by (score + 1), score in
    # [0, awareness_max - 1]: a node that misses acks or nacks (its own CPU or network is sick)
    # slows down instead of accusing healthy members (memberlist: 8).

    # --- dissemination (SWIM §4.1, memberlist TransmitLimitedQueue) ---
    retransmit_mult: int = 4
    # Each update is piggybacked at most retransmit_mult * ceil(log10(N + 1)) times, which
    # reaches every member with high probability (epidemic spread; memberlist: 4).
    gossip_interval_ns: int = 200 * MS
    # Besides piggybacking on probes, send pending updates to `gossip_nodes` random members this
    # often (memberlist's gossip ticker). Only runs while updates are pending.
    gossip_nodes: int = 3
    # Fanout of each gossip round (memberlist: 3).
    gossip_to_dead_ns: int = 30 * S
    # Keep gossiping to members declared down/left this long, so that a wrongly declared member
    # learns of it and refutes (memberlist GossipToTheDeadTime: 30 s). Also how long a down or
    # left member stays in the table (rejecting stale "alive" gossip) before it is forgotten.
    broadcast_queue_max: int = limits.swim_broadcast_queue_count_max
    # Piggyback buffer bound: at most this many pending updates; on overflow the most-transmitted
    # (then oldest) update is dropped. One update per member, so this covers 1024 members' churn.
    packet_size_max: int = limits.swim_packet_size_max
    # Bytes per probe/gossip datagram, piggybacked updates included: fits a 1500-byte Ethernet
    # MTU without IP fragmentation (memberlist UDPBufferSize: 1400).

    # --- state sync (push-pull) and join ---
    sync_interval_ns: int = 30 * S
    # Full state exchange with one random member this often: repairs anything gossip missed and
    # merges healed partitions (memberlist PushPullInterval: 30 s).
    sync_packet_size_max: int = limits.swim_sync_packet_size_max
    # A push-pull datagram carries as many member records as fit here (under the 65507-byte UDP
    # limit; ~150 bytes each, so ~400 members); larger tables sync a random subset per exchange.
    reconnect_timeout_ns: int = 6 * 3600 * S
    # Remember a forgotten down member's address this long, and now and then push-pull with it
    # (probability down/alive per sync interval, as serf's reconnect): when a partition heals,
    # the two sides, which declared each other down, find each other again this way.
    join_retry_ns: int = 1 * S
    # First retry delay of a join that got no answer from any seed; doubles each attempt,
    # with +-25 % jitter from the injected RNG.
    join_attempts_max: int = 10
    # Give up joining after this many rounds (the node stays a one-member cluster and can
    # be joined by others).

    # --- bounds ---
    members_max: int = limits.swim_members_count_max
    # Members kept in the table; updates about new members beyond this are ignored (counted).
    relays_max: int = limits.swim_relays_count_max
    # Pending ping-req relays (indirect probes we run for others); more requests are dropped.
    outbox_max: int = limits.swim_outbox_count_max
    # Pending datagrams before the shell takes them; beyond this new sends are dropped (counted).
    events_max: int = limits.swim_events_count_max
    # Pending events before the shell takes them; beyond this the oldest are dropped (counted).

    @staticmethod
    def lan() -> "SwimConfig":
        """Default profile for a LAN / one data centre: the values above."""
        return SwimConfig()

    @staticmethod
    def local_test() -> "SwimConfig":
        """Fast profile for tests on 127.0.0.1: every timer 10x shorter than `lan()`, and a
        doubled suspicion multiplier, because a loaded test machine stalls the event loop for
        tens of ms, which is long next to a 25 ms probe timeout."""
        return SwimConfig(
            suspicion_mult=3.0,
            probe_interval_ns=100 * MS,
            probe_timeout_ns=25 * MS,
            indirect_timeout_ns=35 * MS,
            gossip_interval_ns=20 * MS,
            gossip_to_dead_ns=3 * S,
            sync_interval_ns=3 * S,
            reconnect_timeout_ns=600 * S,
            join_retry_ns=100 * MS,
        )

    def with_(self, **changes: object) -> "SwimConfig":
        return replace(self, **changes)

    def validate(self) -> list[str]:
        """Every problem with this config, as human-readable strings; [] if valid."""
        problems: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"{f.name} must be a number")
            elif value <= 0 and f.name != "indirect_checks":
                problems.append(f"{f.name} must be > 0")
        if problems:
            return problems
        if self.indirect_checks < 0:
            problems.append("indirect_checks must be >= 0")
        if self.probe_timeout_ns + self.indirect_timeout_ns > self.probe_interval_ns:
            problems.append("probe_timeout_ns + indirect_timeout_ns must fit in probe_interval_ns")
        if self.indirect_timeout_ns <= self.probe_timeout_ns:
            problems.append("indirect_timeout_ns must exceed probe_timeout_ns (the relays' own wait)")
        if self.suspicion_max_mult < 1:
            problems.append("suspicion_max_mult must be >= 1")
        if self.packet_size_max < 512:
            problems.append("packet_size_max must be >= 512 (one member update plus headers)")
        if self.sync_packet_size_max > 65_000:
            problems.append("sync_packet_size_max must fit one UDP datagram (<= 65000)")
        if self.sync_packet_size_max < self.packet_size_max:
            problems.append("sync_packet_size_max must be >= packet_size_max")
        return problems
