"""`qnode.SyncClient`: the same surface for blocking code (a background event-loop thread).

Method: a BinaryServer over the FakeApi runs in its own thread with its own event loop; the
test's main thread drives SyncClient calls and checks results and typed errors.
"""

from __future__ import annotations

import asyncio
import threading

import pytest

import qnode
from tests.unit.frontend.fake_api import FakeApi
from tests.unit.frontend.helpers import start_server


@pytest.fixture
def server_address():
    ready = threading.Event()
    state = {}

    def run():
        loop = asyncio.new_event_loop()

        async def main():
            state["server"] = await start_server(FakeApi())
            state["stop"] = asyncio.Event()
            ready.set()
            await state["stop"].wait()
            await state["server"].stop(1000)

        state["loop"] = loop
        loop.run_until_complete(main())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    host, port = state["server"].address
    yield f"{host}:{port}"
    state["loop"].call_soon_threadsafe(state["stop"].set)
    thread.join(10)


def test_sync_round_trip(server_address):
    with qnode.SyncClient([server_address]) as c:
        q = c.create_queue("sync", visibility_timeout=10)
        sent = q.send("text body", attributes={"k": "v"})
        q.send_batch([b"x", b"y"])
        msgs = q.receive(max_messages=10, wait=0)
        assert [m.body for m in msgs] == [b"text body", b"x", b"y"]
        assert msgs[0].id == sent.id
        assert msgs[0].attributes == {"k": "v"}
        msgs[0].delete()
        msgs[1].nack()
        assert q.delete_batch(msgs[2:]) == [None]
        assert c.list_queues() == ["sync"]
        assert q.attributes()["VisibilityTimeout"] == "10"
        with pytest.raises(qnode.QueueDoesNotExist):
            c.get_queue("missing")
        assert c.status()["node_id"] == "test-node"


def test_sync_consume(server_address):
    with qnode.SyncClient([server_address]) as c:
        q = c.create_queue("sync-push")
        q.send_batch([b"1", b"2", b"3"])
        got = []
        stream = q.consume(prefetch=2)
        for msg in stream:
            got.append(msg.body)
            msg.delete()
            if len(got) == 3:
                break
        stream.close()
        assert got == [b"1", b"2", b"3"]


def test_sync_client_after_close_raises_unavailable(server_address):
    c = qnode.SyncClient([server_address])
    c.ping()
    c.close()
    with pytest.raises(qnode.Unavailable):
        c.ping()
