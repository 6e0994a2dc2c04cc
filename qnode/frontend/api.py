"""The queue API: the one contract between the listeners (binary protocol, SQS HTTP) and the backend.

Both listeners translate their wire format into calls on a `QueueApi`, and its results back; the
backend (`qnode/backend/service.py`, `BackendService`) implements it on one node, and a later
router implements it across remote backends. Nothing here knows about sockets or HTTP.

Conventions:
- Queue attributes travel as SQS does: a `dict[str, str]` keyed by SQS attribute names
  (`VisibilityTimeout`, `RedrivePolicy`, ...); values are strings. The backend validates them.
- Inside, times carry their unit in the name (`wait_ms`, `delay_ms`); the user-facing client speaks
  seconds and converts at its edge.
- Bodies are `bytes`. The SQS gateway checks SQS's allowed character set before it calls in; the
  native protocol is binary-safe.
- Values are dataclasses; treat them as immutable. The three that every message passes through
  (SendEntry, SendResult, ReceivedMessage) are not `frozen`: a frozen dataclass pays an
  `object.__setattr__` per field (~2 us per object), several times per message on the hot path.
- Errors are `qnode.protocol.errors.QnodeError` subclasses. Batch calls never raise for one bad
  entry: they return the error in that entry's slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence

from qnode.protocol.errors import QnodeError


@dataclass(frozen=True, slots=True)
class MessageAttribute:
    """One message attribute. `data_type` is `String`, `Number` or `Binary`, optionally with a
    custom label (`String.json`). Exactly one of the values is set, matching the type."""

    data_type: str
    string_value: str | None = None
    binary_value: bytes | None = None


@dataclass(slots=True)
class SendEntry:
    body: bytes
    delay_ms: int | None = None              # None: the queue's DelaySeconds
    attributes: Mapping[str, MessageAttribute] = field(default_factory=dict)
    group_id: str | None = None              # MessageGroupId (FIFO; tenant on fair standard queues)
    dedup_id: str | None = None              # MessageDeduplicationId (FIFO)
    deliver_at_ms: int | None = None         # native only: epoch ms of scheduled delivery
    entry_id: str | None = None              # batch entry id, echoed back
    system_attributes: Mapping[str, MessageAttribute] = field(default_factory=dict)  # AWSTraceHeader


@dataclass(slots=True)
class SendResult:
    """The body's MD5 is not here: whoever needs it (the SQS gateway) has the body and digests
    it there, so the engine does not spend it on every message."""

    message_id: str
    md5_attributes: str | None = None
    md5_system_attributes: str | None = None
    sequence_number: str | None = None       # FIFO only
    entry_id: str | None = None
    duplicate: bool = False                  # FIFO: deduplicated, nothing enqueued


@dataclass(slots=True)
class ReceivedMessage:
    message_id: str
    receipt: str | None                      # None for peek
    body: bytes
    md5_attributes: str | None
    attributes: Mapping[str, MessageAttribute]
    # SQS system attributes by name: SentTimestamp, ApproximateReceiveCount,
    # ApproximateFirstReceiveTimestamp, MessageGroupId, MessageDeduplicationId, SequenceNumber,
    # DeadLetterQueueSourceArn, SenderId, AWSTraceHeader; values are strings as in SQS.
    system: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class QueueInfo:
    name: str
    attributes: Mapping[str, str]
    tags: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class MoveTask:
    task_handle: str
    status: str                              # RUNNING | COMPLETED | CANCELLING | CANCELLED | FAILED
    source_arn: str
    destination_arn: str | None
    max_per_second: int | None
    moved_count: int
    to_move_count: int
    started_timestamp_ms: int
    failure_reason: str | None = None


class Consumer(Protocol):
    """A push subscription: the backend delivers up to `prefetch` unacked messages."""

    async def next(self) -> ReceivedMessage:
        """Wait for the next pushed message. Raises ShuttingDown when the node stops."""

    def settle(self, count: int = 1, receipts: Sequence[str] = ()) -> None:
        """Give back credits: the client acked or nacked the messages with these `receipts`
        (or, without receipts, `count` messages). Settled messages no longer return to the
        queue when the subscription closes."""

    async def close(self) -> None:
        """End the subscription; every unacked message returns to the queue at once."""


class QueueApi(Protocol):
    # --- queues --------------------------------------------------------------------------
    async def create_queue(self, name: str, attributes: Mapping[str, str] | None = None,
                           tags: Mapping[str, str] | None = None) -> QueueInfo:
        """Idempotent when the attributes match; QueueAlreadyExists when they differ."""

    async def delete_queue(self, name: str) -> None: ...
    async def get_queue(self, name: str) -> QueueInfo: ...
    async def list_queues(self, prefix: str | None = None) -> list[str]:
        """Names in sorted order."""

    async def get_queue_attributes(self, name: str,
                                   names: Sequence[str] = ("All",)) -> dict[str, str]: ...
    async def set_queue_attributes(self, name: str, attributes: Mapping[str, str]) -> None: ...
    async def purge_queue(self, name: str) -> None:
        """PurgeQueueInProgress when the last purge of this queue was under 60 s ago."""

    async def tag_queue(self, name: str, tags: Mapping[str, str]) -> None: ...
    async def untag_queue(self, name: str, keys: Sequence[str]) -> None: ...
    async def list_queue_tags(self, name: str) -> dict[str, str]: ...
    async def add_permission(self, name: str, label: str, account_ids: Sequence[str],
                             actions: Sequence[str]) -> None: ...
    async def remove_permission(self, name: str, label: str) -> None: ...

    # --- messages ------------------------------------------------------------------------
    async def send_messages(self, name: str,
                            entries: Sequence[SendEntry]) -> list[SendResult | QnodeError]:
        """Replies after the durability the queue promises (fsync by default)."""

    async def receive_messages(self, name: str, *, max_count: int = 1, wait_ms: int | None = None,
                               visibility_timeout_ms: int | None = None,
                               attempt_id: str | None = None,
                               delete: bool = False) -> list[ReceivedMessage]:
        """Long polls up to `wait_ms` (None: the queue's ReceiveMessageWaitTimeSeconds).
        `delete=True` is at-most-once: removed in the same operation, durable before the reply."""

    async def delete_messages(self, name: str,
                              receipts: Sequence[str]) -> list[None | QnodeError]: ...
    async def change_visibility(self, name: str, items: Sequence[tuple[str, int]]
                                ) -> list[None | QnodeError]:
        """`items` are (receipt, visibility_timeout_ms)."""

    async def nack(self, name: str, receipt: str, delay_ms: int | None = None,
                   reason: str | None = None) -> None:
        """Return a received message now or after `delay_ms` (None: the queue's backoff)."""

    async def peek(self, name: str, max_count: int = 10) -> list[ReceivedMessage]:
        """Visible messages, without side effects (no receipt, no receive count)."""

    async def cancel_scheduled(self, name: str, message_id: str) -> None:
        """Cancel a delayed or scheduled message that has not been delivered yet."""

    async def open_consumer(self, name: str, prefetch: int,
                            visibility_timeout_ms: int | None = None) -> Consumer: ...

    # --- dead letters --------------------------------------------------------------------
    async def list_dead_letter_source_queues(self, name: str) -> list[str]: ...
    async def start_message_move_task(self, source_name: str, destination_name: str | None = None,
                                      max_per_second: int | None = None) -> str: ...
    async def cancel_message_move_task(self, task_handle: str) -> int: ...
    async def list_message_move_tasks(self, source_name: str,
                                      max_results: int = 1) -> list[MoveTask]: ...
