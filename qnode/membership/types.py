"""Value types of the membership layer: member states, metadata, member snapshots, events, effects.

Owns: the frozen, slotted dataclasses that cross the boundary of the SWIM core (`swim.py`):
what subscribers receive (`MemberUp`, `MemberSuspect`, `MemberDown`, `MemberLeft`,
`MemberUpdated`), what the shell must send (`Send`), and what a member advertises (`Meta`).

Invariants: every value here is immutable and validated when built (a bad value raises
`ValueError` at construction, never later); `Meta.load` is stored as a sorted tuple of pairs so
that equal metadata compares equal and encodes to the same bytes.
Must never: import asyncio, socket, os, time or random (this module is used by the sans-IO core).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Mapping

# Bounds on what one member may advertise (they keep one update well inside a 1400-byte datagram).
NODE_ID_LENGTH_MAX = 128
ADDRESS_LENGTH_MAX = 262            # "[" + 255-char host + "]:" + 5-digit port
ROLES_COUNT_MAX = 8
ROLE_LENGTH_MAX = 32
CELL_LENGTH_MAX = 64
LOAD_KEYS_COUNT_MAX = 16
LOAD_KEY_LENGTH_MAX = 32


class State(IntEnum):
    """A member's state as one node sees it (SWIM §4.2 plus a graceful `LEFT`)."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2      # declared failed by the failure detector ("down")
    LEFT = 3      # announced its own departure (graceful leave); never refuted


def check_node_id(node_id: object) -> str:
    if not isinstance(node_id, str) or not 0 < len(node_id) <= NODE_ID_LENGTH_MAX:
        raise ValueError(f"node id must be a str of 1..{NODE_ID_LENGTH_MAX} characters")
    return node_id


def check_address(address: object) -> str:
    """An address is "host:port" (IPv6 hosts in brackets); returns it unchanged."""
    if not isinstance(address, str) or not 0 < len(address) <= ADDRESS_LENGTH_MAX:
        raise ValueError(f"address must be a str of 1..{ADDRESS_LENGTH_MAX} characters")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"address must be host:port, got {address!r}")
    return address


def split_address(address: str) -> tuple[str, int]:
    """"host:port" or "[v6]:port" -> (host, port)."""
    host, _, port = check_address(address).rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def join_address(host: str, port: int) -> str:
    """(host, port) -> "host:port", bracketing IPv6 hosts."""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class Meta:
    """What a member advertises. Changes are disseminated with an incarnation bump.

    `binary_address` / `http_address` are the node's listeners ("" if it has none);
    `load` is a small map of gauges (for example {"queues": 12, "cpu": 0.4}).
    """

    roles: tuple[str, ...] = ()
    binary_address: str = ""
    http_address: str = ""
    cell: str = ""
    load: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.roles, tuple) or len(self.roles) > ROLES_COUNT_MAX:
            raise ValueError(f"roles must be a tuple of at most {ROLES_COUNT_MAX}")
        for role in self.roles:
            if not isinstance(role, str) or not 0 < len(role) <= ROLE_LENGTH_MAX:
                raise ValueError("each role must be a non-empty short str")
        for address in (self.binary_address, self.http_address):
            if not isinstance(address, str):
                raise ValueError("addresses must be str")
            if address:
                check_address(address)
        if not isinstance(self.cell, str) or len(self.cell) > CELL_LENGTH_MAX:
            raise ValueError(f"cell must be a str of at most {CELL_LENGTH_MAX} characters")
        if not isinstance(self.load, tuple) or len(self.load) > LOAD_KEYS_COUNT_MAX:
            raise ValueError(f"load must hold at most {LOAD_KEYS_COUNT_MAX} gauges")
        previous = None
        for pair in self.load:
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise ValueError("load must be a tuple of (name, number) pairs")
            key, value = pair
            if not isinstance(key, str) or not 0 < len(key) <= LOAD_KEY_LENGTH_MAX:
                raise ValueError("load names must be short non-empty str")
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise ValueError("load values must be finite numbers")
            if previous is not None and key <= previous:
                raise ValueError("load must be sorted by name without duplicates (use Meta.build)")
            previous = key

    @staticmethod
    def build(roles: tuple[str, ...] | list[str] = (), binary_address: str = "",
              http_address: str = "", cell: str = "",
              load: Mapping[str, float] | None = None) -> "Meta":
        """Convenience constructor taking the load as a dict."""
        return Meta(tuple(roles), binary_address, http_address, cell,
                    tuple(sorted((load or {}).items())))

    def load_map(self) -> dict[str, float]:
        return dict(self.load)

    def with_load(self, load: Mapping[str, float]) -> "Meta":
        return Meta(self.roles, self.binary_address, self.http_address, self.cell,
                    tuple(sorted(load.items())))


@dataclass(frozen=True, slots=True)
class Member:
    """A snapshot of one member as the local node sees it."""

    node_id: str
    address: str          # the member's gossip (UDP) address, "host:port"
    incarnation: int
    state: State
    meta: Meta = field(default_factory=Meta)


# --- events (what subscribers receive); the class is the type tag --------------------------------

@dataclass(frozen=True, slots=True)
class MemberUp:
    """The member became ALIVE: newly learned, refuted a suspicion, or came back after down/left."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberSuspect:
    """The member is suspected (SWIM §4.2); it is still counted as a member until declared down."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberDown:
    """The failure detector declared the member failed (its suspicion timed out)."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberLeft:
    """The member left gracefully (it announced its own departure)."""

    member: Member


@dataclass(frozen=True, slots=True)
class MemberUpdated:
    """An ALIVE member changed its metadata or address (with a higher incarnation)."""

    member: Member


MemberEvent = MemberUp | MemberSuspect | MemberDown | MemberLeft | MemberUpdated


# --- effects (what the shell must do) ----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Send:
    """Send `packet` (already encoded) as one datagram to `to_addr` ("host:port")."""

    to_addr: str
    packet: bytes
