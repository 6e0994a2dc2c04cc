"""One stored message: a mutable slotted record owned by exactly one `Queue`.

Not a dataclass on purpose: the hot path mutates `state`, `visible_at_ms` and `receive_count`
in place and millions of these may be live. States:

    PENDING --durable--> DELAYED --time--> READY --receive--> INFLIGHT --delete--> GONE
                 \\_____________________________^  ^_____expiry/nack________/
Invariants: `receive_count` only grows; a GONE message is referenced by no index except lazily
(deques/heaps skip it); `seq` is unique per engine and increases in send order.
"""

from __future__ import annotations

from typing import Mapping

from qnode.frontend.api import MessageAttribute

PENDING = 0    # accepted, its WAL record is not durable yet: not receivable
DELAYED = 1    # durable, visible_at_ms in the future, never received
READY = 2      # receivable
INFLIGHT = 3   # received, invisible until visible_at_ms
GONE = 4       # deleted / expired / moved; ignored wherever still referenced

STATE_NAMES = ("PENDING", "DELAYED", "READY", "INFLIGHT", "GONE")


class Message:
    __slots__ = ("seq", "message_id", "body", "attrs", "md5_attrs", "sys_attrs",
                 "md5_sys", "sent_ms", "visible_at_ms", "receive_count", "first_receive_ms",
                 "group_id", "dedup_id", "sequence_number", "dlq_source_arn", "reason", "size",
                 "state")

    def __init__(self, seq: int, message_id: str, body: bytes,
                 attrs: Mapping[str, MessageAttribute], md5_attrs: str | None,
                 sys_attrs: Mapping[str, MessageAttribute], md5_sys: str | None, sent_ms: int,
                 visible_at_ms: int, receive_count: int = 0, first_receive_ms: int = 0,
                 group_id: str | None = None, dedup_id: str | None = None,
                 sequence_number: int = 0, dlq_source_arn: str | None = None,
                 reason: str | None = None, size: int = 0) -> None:
        self.seq = seq
        self.message_id = message_id
        self.body = body
        self.attrs = attrs
        self.md5_attrs = md5_attrs
        self.sys_attrs = sys_attrs
        self.md5_sys = md5_sys
        self.sent_ms = sent_ms
        self.visible_at_ms = visible_at_ms
        self.receive_count = receive_count
        self.first_receive_ms = first_receive_ms
        self.group_id = group_id
        self.dedup_id = dedup_id
        self.sequence_number = sequence_number
        self.dlq_source_arn = dlq_source_arn
        self.reason = reason
        self.size = size or len(body)
        self.state = PENDING

    def __repr__(self) -> str:
        return (f"Message(seq={self.seq}, id={self.message_id}, state={STATE_NAMES[self.state]}, "
                f"count={self.receive_count}, visible_at={self.visible_at_ms})")
