"""Raft message codec: every message type round-trips, and malformed input (wrong types, wrong
lengths, random bytes) raises ProtocolViolation and nothing else. Method: explicit examples plus
hypothesis-generated garbage.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from qnode.metadata.raft import codec
from qnode.metadata.raft.messages import (
    AppendEntries, AppendEntriesResponse, Entry, EntryKind, Heartbeat, HeartbeatResponse,
    InstallSnapshot, RequestVote, RequestVoteResponse, Snapshot,
)
from qnode.protocol.errors import ProtocolViolation

EXAMPLES = [
    RequestVote(3, "n1", "n2", 10, 2, True),
    RequestVoteResponse(3, "n2", "n1", False, False),
    AppendEntries(4, "n1", "n3", 5, 3, (Entry(4, 6, EntryKind.NORMAL, b"x"), Entry(4, 7, EntryKind.CONF_CHANGE, b"0:n4")), 5),
    AppendEntriesResponse(4, "n3", "n1", False, 5, 4, 2),
    Heartbeat(4, "n1", "n2", 7, 12),
    HeartbeatResponse(4, "n2", "n1", 12),
    InstallSnapshot(5, "n1", "n2", Snapshot(100, 4, ("n1", "n2", "n3"), b"state")),
]


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg):
    assert codec.from_bytes(codec.to_bytes(msg)) == msg


@pytest.mark.parametrize("bad", [[], [99, 1, "a", "b"], [1, -1, "a", "b", 0, 0, True], [1, 1, "a", "b", 0, 0, 1],
                                 [3, 1, "a", "b", 0, 0, [[1, 5, 0, b""]], 0], [6, 1, "", "b", 0], "x", None])
def test_malformed_values_are_protocol_violations(bad):
    with pytest.raises(ProtocolViolation):
        codec.decode(bad)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_protocol_violation(data):
    try:
        codec.from_bytes(data)
    except ProtocolViolation:
        pass
