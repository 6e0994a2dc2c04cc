"""Metadata commands: what a proposer puts in a Raft entry, and their binary encoding.

Owns: the command envelope `Command(kind, args)` and its msgpack encoding. A command carries
everything its apply needs (names, attributes, timestamps chosen by the proposer), so that apply
is a pure function of (state, command) on every node. New kinds (users, keys, policies) are new
`kind` strings with a handler registered in state.py; nothing here changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack


@dataclass(frozen=True, slots=True)
class Command:
    kind: str
    args: dict[str, Any]

    def encode(self) -> bytes:
        return msgpack.packb([self.kind, self.args], use_bin_type=True)

    @staticmethod
    def decode(data: bytes) -> "Command":
        kind, args = msgpack.unpackb(data, raw=False)
        assert isinstance(kind, str)
        assert isinstance(args, dict)
        return Command(kind, args)


def create_queue(name: str, attributes: dict[str, str] | None = None,
                 tags: dict[str, str] | None = None, created_ms: int = 0) -> Command:
    return Command("create_queue", {"name": name, "attributes": dict(attributes or {}),
                                    "tags": dict(tags or {}), "created_ms": created_ms})


def delete_queue(name: str) -> Command:
    return Command("delete_queue", {"name": name})


def set_queue_attributes(name: str, attributes: dict[str, str]) -> Command:
    return Command("set_queue_attributes", {"name": name, "attributes": dict(attributes)})


def tag_queue(name: str, tags: dict[str, str]) -> Command:
    return Command("tag_queue", {"name": name, "tags": dict(tags)})


def untag_queue(name: str, keys: list[str]) -> Command:
    return Command("untag_queue", {"name": name, "keys": list(keys)})


def set_partition(partition_id: str, queue: str, replicas: list[str], leader: str | None,
                  epoch: int, in_sync: list[str]) -> Command:
    return Command("set_partition", {"partition_id": partition_id, "queue": queue, "replicas": list(replicas),
                                     "leader": leader, "epoch": epoch, "in_sync": list(in_sync)})


def delete_partition(partition_id: str) -> Command:
    return Command("delete_partition", {"partition_id": partition_id})


def set_member(node_id: str, address: str, roles: list[str]) -> Command:
    return Command("set_member", {"node_id": node_id, "address": address, "roles": sorted(roles)})


def remove_member(node_id: str) -> Command:
    return Command("remove_member", {"node_id": node_id})
