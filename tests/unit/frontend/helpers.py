"""Helpers for the server tests: a started BinaryServer over the fake API, and a raw client
that speaks frames over a real TCP socket (asyncio streams + the sans-IO client core), so tests
can pipeline, send garbage, or stop reading."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from qnode.frontend.server import BinaryServer, ServerConfig
from qnode.protocol.connection import ProtocolConnection, Role
from qnode.protocol.framing import NEED_DATA
from qnode.protocol.messages import Goodbye, Hello, Request
from tests.unit.frontend.fake_api import FakeApi


async def start_server(api: Any = None, **config: Any) -> BinaryServer:
    server = BinaryServer(api or FakeApi(), ServerConfig(**config), node_info={"node_id": "test-node"})
    await server.start("127.0.0.1", 0)
    return server


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.core = ProtocolConnection(Role.CLIENT)
        self.next_cid = 1

    @classmethod
    async def connect(cls, server: BinaryServer, hello: bool = True) -> "RawClient":
        assert server.address is not None
        reader, writer = await asyncio.open_connection(*server.address)
        client = cls(reader, writer)
        if hello:
            writer.write(client.core.send(Hello(1)))
            info = await client.event()
            assert info.info["node_id"] == "test-node"
        return client

    def send(self, op: str, args: dict | None = None, rid: str | None = None) -> int:
        cid = self.next_cid
        self.next_cid += 1
        self.writer.write(self.core.send(Request(cid, op, args or {}, rid)))
        return cid

    async def event(self, timeout: float = 10.0) -> Any:
        async with asyncio.timeout(timeout):
            while True:
                ev = self.core.next_event()
                if ev is not NEED_DATA:
                    return ev
                data = await self.reader.read(65536)
                self.core.receive_data(data)

    async def call(self, op: str, args: dict | None = None, rid: str | None = None) -> Any:
        cid = self.send(op, args, rid)
        ev = await self.event()
        assert ev.cid == cid
        return ev

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a condition with a deadline (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached before the deadline"
        await asyncio.sleep(0.001)


async def expect_goodbye(client: RawClient, code: int, text: str = "") -> None:
    """The server sent a Goodbye with `code` (and `text` in its message), then closed."""
    ev = await client.event()
    assert type(ev) is Goodbye and ev.code == code, ev
    assert text in ev.error.get("message", "")
    assert await client.reader.read() == b""
