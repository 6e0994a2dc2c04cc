"""ClusterQueues: the node's `QueueApi` once queue definitions live in the Raft metadata store.

Owns: the rule "queue definitions change only through Raft". Create / delete / set attributes /
tag / untag / add and remove permission are validated here with the backend's attribute code
(`qnode.backend.attributes`, so metadata holds the same canonical values the engine stores),
then proposed (`MetadataNode.propose`: the leader proposes, a follower forwards). Conflicts
between racing proposals (QueueAlreadyExists, QueueDoesNotExist) are decided by the metadata
state machine, identically on every node. Reads of definitions (get_queue, list_queues, tags)
come from this node's applied metadata state; message operations go to the local backend when
this node has the backend role, else they fail with Unavailable.

Attribute removal: SQS clears Policy / RedrivePolicy / RedriveAllowPolicy /
qnode:RedeliveryBackoff with an empty value. Metadata keeps the "" (its set handler only
merges), and every reader drops it (`clean()`); the materializer passes it to the backend,
which removes the key. This keeps each change a race-free delta.

After a successful change the call waits until the local backend has materialized it
(`Materializer.settle()`), so a send right after create_queue on the same node finds the queue.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Sequence

from qnode.backend import attributes as qattrs
from qnode.cluster.materialize import Materializer, clean
from qnode.cluster.metanode import MetadataNode
from qnode.frontend.api import Consumer, MoveTask, QueueInfo, ReceivedMessage, SendEntry, SendResult
from qnode.metadata import commands
from qnode.metadata.state import MetadataState, QueueMeta
from qnode.protocol.errors import (
    InvalidParameter, QnodeError, QueueAlreadyExists, QueueDoesNotExist, Unavailable,
)

TAG_COUNT_MAX = 50


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class ClusterQueues:
    def __init__(self, meta: MetadataNode, backend: Any | None, materializer: Materializer | None, *,
                 region: str, account_id: str, clock_ms: Callable[[], int] = _wall_ms) -> None:
        self.meta = meta
        self.backend = backend
        self.materializer = materializer
        self.region = region
        self.account_id = account_id
        self._clock_ms = clock_ms

    # --- helpers ---------------------------------------------------------------------------
    def _state(self) -> MetadataState:
        store = self.meta.store
        if store is None:
            raise Unavailable("the metadata group has not formed yet")
        return store.state

    def _meta(self, name: str) -> QueueMeta:
        q = self._state().get_queue(name)
        if q is None:
            raise QueueDoesNotExist(f"queue {name} does not exist")
        return q

    def arn(self, name: str) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account_id}:{name}"

    def _info(self, q: QueueMeta) -> QueueInfo:
        return QueueInfo(q.name, qattrs.effective(clean(q.attributes), q.name.endswith(".fifo")), dict(q.tags))

    def _backend(self) -> Any:
        if self.backend is None:
            raise Unavailable("this node has no backend role; send message operations to a backend node")
        return self.backend

    async def _commit(self, cmd: commands.Command) -> None:
        await self.meta.propose(cmd)
        if self.materializer is not None:
            await self.materializer.settle()

    @staticmethod
    def _check_tags(tags: Mapping[str, str]) -> None:
        if len(tags) > TAG_COUNT_MAX:
            raise InvalidParameter("a queue has at most 50 tags")
        for k, v in tags.items():
            if not isinstance(k, str) or not 1 <= len(k) <= 128 or not isinstance(v, str) or len(v) > 256:
                raise InvalidParameter("tag keys are 1..128 characters, values up to 256")

    def _check_redrive(self, state: MetadataState, name: str, fifo: bool, stored: Mapping[str, str]) -> None:
        """The engine's rule, on metadata: the DLQ exists, has the same type, and allows us."""
        policy = stored.get("RedrivePolicy")
        if not policy:
            return
        arn, _ = qattrs.parse_redrive_policy(policy)
        prefix = f"arn:aws:sqs:{self.region}:{self.account_id}:"
        dlq = state.get_queue(arn[len(prefix):]) if arn.startswith(prefix) else None
        if dlq is None or dlq.name == name:
            raise InvalidParameter("the dead-letter target queue does not exist")
        if dlq.name.endswith(".fifo") != fifo:
            raise InvalidParameter("a FIFO queue's dead-letter queue must be FIFO, and vice versa")
        allow = clean(dlq.attributes).get("RedriveAllowPolicy")
        if allow:
            permission, sources = qattrs.parse_redrive_allow_policy(allow)
            if permission == "denyAll" or (permission == "byQueue" and self.arn(name) not in sources):
                raise InvalidParameter("the dead-letter queue's RedriveAllowPolicy denies this source")

    @staticmethod
    def _check_fifo_attrs(fifo: bool, attrs: Mapping[str, str]) -> None:
        if not fifo:
            return
        eff = qattrs.effective(attrs, fifo)
        if eff["FifoThroughputLimit"] == "perMessageGroupId" and eff["DeduplicationScope"] != "messageGroup":
            raise qattrs.InvalidAttributeValue(
                "FifoThroughputLimit=perMessageGroupId needs DeduplicationScope=messageGroup")

    # --- queue definitions -----------------------------------------------------------------
    async def create_queue(self, name: str, attributes: Mapping[str, str] | None = None,
                           tags: Mapping[str, str] | None = None) -> QueueInfo:
        attributes = dict(attributes or {})
        fifo = attributes.get("FifoQueue") == "true" or name.endswith(".fifo")
        qattrs.validate_queue_name(name, fifo)
        if name.endswith(".fifo") and attributes.get("FifoQueue") != "true":
            raise InvalidParameter("a .fifo queue needs the attribute FifoQueue=true")
        stored = qattrs.normalise(attributes, fifo, creating=True)
        self._check_tags(tags or {})
        state = self._state()
        existing = state.get_queue(name)
        if existing is not None:
            current = qattrs.effective(clean(existing.attributes), fifo)
            if any(current.get(k) != v for k, v in stored.items()):
                raise QueueAlreadyExists(f"queue {name} exists with other attributes")
            return self._info(existing)
        self._check_redrive(state, name, fifo, stored)
        self._check_fifo_attrs(fifo, stored)
        await self._commit(commands.create_queue(name, stored, dict(tags or {}), created_ms=self._clock_ms()))
        return self._info(self._meta(name))

    async def delete_queue(self, name: str) -> None:
        self._meta(name)
        await self._commit(commands.delete_queue(name))

    async def get_queue(self, name: str) -> QueueInfo:
        return self._info(self._meta(name))

    async def list_queues(self, prefix: str | None = None) -> list[str]:
        return self._state().list_queues(prefix or "")

    async def get_queue_attributes(self, name: str, names: Sequence[str] = ("All",)) -> dict[str, str]:
        q = self._meta(name)
        if self.backend is not None:
            try:
                return await self.backend.get_queue_attributes(name, names)
            except QueueDoesNotExist:
                pass                              # not materialized here yet: metadata's view
        wanted = set(names) if names else {"All"}
        for n in wanted:
            if n != "All" and n not in qattrs.ALL_NAMES:
                raise qattrs.InvalidAttributeName(f"unknown attribute {n!r}")
        out = qattrs.effective(clean(q.attributes), name.endswith(".fifo"))
        out.update({"QueueArn": self.arn(name), "CreatedTimestamp": str(q.created_ms // 1000)})
        return out if "All" in wanted else {k: v for k, v in out.items() if k in wanted}

    async def set_queue_attributes(self, name: str, attributes: Mapping[str, str]) -> None:
        q = self._meta(name)
        fifo = name.endswith(".fifo")
        stored = qattrs.normalise(attributes, fifo, creating=False)
        self._check_redrive(self._state(), name, fifo, stored)
        merged = {**clean(q.attributes), **stored}
        self._check_fifo_attrs(fifo, clean(merged))
        await self._commit(commands.set_queue_attributes(name, stored))

    async def purge_queue(self, name: str) -> None:
        self._meta(name)
        await self._backend().purge_queue(name)

    async def tag_queue(self, name: str, tags: Mapping[str, str]) -> None:
        q = self._meta(name)
        self._check_tags({**q.tags, **tags})
        await self._commit(commands.tag_queue(name, dict(tags)))

    async def untag_queue(self, name: str, keys: Sequence[str]) -> None:
        self._meta(name)
        await self._commit(commands.untag_queue(name, list(keys)))

    async def list_queue_tags(self, name: str) -> dict[str, str]:
        return dict(self._meta(name).tags)

    async def add_permission(self, name: str, label: str, account_ids: Sequence[str],
                             actions: Sequence[str]) -> None:
        q = self._meta(name)
        policy = qattrs.policy_with_permission(clean(q.attributes).get("Policy"), self.arn(name),
                                               label, account_ids, actions)
        await self._commit(commands.set_queue_attributes(name, {"Policy": policy}))

    async def remove_permission(self, name: str, label: str) -> None:
        q = self._meta(name)
        policy = qattrs.policy_without_permission(clean(q.attributes).get("Policy"), label)
        await self._commit(commands.set_queue_attributes(name, {"Policy": policy}))

    def queue_url(self, name: str) -> str:
        backend = self.backend
        if backend is not None:
            return backend.queue_url(name)
        return f"http://sqs.{self.region}.localhost/{self.account_id}/{name}"

    # --- messages: the local backend ---------------------------------------------------------
    async def send_messages(self, name: str, entries: Sequence[SendEntry]) -> list[SendResult | QnodeError]:
        return await self._backend().send_messages(name, entries)

    async def receive_messages(self, name: str, **kwargs: Any) -> list[ReceivedMessage]:
        return await self._backend().receive_messages(name, **kwargs)

    async def delete_messages(self, name: str, receipts: Sequence[str]) -> list[None | QnodeError]:
        return await self._backend().delete_messages(name, receipts)

    async def change_visibility(self, name: str, items: Sequence[tuple[str, int]]) -> list[None | QnodeError]:
        return await self._backend().change_visibility(name, items)

    async def nack(self, name: str, receipt: str, delay_ms: int | None = None, reason: str | None = None) -> None:
        await self._backend().nack(name, receipt, delay_ms, reason)

    async def peek(self, name: str, max_count: int = 10) -> list[ReceivedMessage]:
        return await self._backend().peek(name, max_count)

    async def cancel_scheduled(self, name: str, message_id: str) -> None:
        await self._backend().cancel_scheduled(name, message_id)

    async def open_consumer(self, name: str, prefetch: int, visibility_timeout_ms: int | None = None) -> Consumer:
        return await self._backend().open_consumer(name, prefetch, visibility_timeout_ms)

    async def list_dead_letter_source_queues(self, name: str) -> list[str]:
        return await self._backend().list_dead_letter_source_queues(name)

    async def start_message_move_task(self, source_name: str, destination_name: str | None = None,
                                      max_per_second: int | None = None) -> str:
        return await self._backend().start_message_move_task(source_name, destination_name, max_per_second)

    async def cancel_message_move_task(self, task_handle: str) -> int:
        return await self._backend().cancel_message_move_task(task_handle)

    async def list_message_move_tasks(self, source_name: str, max_results: int = 1) -> list[MoveTask]:
        return await self._backend().list_message_move_tasks(source_name, max_results)

    # --- node -------------------------------------------------------------------------------
    def status(self) -> dict:
        out: dict[str, Any] = {}
        if self.backend is not None:
            out.update(self.backend.status())
        raft = self.meta.status()["raft"]
        out["raft"] = {k: v for k, v in raft.items() if isinstance(v, (str, int, list, bool)) or v is None}
        return out

    def stats(self) -> dict:
        return self.backend.stats() if self.backend is not None else {}
