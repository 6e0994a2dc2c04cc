"""An in-memory `QueueApi` test double for the protocol, server and client tests.

Goal: real enough behaviour (long polls that wake on send, visibility, receipts, push consumers
with credit) to exercise the wire layer, with hooks for tests: `send_gate` (an Event a send
waits on when set up), `send_calls` (how many send_messages calls ran). Not a queue engine: no
durability, no FIFO ordering rules, no retention.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

from qnode.frontend.api import MoveTask, QueueInfo, ReceivedMessage, SendEntry, SendResult
from qnode.protocol.errors import (
    QnodeError, QueueAlreadyExists, QueueDoesNotExist, ReceiptHandleIsInvalid, ShuttingDown,
)


@dataclass
class _Msg:
    message_id: str
    entry: SendEntry
    receive_count: int = 0


@dataclass
class _Queue:
    name: str
    attributes: dict
    tags: dict
    ready: deque = field(default_factory=deque)
    inflight: dict = field(default_factory=dict)     # receipt -> _Msg
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class FakeConsumer:
    def __init__(self, api: "FakeApi", queue: _Queue, prefetch: int) -> None:
        self._api = api
        self._queue = queue
        self.credits = prefetch
        self.settled = 0
        self.closed = False
        self._credit_event = asyncio.Event()
        self.delivered: list[str] = []

    async def next(self) -> ReceivedMessage:
        while True:
            if self.closed:
                raise ShuttingDown("consumer closed")
            if self.credits > 0 and self._queue.ready:
                self.credits -= 1
                msg = self._api._lease(self._queue)
                self.delivered.append(msg.receipt)
                return msg
            self._queue.changed.clear()
            self._credit_event.clear()
            waits = [asyncio.ensure_future(self._queue.changed.wait()),
                     asyncio.ensure_future(self._credit_event.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    def settle(self, count: int = 1, receipts=()) -> None:
        self.settled += count
        self.credits += count
        self._credit_event.set()

    async def close(self) -> None:
        self.closed = True
        self._credit_event.set()
        for receipt in self.delivered:
            msg = self._queue.inflight.pop(receipt, None)
            if msg is not None:
                self._queue.ready.appendleft(msg)
        self._queue.changed.set()
        self._api.consumers_closed += 1


class FakeApi:
    def __init__(self) -> None:
        self.queues: dict[str, _Queue] = {}
        self.send_calls = 0
        self.send_gate: asyncio.Event | None = None
        self.send_started = asyncio.Event()
        self.consumers_closed = 0
        self.receives_cancelled = 0
        self.visibility_changes = 0
        self.created_attributes: list[dict] = []
        self._ids = itertools.count(1)

    def _q(self, name: str) -> _Queue:
        q = self.queues.get(name)
        if q is None:
            raise QueueDoesNotExist(f"queue {name} does not exist")
        return q

    async def create_queue(self, name, attributes=None, tags=None) -> QueueInfo:
        attributes = dict(attributes or {})
        self.created_attributes.append(attributes)
        q = self.queues.get(name)
        if q is not None:
            if attributes and attributes != q.attributes:
                raise QueueAlreadyExists()
            return QueueInfo(name, q.attributes, q.tags)
        q = self.queues[name] = _Queue(name, attributes, dict(tags or {}))
        return QueueInfo(name, q.attributes, q.tags)

    async def delete_queue(self, name) -> None:
        self._q(name)
        del self.queues[name]

    async def get_queue(self, name) -> QueueInfo:
        q = self._q(name)
        return QueueInfo(name, q.attributes, q.tags)

    async def list_queues(self, prefix=None) -> list[str]:
        return sorted(n for n in self.queues if prefix is None or n.startswith(prefix))

    async def get_queue_attributes(self, name, names=("All",)) -> dict[str, str]:
        q = self._q(name)
        attrs = dict(q.attributes)
        attrs["ApproximateNumberOfMessages"] = str(len(q.ready))
        attrs["ApproximateNumberOfMessagesNotVisible"] = str(len(q.inflight))
        return attrs

    async def set_queue_attributes(self, name, attributes) -> None:
        self._q(name).attributes.update(attributes)

    async def purge_queue(self, name) -> None:
        q = self._q(name)
        q.ready.clear()
        q.inflight.clear()

    async def tag_queue(self, name, tags) -> None:
        self._q(name).tags.update(tags)

    async def untag_queue(self, name, keys) -> None:
        for k in keys:
            self._q(name).tags.pop(k, None)

    async def list_queue_tags(self, name) -> dict[str, str]:
        return dict(self._q(name).tags)

    async def add_permission(self, name, label, account_ids, actions) -> None:
        self._q(name)

    async def remove_permission(self, name, label) -> None:
        self._q(name)

    async def send_messages(self, name, entries: Sequence[SendEntry]) -> list[SendResult | QnodeError]:
        q = self._q(name)
        self.send_calls += 1
        self.send_started.set()
        if self.send_gate is not None:
            await self.send_gate.wait()
        out: list[SendResult | QnodeError] = []
        for e in entries:
            mid = f"m-{next(self._ids)}"
            q.ready.append(_Msg(mid, e))
            out.append(SendResult(mid, entry_id=e.entry_id))
        q.changed.set()
        return out

    def _lease(self, q: _Queue) -> ReceivedMessage:
        msg = q.ready.popleft()
        msg.receive_count += 1
        receipt = f"r-{msg.message_id}-{next(self._ids)}"
        q.inflight[receipt] = msg
        return ReceivedMessage(msg.message_id, receipt, msg.entry.body, None,
                               dict(msg.entry.attributes),
                               {"ApproximateReceiveCount": str(msg.receive_count)})

    async def receive_messages(self, name, *, max_count=1, wait_ms=None, visibility_timeout_ms=None,
                               attempt_id=None, delete=False) -> list[ReceivedMessage]:
        q = self._q(name)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (wait_ms or 0) / 1000
        try:
            while not q.ready:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return []
                q.changed.clear()
                try:
                    async with asyncio.timeout(remaining):
                        await q.changed.wait()
                except TimeoutError:
                    return []
        except asyncio.CancelledError:
            self.receives_cancelled += 1
            raise
        out = []
        while q.ready and len(out) < max_count:
            m = self._lease(q)
            if delete:
                q.inflight.pop(m.receipt)
            out.append(m)
        return out

    async def delete_messages(self, name, receipts) -> list[None | QnodeError]:
        q = self._q(name)
        return [None if q.inflight.pop(r, None) is not None else ReceiptHandleIsInvalid()
                for r in receipts]

    async def change_visibility(self, name, items) -> list[None | QnodeError]:
        q = self._q(name)
        self.visibility_changes += len(items)
        out: list[None | QnodeError] = []
        for receipt, ms in items:
            if receipt not in q.inflight:
                out.append(ReceiptHandleIsInvalid())
            elif ms == 0:
                q.ready.appendleft(q.inflight.pop(receipt))
                q.changed.set()
                out.append(None)
            else:
                out.append(None)
        return out

    async def nack(self, name, receipt, delay_ms=None, reason=None) -> None:
        q = self._q(name)
        msg = q.inflight.pop(receipt, None)
        if msg is None:
            raise ReceiptHandleIsInvalid()
        q.ready.appendleft(msg)
        q.changed.set()

    async def peek(self, name, max_count=10) -> list[ReceivedMessage]:
        q = self._q(name)
        return [ReceivedMessage(m.message_id, None, m.entry.body, None, dict(m.entry.attributes), {})
                for m in list(q.ready)[:max_count]]

    async def cancel_scheduled(self, name, message_id) -> None:
        self._q(name)

    async def open_consumer(self, name, prefetch, visibility_timeout_ms=None) -> FakeConsumer:
        return FakeConsumer(self, self._q(name), prefetch)

    async def list_dead_letter_source_queues(self, name) -> list[str]:
        self._q(name)
        return []

    async def start_message_move_task(self, source_name, destination_name=None, max_per_second=None) -> str:
        self._q(source_name)
        return "task-1"

    async def cancel_message_move_task(self, task_handle) -> int:
        return 0

    async def list_message_move_tasks(self, source_name, max_results=1) -> list[MoveTask]:
        self._q(source_name)
        return [MoveTask("task-1", "RUNNING", f"arn:{source_name}", None, None, 0, 0, 0)]
