"""A small in-memory `QueueApi` for the gateway's unit tests (standard queues only).

It exists so the gateway's translation (parameters, errors, shapes) can be tested without the
backend; it is not a queue engine: no FIFO, no dead letters, no durability. Visibility uses an
injected `now_ms` callable; long polls wait on an asyncio.Condition, never sleep-poll.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from qnode.backend.md5 import md5_of_attributes
from qnode.frontend.api import MessageAttribute, QueueInfo, ReceivedMessage, SendEntry, SendResult
from qnode.protocol.errors import (InvalidAttributeName, MessageNotInflight, QnodeError,
                                   QueueAlreadyExists, QueueDoesNotExist,
                                   ReceiptHandleIsInvalid, ResourceNotFound)


@dataclass
class _Msg:
    message_id: str
    body: bytes
    attributes: Mapping[str, MessageAttribute]
    sent_ms: int
    visible_at_ms: int
    receive_count: int = 0
    receipt: str | None = None


@dataclass
class _Queue:
    name: str
    attributes: dict[str, str]
    tags: dict[str, str] = field(default_factory=dict)
    messages: dict[str, _Msg] = field(default_factory=dict)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


class FakeApi:
    def __init__(self, now_ms: Callable[[], int] | None = None) -> None:
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.queues: dict[str, _Queue] = {}
        self._ids = itertools.count(1)
        self.calls: list[tuple[str, tuple]] = []

    def _q(self, name: str) -> _Queue:
        q = self.queues.get(name)
        if q is None:
            raise QueueDoesNotExist("The specified queue does not exist.")
        return q

    async def create_queue(self, name, attributes=None, tags=None):
        attrs = dict(attributes or {})
        if name in self.queues:
            if self.queues[name].attributes != attrs:
                raise QueueAlreadyExists("A queue already exists with the same name and a "
                                         "different value for attribute(s).")
        else:
            self.queues[name] = _Queue(name, attrs, dict(tags or {}))
        return QueueInfo(name, attrs, dict(tags or {}))

    async def delete_queue(self, name):
        self._q(name)
        del self.queues[name]

    async def get_queue(self, name):
        q = self._q(name)
        return QueueInfo(name, q.attributes, q.tags)

    async def list_queues(self, prefix=None):
        return sorted(n for n in self.queues if prefix is None or n.startswith(prefix))

    async def get_queue_attributes(self, name, names=("All",)):
        q = self._q(name)
        now = self._now_ms()
        full = {"VisibilityTimeout": "30", **q.attributes,
                "ApproximateNumberOfMessages": str(sum(m.visible_at_ms <= now
                                                       for m in q.messages.values())),
                "QueueArn": f"arn:aws:sqs:us-east-1:000000000000:{name}"}
        for n in names:
            if n != "All" and n not in full and n not in ("DelaySeconds",):
                raise InvalidAttributeName(f"Unknown Attribute {n}.")
        return full if "All" in names else {n: full[n] for n in names if n in full}

    async def set_queue_attributes(self, name, attributes):
        self._q(name).attributes.update(attributes)

    async def purge_queue(self, name):
        self._q(name).messages.clear()

    async def tag_queue(self, name, tags):
        self._q(name).tags.update(tags)

    async def untag_queue(self, name, keys):
        for k in keys:
            self._q(name).tags.pop(k, None)

    async def list_queue_tags(self, name):
        return dict(self._q(name).tags)

    async def add_permission(self, name, label, account_ids, actions):
        self._q(name)
        self.calls.append(("add_permission", (name, label, tuple(account_ids), tuple(actions))))

    async def remove_permission(self, name, label):
        self._q(name)
        self.calls.append(("remove_permission", (name, label)))

    async def send_messages(self, name, entries: Sequence[SendEntry]):
        q = self._q(name)
        out: list[SendResult | QnodeError] = []
        now = self._now_ms()
        for e in entries:
            mid = f"m-{next(self._ids)}"
            q.messages[mid] = _Msg(mid, e.body, dict(e.attributes), now,
                                   now + (e.delay_ms or 0))
            out.append(SendResult(mid, md5_of_attributes(e.attributes), entry_id=e.entry_id))
        async with q.changed:
            q.changed.notify_all()
        return out

    def _take(self, q: _Queue, max_count: int, vis_ms: int) -> list[ReceivedMessage]:
        now = self._now_ms()
        got = []
        for m in q.messages.values():
            if len(got) == max_count:
                break
            if m.visible_at_ms <= now:
                m.receive_count += 1
                m.receipt = f"{q.name}:{m.message_id}:{m.receive_count}"
                m.visible_at_ms = now + vis_ms
                got.append(ReceivedMessage(
                    m.message_id, m.receipt, m.body, md5_of_attributes(m.attributes), m.attributes,
                    {"SentTimestamp": str(m.sent_ms),
                     "ApproximateReceiveCount": str(m.receive_count),
                     "SenderId": "000000000000"}))
        return got

    async def receive_messages(self, name, *, max_count=1, wait_ms=None,
                               visibility_timeout_ms=None, attempt_id=None, delete=False):
        q = self._q(name)
        vis = visibility_timeout_ms if visibility_timeout_ms is not None else 30_000
        got = self._take(q, max_count, vis)
        if got or not wait_ms:
            return got
        try:
            async with asyncio.timeout(wait_ms / 1000):
                async with q.changed:
                    while not (got := self._take(q, max_count, vis)):
                        await q.changed.wait()
        except TimeoutError:
            return []
        return got

    def _find(self, name: str, receipt: str) -> _Msg | QnodeError:
        q = self._q(name)
        parts = receipt.split(":")
        if len(parts) != 3 or parts[0] != name:
            return ReceiptHandleIsInvalid(f'The input receipt handle "{receipt}" is not a '
                                          "valid receipt handle.")
        m = q.messages.get(parts[1])
        if m is None or m.receipt != receipt:
            return MessageNotInflight("Message does not exist or is not available for "
                                      "visibility timeout change.")
        return m

    async def delete_messages(self, name, receipts):
        out: list[None | QnodeError] = []
        for r in receipts:
            m = self._find(name, r)
            if isinstance(m, _Msg):
                del self.queues[name].messages[m.message_id]
                out.append(None)
            elif isinstance(m, MessageNotInflight):
                out.append(None)        # SQS: deleting an already-deleted message succeeds
            else:
                out.append(m)
        return out

    async def change_visibility(self, name, items):
        out: list[None | QnodeError] = []
        for r, vis_ms in items:
            m = self._find(name, r)
            if isinstance(m, _Msg):
                m.visible_at_ms = self._now_ms() + vis_ms
                out.append(None)
            else:
                out.append(m)
        async with self._q(name).changed:
            self._q(name).changed.notify_all()
        return out

    async def list_dead_letter_source_queues(self, name):
        self._q(name)
        return sorted(n for n, q in self.queues.items()
                      if f":{name}\"" in q.attributes.get("RedrivePolicy", ""))

    async def start_message_move_task(self, source_name, destination_name=None,
                                      max_per_second=None):
        raise ResourceNotFound("The fake has no move tasks.")

    async def cancel_message_move_task(self, task_handle):
        raise ResourceNotFound("The fake has no move tasks.")

    async def list_message_move_tasks(self, source_name, max_results=1):
        self._q(source_name)
        return []
