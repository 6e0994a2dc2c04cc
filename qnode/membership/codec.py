"""Wire format of SWIM datagrams: typed messages <-> msgpack bytes, with bounded decoding.

Owns: the message dataclasses (`Ping`, `Ack`, `PingReq`, `Nack`, `Gossip`, `Sync`, and the
`Update` records they carry) and their encoding. One datagram is one msgpack map
`{"v": 1, "t": <type>, ...}` with short keys; piggybacked updates ride in `"g"`.

Invariants:
- `decode` never raises anything but `SwimDecodeError` (a `ProtocolViolation`, code
  PROTOCOL_ERROR) on any input: oversized datagrams, truncated or garbage msgpack, wrong types,
  out-of-range numbers and unknown message types are all rejected before any field is trusted.
- msgpack is unpacked with explicit caps (string, array and map lengths; no bin/ext), so a
  hostile datagram cannot make the decoder allocate more than a few times its own size.
- `encode(decode(b))` round-trips every message `decode` accepts (the fuzz test checks it).
Must never: do I/O, or import asyncio, socket, os, time or random.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from qnode.membership.types import Meta, State, check_address, check_node_id
from qnode.protocol.errors import ProtocolViolation

VERSION = 1
DATAGRAM_SIZE_MAX = 65_507          # the largest UDP payload over IPv4
SEQ_MAX = 2**63 - 1
INCARNATION_MAX = 2**63 - 1
UPDATES_COUNT_MAX = 512             # updates in one datagram (a 60 KB sync holds ~400)
_STR_LEN_MAX = 1024                 # no string field is longer (ids and addresses are < 300)
_ARRAY_LEN_MAX = UPDATES_COUNT_MAX
_MAP_LEN_MAX = 32                   # the widest map is a Meta load map (16 gauges)


class SwimDecodeError(ProtocolViolation):
    """A datagram that is not a valid SWIM message; the packet is dropped."""


# --- messages ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Update:
    """What `source` believes about `node_id` (SWIM §4.2's alive/suspect/confirm messages)."""

    node_id: str
    address: str
    incarnation: int
    state: State
    meta: Meta
    source: str     # who asserts it; suspicion confirmations are counted per distinct source


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int
    source: str
    target: str                 # the node id the sender means to probe (an address may be reused)
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int
    source: str
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class PingReq:
    """SWIM §3.1 ping-req: "please probe `target` at `target_address` and tell me"."""

    seq: int
    source: str
    target: str
    target_address: str
    updates: tuple[Update, ...] = ()


@dataclass(frozen=True, slots=True)
class Nack:
    """Lifeguard: the relay did not hear from the target; proves the relay path itself works."""

    seq: int
    source: str


@dataclass(frozen=True, slots=True)
class Gossip:
    source: str
    updates: tuple[Update, ...]


@dataclass(frozen=True, slots=True)
class Sync:
    """Push-pull state exchange: the sender's member table; `reply` asks for ours back."""

    source: str
    reply: bool
    members: tuple[Update, ...]


Message = Ping | Ack | PingReq | Nack | Gossip | Sync

_T_PING, _T_ACK, _T_PING_REQ, _T_NACK, _T_GOSSIP, _T_SYNC = 1, 2, 3, 4, 5, 6


# --- encoding ----------------------------------------------------------------------------------

def meta_to_wire(meta: Meta) -> dict:
    wire: dict = {}
    if meta.roles:
        wire["r"] = list(meta.roles)
    if meta.binary_address:
        wire["b"] = meta.binary_address
    if meta.http_address:
        wire["h"] = meta.http_address
    if meta.cell:
        wire["c"] = meta.cell
    if meta.load:
        wire["l"] = dict(meta.load)
    return wire


def update_to_wire(update: Update) -> dict:
    return {"n": update.node_id, "a": update.address, "i": update.incarnation,
            "s": int(update.state), "m": meta_to_wire(update.meta), "f": update.source}


def wire_size(obj: object) -> int:
    """Encoded size of a wire object (used to fill datagrams up to their byte budget)."""
    return len(msgpack.packb(obj, use_bin_type=True))


def encode_wire(message: Message, update_wires: list[dict] | None = None) -> bytes:
    """Encode `message`; `update_wires`, if given, replaces `message.updates` (already-encoded
    dicts from the broadcast queue, so each update is converted once, not once per send)."""
    if isinstance(message, Sync):
        body: dict = {"t": _T_SYNC, "src": message.source, "rep": message.reply,
                      "ms": [update_to_wire(u) for u in message.members]}
    elif isinstance(message, Nack):
        body = {"t": _T_NACK, "seq": message.seq, "src": message.source}
    else:
        if isinstance(message, Ping):
            body = {"t": _T_PING, "seq": message.seq, "src": message.source, "dst": message.target}
        elif isinstance(message, Ack):
            body = {"t": _T_ACK, "seq": message.seq, "src": message.source}
        elif isinstance(message, PingReq):
            body = {"t": _T_PING_REQ, "seq": message.seq, "src": message.source,
                    "dst": message.target, "da": message.target_address}
        elif isinstance(message, Gossip):
            body = {"t": _T_GOSSIP, "src": message.source}
        else:
            raise AssertionError(f"unknown message {message!r}")
        wires = update_wires if update_wires is not None else [update_to_wire(u) for u in message.updates]
        if wires:
            body["g"] = wires
    body["v"] = VERSION
    return msgpack.packb(body, use_bin_type=True)


def encode(message: Message) -> bytes:
    return encode_wire(message)


# --- decoding ----------------------------------------------------------------------------------

def decode(data: bytes, size_max: int = DATAGRAM_SIZE_MAX) -> Message:
    """Decode one datagram. Returns a message; raises `SwimDecodeError` on anything invalid."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SwimDecodeError("datagram must be bytes")
    if len(data) > size_max:
        raise SwimDecodeError(f"datagram of {len(data)} bytes exceeds {size_max}")
    try:
        body = msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=True,
            max_str_len=_STR_LEN_MAX, max_bin_len=0, max_ext_len=0,
            max_array_len=_ARRAY_LEN_MAX, max_map_len=_MAP_LEN_MAX,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # FormatError, StackError, ExtraData and UnicodeDecodeError are all ValueErrors.
        raise SwimDecodeError(f"bad msgpack: {type(exc).__name__}") from None
    if not isinstance(body, dict):
        raise SwimDecodeError("datagram is not a map")
    if body.get("v") != VERSION:
        raise SwimDecodeError(f"unsupported version {body.get('v')!r}")
    kind = body.get("t")
    try:
        if kind == _T_PING:
            return Ping(_seq(body), _id(body, "src"), _id(body, "dst"), _updates(body, "g"))
        if kind == _T_ACK:
            return Ack(_seq(body), _id(body, "src"), _updates(body, "g"))
        if kind == _T_PING_REQ:
            return PingReq(_seq(body), _id(body, "src"), _id(body, "dst"), _addr(body, "da"),
                           _updates(body, "g"))
        if kind == _T_NACK:
            return Nack(_seq(body), _id(body, "src"))
        if kind == _T_GOSSIP:
            return Gossip(_id(body, "src"), _updates(body, "g"))
        if kind == _T_SYNC:
            reply = body.get("rep")
            if not isinstance(reply, bool):
                raise SwimDecodeError("sync.rep must be a bool")
            return Sync(_id(body, "src"), reply, _updates(body, "ms"))
    except ValueError as exc:      # a type's own validation (Meta, check_address, ...)
        raise SwimDecodeError(str(exc)) from None
    raise SwimDecodeError(f"unknown message type {kind!r}")


def _seq(body: dict) -> int:
    seq = body.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= SEQ_MAX:
        raise SwimDecodeError("seq must be an int in range")
    return seq


def _id(body: dict, key: str) -> str:
    return check_node_id(body.get(key))


def _addr(body: dict, key: str) -> str:
    return check_address(body.get(key))


def _updates(body: dict, key: str) -> tuple[Update, ...]:
    raw = body.get(key, [])
    if not isinstance(raw, list):
        raise SwimDecodeError(f"{key} must be a list")
    return tuple(_update(item) for item in raw)


def _update(item: object) -> Update:
    if not isinstance(item, dict):
        raise SwimDecodeError("an update must be a map")
    incarnation = item.get("i")
    if isinstance(incarnation, bool) or not isinstance(incarnation, int) \
            or not 0 <= incarnation <= INCARNATION_MAX:
        raise SwimDecodeError("incarnation must be an int in range")
    state = item.get("s")
    if isinstance(state, bool) or not isinstance(state, int) or state not in State._value2member_map_:
        raise SwimDecodeError("unknown member state")
    return Update(check_node_id(item.get("n")), check_address(item.get("a")), incarnation,
                  State(state), _meta(item.get("m", {})), check_node_id(item.get("f")))


def _meta(raw: object) -> Meta:
    if not isinstance(raw, dict):
        raise SwimDecodeError("meta must be a map")
    roles = raw.get("r", [])
    load = raw.get("l", {})
    if not isinstance(roles, list) or not isinstance(load, dict):
        raise SwimDecodeError("meta.r must be a list and meta.l a map")
    return Meta(tuple(roles), raw.get("b", ""), raw.get("h", ""), raw.get("c", ""),
                tuple(sorted(load.items())))
