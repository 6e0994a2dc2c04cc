"""Raft message codec: frozen dataclasses <-> msgpack-ready lists, for the TCP transport.

Owns: the wire shape of every Raft message. `encode(msg) -> list` gives a msgpack-ready value
(`[type_tag, term, src, dst, ...fields]`); `decode(value) -> Message` validates types and ranges
and raises `ProtocolViolation` (never another exception) on anything malformed, so a bad peer
cannot crash the core. `to_bytes`/`from_bytes` wrap msgpack for callers that want bytes.
Invariant: decode(encode(m)) == m for every valid message (tests/unit/metadata/test_codec.py).
"""

from __future__ import annotations

from typing import Any

import msgpack

from qnode.metadata.raft.messages import (
    AppendEntries, AppendEntriesResponse, Entry, EntryKind, Heartbeat, HeartbeatResponse,
    InstallSnapshot, Message, RequestVote, RequestVoteResponse, Snapshot,
)
from qnode.protocol.errors import ProtocolViolation

entries_count_max = 10_000
snapshot_size_max = 64 << 20

_TAGS = {RequestVote: 1, RequestVoteResponse: 2, AppendEntries: 3, AppendEntriesResponse: 4,
         Heartbeat: 5, HeartbeatResponse: 6, InstallSnapshot: 7}


def encode(msg: Message) -> list:
    head = [_TAGS[type(msg)], msg.term, msg.src, msg.dst]
    if isinstance(msg, RequestVote):
        return head + [msg.last_index, msg.last_term, msg.pre_vote]
    if isinstance(msg, RequestVoteResponse):
        return head + [msg.granted, msg.pre_vote]
    if isinstance(msg, AppendEntries):
        return head + [msg.prev_index, msg.prev_term, [[e.term, e.index, int(e.kind), e.data] for e in msg.entries],
                       msg.commit]
    if isinstance(msg, AppendEntriesResponse):
        return head + [msg.success, msg.index, msg.hint_index, msg.hint_term]
    if isinstance(msg, Heartbeat):
        return head + [msg.commit, msg.ctx]
    if isinstance(msg, HeartbeatResponse):
        return head + [msg.ctx]
    if isinstance(msg, InstallSnapshot):
        s = msg.snapshot
        return head + [s.index, s.term, list(s.voters), s.data]
    assert False, msg


def _int(v: Any) -> int:
    if type(v) is not int or v < 0:
        raise ProtocolViolation("raft: expected a non-negative integer")
    return v


def _bool(v: Any) -> bool:
    if type(v) is not bool:
        raise ProtocolViolation("raft: expected a boolean")
    return v


def _str(v: Any) -> str:
    if type(v) is not str or not v or len(v) > 256:
        raise ProtocolViolation("raft: expected a node id")
    return v


def _bytes(v: Any, size_max: int) -> bytes:
    if type(v) is not bytes or len(v) > size_max:
        raise ProtocolViolation("raft: expected bytes")
    return v


def decode(value: Any) -> Message:
    try:
        return _decode(value)
    except ProtocolViolation:
        raise
    except (AssertionError, ValueError, TypeError, IndexError) as exc:
        raise ProtocolViolation(f"raft: malformed message ({type(exc).__name__})") from None


def _decode(v: Any) -> Message:
    if type(v) is not list or len(v) < 4:
        raise ProtocolViolation("raft: message must be a list")
    tag, term, src, dst, *rest = v
    term, src, dst = _int(term), _str(src), _str(dst)
    if tag == 1 and len(rest) == 3:
        return RequestVote(term, src, dst, _int(rest[0]), _int(rest[1]), _bool(rest[2]))
    if tag == 2 and len(rest) == 2:
        return RequestVoteResponse(term, src, dst, _bool(rest[0]), _bool(rest[1]))
    if tag == 3 and len(rest) == 4:
        raw = rest[2]
        if type(raw) is not list or len(raw) > entries_count_max:
            raise ProtocolViolation("raft: bad entries")
        entries = []
        for item in raw:
            if type(item) is not list or len(item) != 4:
                raise ProtocolViolation("raft: bad entry")
            entries.append(Entry(_int(item[0]), _int(item[1]), EntryKind(_int(item[2])), _bytes(item[3], snapshot_size_max)))
        return AppendEntries(term, src, dst, _int(rest[0]), _int(rest[1]), tuple(entries), _int(rest[3]))
    if tag == 4 and len(rest) == 4:
        return AppendEntriesResponse(term, src, dst, _bool(rest[0]), _int(rest[1]), _int(rest[2]), _int(rest[3]))
    if tag == 5 and len(rest) == 2:
        return Heartbeat(term, src, dst, _int(rest[0]), _int(rest[1]))
    if tag == 6 and len(rest) == 1:
        return HeartbeatResponse(term, src, dst, _int(rest[0]))
    if tag == 7 and len(rest) == 4:
        voters = rest[2]
        if type(voters) is not list or len(voters) > 64:
            raise ProtocolViolation("raft: bad voters")
        snap = Snapshot(_int(rest[0]), _int(rest[1]), tuple(_str(x) for x in voters), _bytes(rest[3], snapshot_size_max))
        return InstallSnapshot(term, src, dst, snap)
    raise ProtocolViolation(f"raft: unknown message tag {tag!r}")


def to_bytes(msg: Message) -> bytes:
    return msgpack.packb(encode(msg), use_bin_type=True)


def from_bytes(data: bytes) -> Message:
    try:
        value = msgpack.unpackb(data, raw=False, max_bin_len=snapshot_size_max, max_array_len=entries_count_max)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ProtocolViolation(f"raft: undecodable message ({type(exc).__name__})") from None
    return decode(value)
