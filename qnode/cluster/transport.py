"""Peer transport: Raft messages and peer requests between nodes over the binary protocol.

Owns: one outbound `ClientConnection` per peer node (the peer's `--listen` address), a bounded
send queue per peer, and the sender task that drains it. Raft messages travel as batches in a
`raft` request (`{"m": [msg, ...]}`, each item `qnode.metadata.raft.codec.encode`'s list, with
an InstallSnapshot's data split into `snapshot_chunk_size` pieces so that no single msgpack bin
exceeds the listener's `msgpack_bin_len_max`; the frame bound then caps a batch); the
sender awaits the reply before the next batch, so at most one batch per peer is in flight and
the queue itself is the only buffer. `request()` sends any other op to a peer on the same
connection (forwarded metadata proposals, status queries).

Invariants / bounds:
- `send()` never blocks and never raises: with the queue full (`peer_queue_count_max`) or the
  peer unknown, the message is dropped and counted; Raft retransmits.
- Reconnects back off exponentially with jitter (`reconnect_backoff_*`); while a peer is
  unreachable its queue keeps only the newest messages.
- Every peer task is owned by the pool (a reference plus a done-callback) and cancelled by
  `close()`.
Inbound: `decode_batch()` turns a `raft` request's args into messages, raising a typed
`InvalidParameter` for anything malformed (a bad peer cannot crash the node).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from typing import Any, Callable, Mapping

from qnode import limits
from qnode.client.connection import ClientConnection
from qnode.metadata.raft import codec
from qnode.metadata.raft.messages import Message
from qnode.protocol.errors import InvalidParameter, ProtocolViolation, QnodeError, Unavailable
from qnode.protocol.framing import FrameLimits

log = logging.getLogger(__name__)

peer_queue_count_max = limits.cluster_peer_queue_count_max   # per peer; beyond: dropped
batch_count_max = limits.cluster_peer_batch_count_max        # Raft messages in one `raft` request
batch_size_max = 8 << 20             # bytes of Raft messages in one `raft` request
connect_timeout_s = 1.0
reply_timeout_s = 3.0
reconnect_backoff_base_s = 0.05
reconnect_backoff_max_s = 1.0
peers_count_max = limits.cluster_peers_count_max

RAFT_OP = "raft"


SNAPSHOT_TAG = 7
snapshot_chunk_size = 512 << 10      # below the listener's msgpack_bin_len_max (1 MiB)


def wire_encode(msg: Message) -> list:
    """codec.encode, with a snapshot's data as a list of chunks (see the module docstring)."""
    value = codec.encode(msg)
    if value[0] == SNAPSHOT_TAG:
        data = value[-1]
        value[-1] = [data[i:i + snapshot_chunk_size] for i in range(0, len(data), snapshot_chunk_size)]
    return value


def wire_size(msg: Message) -> int:
    """Approximate encoded bytes (for batching): payload bytes plus a fixed overhead."""
    entries = getattr(msg, "entries", ())
    snapshot = getattr(msg, "snapshot", None)
    return 64 + sum(len(e.data) + 16 for e in entries) + (len(snapshot.data) if snapshot is not None else 0)


def wire_decode(value: object) -> Message:
    """The inverse of wire_encode; ProtocolViolation for anything malformed."""
    if isinstance(value, list) and len(value) >= 1 and value[0] == SNAPSHOT_TAG and isinstance(value[-1], list):
        chunks = value[-1]
        if not all(isinstance(c, bytes) for c in chunks):
            raise ProtocolViolation("raft: snapshot chunks must be bytes")
        value = value[:-1] + [b"".join(chunks)]
    return codec.decode(value)


def decode_batch(args: Mapping, node_id: str) -> list[Message]:
    """Validate a `raft` request: a list of encoded messages addressed to `node_id`."""
    items = args.get("m")
    if not isinstance(items, list) or len(items) > batch_count_max:
        raise InvalidParameter(f"m must be a list of at most {batch_count_max} raft messages")
    out = []
    for item in items:
        try:
            msg = wire_decode(item)
        except ProtocolViolation as exc:
            raise InvalidParameter(exc.message) from None
        if msg.dst != node_id:
            raise InvalidParameter(f"raft message for {msg.dst!r} reached {node_id!r}")
        out.append(msg)
    return out


class _Peer:
    def __init__(self, pool: "PeerPool", node_id: str, address: str) -> None:
        self.pool = pool
        self.node_id = node_id
        self.address = address
        self.queue: deque[tuple[list, int]] = deque()     # (wire value, approximate size)
        self.wake = asyncio.Event()
        self.conn: ClientConnection | None = None
        self.connect_lock = asyncio.Lock()
        self.failures = 0
        self.task: asyncio.Task | None = None

    async def connection(self) -> ClientConnection:
        """The open connection to this peer, connecting if needed (raises Unavailable)."""
        conn = self.conn
        if conn is not None and conn.is_open:
            return conn
        async with self.connect_lock:
            conn = self.conn
            if conn is not None and conn.is_open:
                return conn
            host, _, port = self.address.rpartition(":")
            try:
                async with asyncio.timeout(connect_timeout_s):
                    conn = await ClientConnection.open(host.strip("[]"), int(port),
                                                       frame_limits=self.pool.frame_limits,
                                                       client_name=f"qnode-peer/{self.pool.node_id}")
            except (OSError, TimeoutError, QnodeError, ValueError) as exc:
                raise Unavailable(f"peer {self.node_id} at {self.address} unreachable: "
                                  f"{type(exc).__name__}") from None
            self.conn = conn
            return conn

    def drop_connection(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    async def run(self) -> None:
        while True:
            if not self.queue:
                self.wake.clear()
                await self.wake.wait()
                continue
            try:
                conn = await self.connection()
            except Unavailable:
                await self._backoff()
                continue
            batch, size = [], 0
            while self.queue and len(batch) < batch_count_max and size < batch_size_max:
                item, item_size = self.queue.popleft()
                batch.append(item)
                size += item_size
            try:
                async with asyncio.timeout(reply_timeout_s):
                    await conn.request(RAFT_OP, {"m": batch})
                self.failures = 0
            except (QnodeError, TimeoutError, OSError) as exc:
                # The batch is lost; Raft retransmits what matters.
                log.debug("raft batch to %s failed: %r", self.node_id, exc)
                self.pool.dropped_count += len(batch)
                self.drop_connection()
                await self._backoff()

    async def _backoff(self) -> None:
        self.failures += 1
        delay = min(reconnect_backoff_max_s, reconnect_backoff_base_s * 2 ** min(self.failures - 1, 10))
        await asyncio.sleep(delay * (0.5 + self.pool.rng.random() / 2))


class PeerPool:
    """Outbound links to peer nodes. `set_address()` as peers are learnt (SWIM meta)."""

    def __init__(self, node_id: str, *, frame_limits: FrameLimits | None = None,
                 rng: random.Random | None = None) -> None:
        self.node_id = node_id
        self.frame_limits = frame_limits or FrameLimits()
        self.rng = rng or random.Random()
        self._peers: dict[str, _Peer] = {}
        self.dropped_count = 0
        self._closed = False
        self.on_unknown_peer: Callable[[str], None] | None = None

    def addresses(self) -> dict[str, str]:
        return {node_id: p.address for node_id, p in sorted(self._peers.items())}

    def address_of(self, node_id: str) -> str | None:
        peer = self._peers.get(node_id)
        return peer.address if peer is not None else None

    def set_address(self, node_id: str, address: str) -> None:
        """Learn or update a peer's binary address (a changed address reconnects)."""
        if node_id == self.node_id or self._closed or not address:
            return
        peer = self._peers.get(node_id)
        if peer is not None:
            if peer.address != address:
                peer.address = address
                peer.drop_connection()
            return
        if len(self._peers) >= peers_count_max:
            log.warning("peer table full; ignoring %s", node_id)
            return
        peer = _Peer(self, node_id, address)
        peer.task = asyncio.get_running_loop().create_task(peer.run(), name=f"peer-{node_id}")
        peer.task.add_done_callback(self._task_done)
        self._peers[node_id] = peer

    def forget(self, node_id: str) -> None:
        """Drop a peer SWIM declared down or left: its link, its queue, its place in the table
        (bounded by peers_count_max, which departed or spoofed ids would otherwise fill for
        good). SWIM's next MemberUp for it learns it again."""
        peer = self._peers.pop(node_id, None)
        if peer is not None:
            peer.drop_connection()
            if peer.task is not None:
                peer.task.cancel()

    def send(self, to_node_id: str, msg: Message) -> None:
        """Raft Transport.send: queue `msg` for the peer; drop when unknown or full."""
        peer = self._peers.get(to_node_id)
        if peer is None:
            self.dropped_count += 1
            if self.on_unknown_peer is not None:
                self.on_unknown_peer(to_node_id)
            return
        if len(peer.queue) >= peer_queue_count_max:
            self.dropped_count += 1
            return
        peer.queue.append((wire_encode(msg), wire_size(msg)))
        peer.wake.set()

    async def request(self, node_id: str, op: str, args: dict, timeout_s: float = 5.0) -> Any:
        """Send one request to a peer and return its result; raises the peer's typed error,
        or Unavailable when it cannot be reached within `timeout_s`."""
        peer = self._peers.get(node_id)
        if peer is None:
            raise Unavailable(f"no address known for peer {node_id}")
        conn: ClientConnection | None = None
        fut: asyncio.Future | None = None
        try:
            async with asyncio.timeout(timeout_s):
                conn = await peer.connection()
                fut = conn.request(op, args)
                return await fut
        except TimeoutError:
            # The peer may be hung or cut off: forget the request and the connection (the next
            # request reconnects) rather than keep writing into a link nobody reads.
            if conn is not None and fut is not None:
                conn.forget(fut)
                if peer.conn is conn:
                    peer.drop_connection()
            raise Unavailable(f"peer {node_id} did not answer {op} within {timeout_s} s") from None

    async def close(self) -> None:
        self._closed = True
        tasks = []
        for peer in self._peers.values():
            peer.drop_connection()
            if peer.task is not None:
                peer.task.cancel()
                tasks.append(peer.task)
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        self._peers.clear()

    def _task_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("peer sender crashed", exc_info=task.exception())
