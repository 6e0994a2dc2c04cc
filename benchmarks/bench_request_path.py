"""The node's CPU per request, without the network or the client: where the single-op figure goes.

A real `Node` (all roles, real WAL with fdatasync, in a temp dir) runs in this process; K virtual
clients each own a `ServerConnection` on an in-memory transport and loop closed: send one 1 KiB
message, receive it, delete it (the peerbench "thr" mix). Frames are built once per op kind and
fed with `data_received`, replies are taken from the transport's `write`. Reported: main-thread
CPU per request (`time.thread_time`, so the WAL thread's fsync waits do not count), requests/s
of the loop and fsyncs per request.

Run: `python -m benchmarks.bench_request_path [--clients 8] [--seconds 5] [--batch 10]`; compare branches on
one machine in one sitting (the figure moves with the CPU's clock and its neighbours).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import msgpack

from qnode.config import NodeConfig
from qnode.frontend.connection import ServerConnection
from qnode.node import Node
from qnode.protocol.framing import encode_frame
from qnode.protocol.messages import PROTOCOL_VERSION, TAG_ERROR_RESPONSE

BODY = b"x" * 1024


class MemoryTransport:
    """The subset of a uvloop TCP transport that ServerConnection uses, in memory: every write
    goes to `on_write(bytes)`; `closed` tells whether the connection closed it."""

    def __init__(self, on_write: Callable[[bytes], None]) -> None:
        self._on_write = on_write
        self.closed = False

    def write(self, data: bytes) -> None:
        self._on_write(data)

    def writelines(self, chunks: list[bytes]) -> None:
        for c in chunks:
            self._on_write(c)

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


class VirtualClient:
    """One closed-loop client: send -> receive -> delete, one request in flight."""

    def __init__(self, server: Any, queue: str, index: int, stop_at: float, batch: int) -> None:
        self.conn = ServerConnection(server)
        self.conn.connection_made(MemoryTransport(self.on_reply))
        self.queue = queue
        self.index = index
        self.stop_at = stop_at
        self.batch = batch
        self.messages = 0
        self.cid = 0
        self.requests = 0
        # The loop is looked up once: on CPython 3.11 each get_running_loop() is a getpid().
        self.loop = asyncio.get_running_loop()
        self.done = self.loop.create_future()
        self._step = "hello"
        self._receipt = ""
        self._send_seq = 0
        self.conn.data_received(encode_frame([0, PROTOCOL_VERSION, None, "bench"]))   # HELLO

    def _request(self, op: str, args: dict, rid: str | None = None) -> None:
        self.cid += 1
        self.requests += 1
        self.conn.data_received(encode_frame([2, self.cid, op, args, rid]))

    def _send(self) -> None:
        self._send_seq += 1
        self._step = "send"
        entries = [{"body": BODY, "entry_id": str(i)} for i in range(self.batch)]
        self._request("send", {"queue": self.queue, "entries": entries}, f"c{self.index}-{self._send_seq}")

    def on_reply(self, data: bytes) -> None:
        # Only a receive's reply is decoded (its receipts are needed); the others are checked by
        # their tag (after the u32 length and the array header), so that the CPU measured is
        # mostly the node's, not this client's.
        reply = msgpack.unpackb(data[4:], raw=False) if self._step == "receive" else None
        if data[5] == TAG_ERROR_RESPONSE:
            raise RuntimeError(f"request failed: {msgpack.unpackb(data[4:], raw=False)}")
        if time.perf_counter() >= self.stop_at and self._step in ("send", "hello"):
            if not self.done.done():
                self.done.set_result(None)
            return
        # Replies arrive from inside the node's callbacks: start the next request from the loop.
        self.loop.call_soon(self._next, reply)

    def _next(self, reply: list | None) -> None:
        if self._step in ("hello", "delete"):
            self._send()
        elif self._step == "send":
            self._step = "receive"
            self._request("receive", {"queue": self.queue, "max_count": self.batch, "wait_ms": 1000})
        elif self._step == "receive":
            msgs = reply[2]["messages"]
            if not msgs:          # another client took it: receive again
                self._request("receive", {"queue": self.queue, "max_count": self.batch, "wait_ms": 1000})
                return
            self._step = "delete"
            self.messages += len(msgs)
            self._request("delete", {"queue": self.queue, "receipts": [m["receipt"] for m in msgs]},
                          f"d{self.index}-{self._send_seq}")


async def run(clients: int, seconds: float, batch: int = 1) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = NodeConfig(data_dir=str(Path(tmp) / "data"), listen="127.0.0.1:0", http="off")
        node = Node(config)
        await node.start()
        try:
            server = node.binary_server
            await node.api.create_queue("bench")
            status0 = node.backend.status()
            t0, cpu0 = time.perf_counter(), time.thread_time()
            vcs = [VirtualClient(server, "bench", i, t0 + seconds, batch) for i in range(clients)]
            await asyncio.wait_for(asyncio.gather(*(v.done for v in vcs)), seconds + 30)
            wall, cpu = time.perf_counter() - t0, time.thread_time() - cpu0
            status1 = node.backend.status()
        finally:
            await node.stop()
    requests = sum(v.requests for v in vcs)
    messages = sum(v.messages for v in vcs)
    return {"requests": requests, "requests_per_s": requests / wall,
            "messages_per_s": messages / wall,
            "main_cpu_us_per_message": cpu / max(1, messages) * 1e6,
            "main_cpu_us_per_request": cpu / requests * 1e6,
            "main_cpu_share": cpu / wall,
            "records_per_fsync": ((status1["wal_records"] - status0["wal_records"])
                                  / max(1, status1["wal_fsyncs"] - status0["wal_fsyncs"]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1, help="messages per send/receive/delete")
    args = ap.parse_args()
    import uvloop
    results = [uvloop.run(run(args.clients, args.seconds, args.batch)) for _ in range(args.runs)]
    for r in results:
        print({k: round(v, 2) for k, v in r.items()})
    print("median main-thread CPU per request: %.1f us, per message %.1f us; messages/s %.0f" % (
        statistics.median(r["main_cpu_us_per_request"] for r in results),
        statistics.median(r["main_cpu_us_per_message"] for r in results),
        statistics.median(r["messages_per_s"] for r in results)))


if __name__ == "__main__":
    main()
