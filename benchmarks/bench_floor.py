"""The floor: how fast the least a Python server can do runs the peerbench workload on this machine.

`qnode bench` and peerbench measure qnode; this measures what is left when everything qnode does
beyond the durability contract is taken away, so that a gap to a target can be told apart from
a limit of the machine and the language. The floor server (this file, `--serve`) is one uvloop
process with one durability thread, and keeps only the contract qnode keeps by default:

- a send is acknowledged after the `fdatasync` of the batch holding it, and only then becomes
  receivable (nothing a consumer sees can be lost by a crash);
- a delete is acknowledged after the `fdatasync` of its record;
- group commit on one thread (write + fdatasync back to back, the loop hands over what queued
  in one iteration), into zeros written and fsynced ahead of the tail, as qnode's WAL does
  (topped up between batches: 1 MiB whenever less than 256 KiB is left).

It has no queues by name, no validation, no receipts, no visibility timeouts, no attributes, no
request ids, no msgpack: fixed binary frames (u32 length, u8 op). Its client is as bare: one
asyncio protocol, one request in flight per connection.

Workload, as peerbench's `thr`/`batch`: 1 KiB bodies, 4 producers and 4 consumers each on its
own connection, producers in one process and consumers in another, each op awaited before the
next; "batched" sends 10 per call, receives up to 10 and deletes them in one call. Producers
pause while more than `--backlog` messages are unconsumed. Reported: consumed messages/s in the
measured window (median of `--runs`). `--idle` measures instead the idle long-poll wake as
peerbench's `idle` does: one consumer parked in a receive, one producer sending a stamped
message every 50 ms (200 samples); reported: p50 / p99 of send start -> consumer has it.

Run: `python benchmarks/bench_floor.py [--runs 3] [--duration 10] [--batch 1] [--no-fsync] [--idle]`.
Bounded: every phase has a deadline; the server is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import queue
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque

HEAD = struct.Struct(">IB")          # frame length (after these 5 bytes), op
OP_SEND, OP_RECV, OP_DELETE, OP_OK = 1, 2, 3, 4
ZEROS_AHEAD_SIZE = 1024 * 1024        # kept written ahead of the tail, as qnode's WAL does
ZEROS_LOW_SIZE = 256 * 1024           # top up when less than this is left
BODY = b"x" * 1024
FRAME_SIZE_MAX = 1 << 20              # a batch of 10 KiB bodies is far below it
START_TIMEOUT_S = 30.0
STAMP = struct.Struct("<d")          # perf_counter() at send, first bytes of an idle-test body
IDLE_INTERVAL_S = 0.05
IDLE_SAMPLES = 200


def split_frames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The complete (op, payload) frames at the front of `buf`, and the partial rest."""
    frames = []
    while len(buf) >= HEAD.size:
        size, op = HEAD.unpack_from(buf)
        if size > FRAME_SIZE_MAX:
            raise ValueError(f"frame of {size} bytes (at most {FRAME_SIZE_MAX})")
        if len(buf) < HEAD.size + size:
            break
        frames.append((op, buf[HEAD.size:HEAD.size + size]))
        buf = buf[HEAD.size + size:]
    return frames, buf


# ----------------------------------------------------------------------------------- server
class Durability:
    """Group commit: the loop queues (blob, callback); one thread writes and fdatasyncs."""

    def __init__(self, loop: asyncio.AbstractEventLoop, path: str, fsync: bool) -> None:
        self.loop = loop
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.fsync = fsync
        self.offset = 0
        self.zeroed_end = 0
        self._top_up_zeros()
        self.blobs: list[bytes] = []
        self.callbacks: list = []
        self.kick_scheduled = False
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, daemon=True).start()

    def append(self, blob: bytes, callback) -> None:
        self.blobs.append(blob)
        self.callbacks.append(callback)
        if not self.kick_scheduled:
            self.kick_scheduled = True
            self.loop.call_soon(self._kick)

    def _kick(self) -> None:
        self.kick_scheduled = False
        self.jobs.put((self.blobs, self.callbacks))
        self.blobs, self.callbacks = [], []

    def _run(self) -> None:
        while True:
            blobs, callbacks = self.jobs.get()
            while True:      # coalesce whatever queued meanwhile
                try:
                    more = self.jobs.get_nowait()
                except queue.Empty:
                    break
                blobs += more[0]
                callbacks += more[1]
            data = b"".join(blobs)
            os.pwrite(self.fd, data, self.offset)
            self.offset += len(data)
            if self.fsync:
                os.fdatasync(self.fd)
            self.loop.call_soon_threadsafe(self._done, callbacks)
            if self.zeroed_end - self.offset < ZEROS_LOW_SIZE and self.jobs.empty():
                self._top_up_zeros()

    def _top_up_zeros(self) -> None:
        start = max(self.zeroed_end, self.offset)
        end = self.offset + ZEROS_AHEAD_SIZE
        os.pwrite(self.fd, bytes(end - start), start)
        if self.fsync:
            os.fdatasync(self.fd)
        self.zeroed_end = end

    @staticmethod
    def _done(callbacks: list) -> None:
        for cb in callbacks:
            cb()


class Store:
    def __init__(self, durability: Durability) -> None:
        self.durability = durability
        self.ready: deque[tuple[int, bytes]] = deque()
        self.unacked: dict[int, bytes] = {}
        self.parked: deque = deque()         # (protocol, max) of waiting receives
        self.next_id = 1

    def send(self, bodies: list[bytes], reply) -> None:
        items = []
        for body in bodies:
            items.append((self.next_id, body))
            self.next_id += 1

        def durable() -> None:
            reply(b"")
            self.ready.extend(items)
            while self.parked and self.ready:
                proto, max_n = self.parked.popleft()
                proto.reply(OP_OK, self._take(max_n))

        self.durability.append(b"S" + b"".join(bodies), durable)

    def receive(self, proto: "ServerProtocol", max_n: int) -> None:
        if self.ready:
            proto.reply(OP_OK, self._take(max_n))
        else:
            self.parked.append((proto, max_n))

    def _take(self, max_n: int) -> bytes:
        out = [struct.pack(">H", min(max_n, len(self.ready)))]
        for _ in range(min(max_n, len(self.ready))):
            mid, body = self.ready.popleft()
            self.unacked[mid] = body
            out.append(struct.pack(">QI", mid, len(body)))
            out.append(body)
        return b"".join(out)

    def delete(self, ids: list[int], reply) -> None:
        for mid in ids:
            self.unacked.pop(mid, None)
        self.durability.append(b"D" + b"".join(struct.pack(">Q", i) for i in ids),
                               lambda: reply(b""))


class ServerProtocol(asyncio.Protocol):
    store: Store

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buf = b""

    def reply(self, op: int, payload: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(HEAD.pack(len(payload), op) + payload)

    def data_received(self, data: bytes) -> None:
        frames, self.buf = split_frames(self.buf + data)
        for op, payload in frames:
            ok = lambda _: self.reply(OP_OK, b"")
            if op == OP_SEND:
                (count,) = struct.unpack_from(">H", payload)
                bodies, pos = [], 2
                for _ in range(count):
                    (n,) = struct.unpack_from(">I", payload, pos)
                    bodies.append(payload[pos + 4:pos + 4 + n])
                    pos += 4 + n
                self.store.send(bodies, ok)
            elif op == OP_RECV:
                self.store.receive(self, struct.unpack_from(">H", payload)[0])
            elif op == OP_DELETE:
                ids = list(struct.unpack_from(f">{len(payload) // 8}Q", payload))
                self.store.delete(ids, ok)


async def serve(port_file: str, data_dir: str, fsync: bool) -> None:
    loop = asyncio.get_running_loop()
    ServerProtocol.store = Store(Durability(loop, os.path.join(data_dir, "log"), fsync))
    server = await loop.create_server(ServerProtocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with open(port_file + ".tmp", "w") as f:
        f.write(str(port))
    os.replace(port_file + ".tmp", port_file)
    await asyncio.Event().wait()


# ----------------------------------------------------------------------------------- client
class ClientProtocol(asyncio.Protocol):
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.buf = b""
        self.fut: asyncio.Future | None = None

    def data_received(self, data: bytes) -> None:
        frames, self.buf = split_frames(self.buf + data)
        for _op, payload in frames:
            fut, self.fut = self.fut, None
            fut.set_result(payload)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(ConnectionError("the floor server went away"))

    async def call(self, op: int, payload: bytes) -> bytes:
        self.fut = asyncio.get_running_loop().create_future()
        self.transport.write(HEAD.pack(len(payload), op) + payload)
        return await self.fut


async def _role(role: str, port: int, batch: int, backlog: int, t_from: float, t_to: float,
                sent, consumed, result) -> None:
    loop = asyncio.get_running_loop()
    conns = [(await loop.create_connection(ClientProtocol, "127.0.0.1", port))[1] for _ in range(4)]
    send_payload = struct.pack(">H", batch) + b"".join(struct.pack(">I", len(BODY)) + BODY
                                                       for _ in range(batch))
    counted = 0

    async def producer(c: ClientProtocol) -> None:
        while time.time() < t_to:
            if sent.value - consumed.value > backlog:
                await asyncio.sleep(0.001)
                continue
            await c.call(OP_SEND, send_payload)
            with sent.get_lock():
                sent.value += batch

    async def consumer(c: ClientProtocol) -> None:
        nonlocal counted
        while time.time() < t_to:
            try:     # the producers stop at t_to: a receive parked then never returns
                reply = await asyncio.wait_for(c.call(OP_RECV, struct.pack(">H", batch)),
                                               t_to + 5 - time.time())
            except TimeoutError:
                return
            (count,) = struct.unpack_from(">H", reply)
            ids, pos = [], 2
            for _ in range(count):
                mid, n = struct.unpack_from(">QI", reply, pos)
                ids.append(mid)
                pos += 12 + n
            await c.call(OP_DELETE, b"".join(struct.pack(">Q", i) for i in ids))
            with consumed.get_lock():
                consumed.value += count
            if t_from <= time.time() <= t_to:
                counted += count

    fn = producer if role == "prod" else consumer
    tasks = [asyncio.ensure_future(fn(c)) for c in conns]
    done, pending = await asyncio.wait(tasks, timeout=t_to - time.time() + 10)
    for t in pending:
        t.cancel()
    for t in done:
        t.result()           # a failed client fails the run (exit code 1), not a quiet 0 msgs/s
    result.value = counted


async def _idle_role(role: str, port: int, t0: float, result) -> None:
    loop = asyncio.get_running_loop()
    _, c = await loop.create_connection(ClientProtocol, "127.0.0.1", port)
    if role == "prod":
        for i in range(IDLE_SAMPLES):
            await asyncio.sleep(max(0.0, t0 + i * IDLE_INTERVAL_S - time.time()))
            body = STAMP.pack(time.perf_counter()) + BODY[STAMP.size:]
            await c.call(OP_SEND, struct.pack(">HI", 1, len(body)) + body)
        return
    lats = []
    while len(lats) < IDLE_SAMPLES:
        reply = await asyncio.wait_for(c.call(OP_RECV, struct.pack(">H", 1)), 10.0)
        got = time.perf_counter()
        mid, _ = struct.unpack_from(">QI", reply, 2)
        lats.append(got - STAMP.unpack_from(reply, 14)[0])
        await c.call(OP_DELETE, struct.pack(">Q", mid))
    lats.sort()
    result[0] = lats[len(lats) // 2] * 1000
    result[1] = lats[int(len(lats) * 0.99)] * 1000


def _idle_entry(*args) -> None:
    import uvloop
    uvloop.run(_idle_role(*args))


def _role_entry(*args) -> None:
    import uvloop
    uvloop.run(_role(*args))


def run_once(batch: int, duration: float, backlog: int, fsync: bool, idle: bool = False):
    with tempfile.TemporaryDirectory(prefix="qnode-floor-", dir=".") as d:
        port_file = os.path.join(d, "port")
        cmd = [sys.executable, __file__, "--serve", port_file, "--data-dir", d]
        if not fsync:
            cmd.append("--no-fsync")
        server = subprocess.Popen(cmd)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not os.path.exists(port_file):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("floor server did not start")
                time.sleep(0.05)
            port = int(open(port_file).read())
            ctx = mp.get_context("spawn")
            if idle:
                t0 = time.time() + 3.0
                lat = ctx.Array("d", 2)
                _run_clients([ctx.Process(target=_idle_entry, args=(role, port, t0, lat), daemon=True)
                              for role in ("cons", "prod")],
                             time.time() + 3.0 + IDLE_SAMPLES * IDLE_INTERVAL_S + 30)
                return lat[0], lat[1]
            sent, consumed = ctx.Value("q", 0), ctx.Value("q", 0)
            prod_res, cons_res = ctx.Value("q", 0), ctx.Value("q", 0)
            t_from = time.time() + 3.0          # spawn + connect, then 2 s warm-up
            t_to = t_from + duration
            _run_clients([ctx.Process(target=_role_entry, daemon=True,
                                      args=(role, port, batch, backlog, t_from, t_to, sent, consumed, res))
                          for role, res in (("prod", prod_res), ("cons", cons_res))], t_to + 30)
            return cons_res.value / duration
        finally:
            server.kill()
            server.wait()


def _run_clients(procs: list, deadline: float) -> None:
    """Start the client processes and wait for them until `deadline` (time.time()); any that
    is still running then, or that failed, fails the run. Every one is gone on return."""
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join(max(0.0, deadline - time.time()))
        for p in procs:
            if p.is_alive() or p.exitcode != 0:
                raise RuntimeError(f"a client process failed or did not finish (exit code {p.exitcode})")
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--serve", metavar="PORT_FILE", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", help=argparse.SUPPRESS)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--backlog", type=int, default=5000)
    ap.add_argument("--no-fsync", action="store_true")
    ap.add_argument("--idle", action="store_true", help="measure the idle long-poll wake instead")
    args = ap.parse_args()
    if args.serve:
        import uvloop
        uvloop.run(serve(args.serve, args.data_dir, not args.no_fsync))
        return
    if args.idle:
        runs = [run_once(1, 0, 0, not args.no_fsync, idle=True) for _ in range(args.runs)]
        print(json.dumps({"idle_wake_p50_ms": [round(r[0], 2) for r in runs],
                          "idle_wake_p99_ms": [round(r[1], 2) for r in runs],
                          "median_p50_ms": round(statistics.median(r[0] for r in runs), 2),
                          "median_p99_ms": round(statistics.median(r[1] for r in runs), 2),
                          "fsync": not args.no_fsync}))
        return
    rates = [run_once(args.batch, args.duration, args.backlog, not args.no_fsync)
             for _ in range(args.runs)]
    print(json.dumps({"batch": args.batch, "fsync": not args.no_fsync,
                      "msgs_per_s": [round(r) for r in rates],
                      "median_msgs_per_s": round(statistics.median(rates))}))


if __name__ == "__main__":
    main()
