"""MetadataState: the replicated metadata, and the deterministic apply of commands to it.

Owns: queues (name -> attributes, tags, creation time), queue partitions (id -> queue, replica set,
leader, epoch, in-sync set) and cluster members. Every node applies the same committed commands in
the same order (Raft state-machine safety), so `apply` must be a pure function of (state, command):
no clock, no randomness, no iteration over unsorted sets, no dependence on the node. Expected
failures (QueueAlreadyExists, QueueDoesNotExist, InvalidParameter, ...) are *results* of apply,
identical on every node; they never raise out of apply.

Adding a command kind (users, keys, policies in later issues): write `def _apply_x(state, args)`
returning a value or raising a QnodeError, and register it with `@handler("x")`.

Invariants: every partition's leader (if any) is in its replica set; in_sync is a subset of the
replica set; epochs never decrease; a partition's queue exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import msgpack

from qnode.metadata.commands import Command
from qnode.protocol.errors import (
    ErrorCode, InvalidParameter, QnodeError, QueueAlreadyExists, QueueDoesNotExist, ResourceNotFound,
    error_for_code,
)

queue_count_max = 1_000_000      # metadata for more queues than this is refused (InvalidParameter)
tag_count_max = 50               # SQS: at most 50 tags per queue


@dataclass(frozen=True, slots=True)
class QueueMeta:
    name: str
    attributes: dict[str, str]
    tags: dict[str, str]
    created_ms: int
    created_index: int           # Raft index that created it: distinguishes a re-created queue


@dataclass(frozen=True, slots=True)
class PartitionMeta:
    partition_id: str
    queue: str
    replicas: tuple[str, ...]
    leader: str | None
    epoch: int
    in_sync: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MemberMeta:
    node_id: str
    address: str
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """The outcome of one command: `value` on success, else the error code and message."""
    index: int
    kind: str
    value: Any = None
    error_code: ErrorCode | None = None
    error_message: str = ""

    @property
    def ok(self) -> bool:
        return self.error_code is None

    def raise_for_error(self) -> Any:
        if self.error_code is not None:
            raise error_for_code(self.error_code)(self.error_message)
        return self.value


_HANDLERS: dict[str, Callable[["MetadataState", dict[str, Any]], Any]] = {}


def handler(kind: str) -> Callable:
    def register(fn: Callable) -> Callable:
        assert kind not in _HANDLERS, kind
        _HANDLERS[kind] = fn
        return fn
    return register


class MetadataState:
    def __init__(self) -> None:
        self.queues: dict[str, QueueMeta] = {}
        self.partitions: dict[str, PartitionMeta] = {}
        self.members: dict[str, MemberMeta] = {}
        self.applied_index = 0
        self._current_index = 0

    # --- apply -----------------------------------------------------------------------------
    def apply(self, index: int, data: bytes) -> ApplyResult:
        """Apply the command in Raft entry `index`. Never raises for bad commands: an undecodable
        or unknown command is an InvalidParameter result (a peer cannot crash every node)."""
        assert index > self.applied_index, (index, self.applied_index)
        self.applied_index = index
        self._current_index = index
        try:
            cmd = Command.decode(data)
        except (ValueError, TypeError, AssertionError, msgpack.UnpackException) as exc:
            return ApplyResult(index, "?", error_code=ErrorCode.INVALID_PARAMETER,
                               error_message=f"undecodable command: {type(exc).__name__}")
        fn = _HANDLERS.get(cmd.kind)
        if fn is None:
            return ApplyResult(index, cmd.kind, error_code=ErrorCode.UNKNOWN_OPERATION,
                               error_message=f"unknown command {cmd.kind!r}")
        try:
            value = fn(self, cmd.args)
        except QnodeError as exc:
            return ApplyResult(index, cmd.kind, error_code=exc.code, error_message=exc.message)
        except (KeyError, TypeError, ValueError) as exc:
            return ApplyResult(index, cmd.kind, error_code=ErrorCode.INVALID_PARAMETER,
                               error_message=f"malformed {cmd.kind}: {type(exc).__name__}")
        self.check_invariants()
        return ApplyResult(index, cmd.kind, value=value)

    def skip(self, index: int) -> None:
        """A Raft entry that carries no command (no-op, configuration change)."""
        assert index > self.applied_index
        self.applied_index = index

    # --- reads -----------------------------------------------------------------------------
    def get_queue(self, name: str) -> QueueMeta | None:
        return self.queues.get(name)

    def list_queues(self, prefix: str = "") -> list[str]:
        return sorted(n for n in self.queues if n.startswith(prefix))

    # --- snapshot --------------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """Deterministic bytes: equal states give equal snapshots (sorted keys everywhere)."""
        return msgpack.packb({
            "applied_index": self.applied_index,
            "queues": [[q.name, sorted(q.attributes.items()), sorted(q.tags.items()), q.created_ms, q.created_index]
                       for q in (self.queues[n] for n in sorted(self.queues))],
            "partitions": [[p.partition_id, p.queue, list(p.replicas), p.leader, p.epoch, list(p.in_sync)]
                           for p in (self.partitions[k] for k in sorted(self.partitions))],
            "members": [[m.node_id, m.address, list(m.roles)] for m in (self.members[k] for k in sorted(self.members))],
        }, use_bin_type=True)

    @staticmethod
    def restore(data: bytes) -> "MetadataState":
        d = msgpack.unpackb(data, raw=False)
        s = MetadataState()
        s.applied_index = d["applied_index"]
        for name, attrs, tags, created_ms, created_index in d["queues"]:
            s.queues[name] = QueueMeta(name, dict(attrs), dict(tags), created_ms, created_index)
        for pid, queue, replicas, leader, epoch, in_sync in d["partitions"]:
            s.partitions[pid] = PartitionMeta(pid, queue, tuple(replicas), leader, epoch, tuple(in_sync))
        for node_id, address, roles in d["members"]:
            s.members[node_id] = MemberMeta(node_id, address, tuple(roles))
        s.check_invariants()
        return s

    def check_invariants(self) -> None:
        for p in self.partitions.values():
            assert p.leader is None or p.leader in p.replicas, p
            assert set(p.in_sync) <= set(p.replicas), p
            assert p.queue in self.queues, p


def _str_map(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidParameter(f"{what} must map strings to strings")
    return dict(value)


def _queue(state: MetadataState, name: Any) -> QueueMeta:
    q = state.queues.get(name) if isinstance(name, str) else None
    if q is None:
        raise QueueDoesNotExist(f"queue {name!r} does not exist")
    return q


@handler("create_queue")
def _apply_create_queue(state: MetadataState, args: dict[str, Any]) -> QueueMeta:
    name = args["name"]
    if not isinstance(name, str) or not name:
        raise InvalidParameter("queue name must be a non-empty string")
    attributes = _str_map(args.get("attributes", {}), "attributes")
    tags = _str_map(args.get("tags", {}), "tags")
    existing = state.queues.get(name)
    if existing is not None:
        # SQS CreateQueue is idempotent for identical attributes, a conflict otherwise.
        if existing.attributes != attributes:
            raise QueueAlreadyExists(f"queue {name!r} exists with other attributes")
        return existing
    if len(state.queues) >= queue_count_max:
        raise InvalidParameter("too many queues")
    if len(tags) > tag_count_max:
        raise InvalidParameter("too many tags")
    q = QueueMeta(name, attributes, tags, int(args.get("created_ms", 0)), state._current_index)
    state.queues[name] = q
    return q


@handler("delete_queue")
def _apply_delete_queue(state: MetadataState, args: dict[str, Any]) -> None:
    q = _queue(state, args["name"])
    del state.queues[q.name]
    for pid in sorted(state.partitions):
        if state.partitions[pid].queue == q.name:
            del state.partitions[pid]


@handler("set_queue_attributes")
def _apply_set_queue_attributes(state: MetadataState, args: dict[str, Any]) -> QueueMeta:
    q = _queue(state, args["name"])
    attributes = dict(q.attributes)
    attributes.update(_str_map(args["attributes"], "attributes"))
    new = QueueMeta(q.name, attributes, q.tags, q.created_ms, q.created_index)
    state.queues[q.name] = new
    return new


@handler("tag_queue")
def _apply_tag_queue(state: MetadataState, args: dict[str, Any]) -> QueueMeta:
    q = _queue(state, args["name"])
    tags = dict(q.tags)
    tags.update(_str_map(args["tags"], "tags"))
    if len(tags) > tag_count_max:
        raise InvalidParameter("too many tags")
    new = QueueMeta(q.name, q.attributes, tags, q.created_ms, q.created_index)
    state.queues[q.name] = new
    return new


@handler("untag_queue")
def _apply_untag_queue(state: MetadataState, args: dict[str, Any]) -> QueueMeta:
    q = _queue(state, args["name"])
    keys = args["keys"]
    if not isinstance(keys, list):
        raise InvalidParameter("keys must be a list")
    tags = {k: v for k, v in q.tags.items() if k not in keys}
    new = QueueMeta(q.name, q.attributes, tags, q.created_ms, q.created_index)
    state.queues[q.name] = new
    return new


@handler("set_partition")
def _apply_set_partition(state: MetadataState, args: dict[str, Any]) -> PartitionMeta:
    pid = args["partition_id"]
    _queue(state, args["queue"])
    replicas = tuple(args["replicas"])
    leader = args["leader"]
    in_sync = tuple(args["in_sync"])
    epoch = int(args["epoch"])
    if leader is not None and leader not in replicas:
        raise InvalidParameter("partition leader must be a replica")
    if not set(in_sync) <= set(replicas):
        raise InvalidParameter("in-sync replicas must be replicas")
    old = state.partitions.get(pid)
    if old is not None and epoch < old.epoch:
        raise InvalidParameter(f"partition epoch {epoch} is older than {old.epoch}")
    p = PartitionMeta(pid, args["queue"], replicas, leader, epoch, in_sync)
    state.partitions[pid] = p
    return p


@handler("delete_partition")
def _apply_delete_partition(state: MetadataState, args: dict[str, Any]) -> None:
    pid = args["partition_id"]
    if pid not in state.partitions:
        raise ResourceNotFound(f"partition {pid!r} does not exist")
    del state.partitions[pid]


@handler("set_member")
def _apply_set_member(state: MetadataState, args: dict[str, Any]) -> MemberMeta:
    m = MemberMeta(args["node_id"], args["address"], tuple(sorted(args["roles"])))
    state.members[m.node_id] = m
    return m


@handler("remove_member")
def _apply_remove_member(state: MetadataState, args: dict[str, Any]) -> None:
    if args["node_id"] not in state.members:
        raise ResourceNotFound(f"member {args['node_id']!r} does not exist")
    del state.members[args["node_id"]]
