"""`qnode.SyncClient`: the async client's surface for blocking code.

Owns one background thread running an event loop with one `Client`; every blocking call
submits a coroutine to that loop and waits for its result (`run_coroutine_threadsafe`). The
wrappers (`SyncQueue`, `SyncMessage`) mirror `Queue` and `Message` method for method.
Invariant: the loop thread is started in `__init__` and stopped by `close()` (or leaving the
`with` block); after `close()` every call raises `Unavailable`.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Iterator, Mapping, Sequence

from qnode.client.client import Client, Consumption, Message, Queue, Sent
from qnode.protocol.errors import QnodeError, Unavailable


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, name="qnode-sync-client", daemon=True)
        self.thread.start()
        self._ready.wait()
        self.closed = False

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def run(self, coro: Any) -> Any:
        if self.closed:
            coro.close()
            raise Unavailable("the client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


class SyncMessage:
    __slots__ = ("_m", "_lt")

    def __init__(self, message: Message, lt: _LoopThread) -> None:
        self._m = message
        self._lt = lt

    id = property(lambda self: self._m.id)
    body = property(lambda self: self._m.body)
    attributes = property(lambda self: self._m.attributes)
    raw_attributes = property(lambda self: self._m.raw_attributes)
    system = property(lambda self: self._m.system)
    receipt = property(lambda self: self._m.receipt)
    md5_body = property(lambda self: self._m.md5_body)

    def __repr__(self) -> str:
        return f"SyncMessage(id={self.id!r}, body={self.body[:32]!r})"

    def delete(self) -> None:
        self._lt.run(self._m.delete())

    def change_visibility(self, visibility_timeout: float) -> None:
        self._lt.run(self._m.change_visibility(visibility_timeout))

    def nack(self, delay: float | None = None, reason: str | None = None) -> None:
        self._lt.run(self._m.nack(delay, reason))


def _unwrap(msgs: Sequence[Any]) -> list:
    return [m._m if isinstance(m, SyncMessage) else m for m in msgs]


class SyncQueue:
    def __init__(self, queue: Queue, lt: _LoopThread) -> None:
        self._q = queue
        self._lt = lt
        self.name = queue.name

    def __repr__(self) -> str:
        return f"SyncQueue({self.name!r})"

    def send(self, body: bytes | str, **kwargs: Any) -> Sent:
        return self._lt.run(self._q.send(body, **kwargs))

    def send_batch(self, items: Any) -> list[Sent | QnodeError]:
        return self._lt.run(self._q.send_batch(list(items)))

    def receive(self, max_messages: int = 10, wait: float | None = 20, **kwargs: Any) -> list[SyncMessage]:
        return [SyncMessage(m, self._lt) for m in self._lt.run(self._q.receive(max_messages, wait, **kwargs))]

    def peek(self, n: int = 10) -> list[SyncMessage]:
        return [SyncMessage(m, self._lt) for m in self._lt.run(self._q.peek(n))]

    def delete_batch(self, msgs: Sequence[Any]) -> list[QnodeError | None]:
        return self._lt.run(self._q.delete_batch(_unwrap(msgs)))

    def change_visibility_batch(self, msgs: Sequence[Any], visibility_timeout: float) -> list[QnodeError | None]:
        return self._lt.run(self._q.change_visibility_batch(_unwrap(msgs), visibility_timeout))

    def cancel_scheduled(self, message_id: str) -> None:
        self._lt.run(self._q.cancel_scheduled(message_id))

    def purge(self) -> None:
        self._lt.run(self._q.purge())

    def attributes(self, *names: str) -> dict[str, str]:
        return self._lt.run(self._q.attributes(*names))

    def set_attributes(self, attributes: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self._lt.run(self._q.set_attributes(attributes, **kwargs))

    def tag(self, **tags: str) -> None:
        self._lt.run(self._q.tag(**tags))

    def untag(self, *keys: str) -> None:
        self._lt.run(self._q.untag(*keys))

    def tags(self) -> dict[str, str]:
        return self._lt.run(self._q.tags())

    def dead_letter_source_queues(self) -> list[str]:
        return self._lt.run(self._q.dead_letter_source_queues())

    def delete_queue(self) -> None:
        self._lt.run(self._q.delete_queue())

    def consume(self, prefetch: int = 100, visibility_timeout: float | None = None,
                auto_extend: bool = False) -> Iterator[SyncMessage]:
        """Blocking iterator over pushed messages; `close()` the generator to unsubscribe."""
        consumption: Consumption = self._q.consume(prefetch, visibility_timeout, auto_extend)
        try:
            while True:
                try:
                    msg = self._lt.run(consumption.__anext__())
                except StopAsyncIteration:
                    return
                yield SyncMessage(msg, self._lt)
        finally:
            if not self._lt.closed:
                self._lt.run(consumption.aclose())


class SyncClient:
    """`with qnode.SyncClient(["127.0.0.1:7700"]) as c: q = c.create_queue("jobs")`.
    Takes the same arguments as `qnode.Client`."""

    def __init__(self, addresses: Sequence[str] | str = ("127.0.0.1:7700",), **kwargs: Any) -> None:
        self._lt = _LoopThread()

        async def make() -> Client:
            return Client(addresses, **kwargs)

        try:
            self._client: Client = self._lt.run(make())
        except BaseException:
            self._lt.stop()
            raise

    def __enter__(self) -> "SyncClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if not self._lt.closed:
            self._lt.run(self._client.close())
            self._lt.stop()

    @property
    def server_info(self) -> dict:
        return self._client.server_info

    def connect(self) -> dict:
        return self._lt.run(self._client.connect())

    def queue(self, name: str) -> SyncQueue:
        return SyncQueue(self._client.queue(name), self._lt)

    def create_queue(self, name: str, **kwargs: Any) -> SyncQueue:
        return SyncQueue(self._lt.run(self._client.create_queue(name, **kwargs)), self._lt)

    def get_queue(self, name: str) -> SyncQueue:
        return SyncQueue(self._lt.run(self._client.get_queue(name)), self._lt)

    def list_queues(self, prefix: str | None = None) -> list[str]:
        return self._lt.run(self._client.list_queues(prefix))

    def delete_queue(self, name: str) -> None:
        self._lt.run(self._client.delete_queue(name))

    def start_message_move_task(self, source: str, destination: str | None = None,
                                max_per_second: int | None = None) -> str:
        return self._lt.run(self._client.start_message_move_task(source, destination, max_per_second))

    def cancel_message_move_task(self, task_handle: str) -> int:
        return self._lt.run(self._client.cancel_message_move_task(task_handle))

    def list_message_move_tasks(self, source: str, max_results: int = 1) -> list:
        return self._lt.run(self._client.list_message_move_tasks(source, max_results))

    def status(self) -> dict:
        return self._lt.run(self._client.status())

    def ping(self) -> None:
        self._lt.run(self._client.ping())
