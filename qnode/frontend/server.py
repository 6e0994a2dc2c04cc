"""The binary-protocol listener: accepts TCP connections and serves them with `ServerConnection`.

Owns: the listening socket, the connection count bound, the server-wide request-id cache and
dispatcher, server statistics, background tasks (consumer closes), and orderly shutdown:
stop accepting -> stop reading and answer long polls with ShuttingDown -> let in-flight requests
finish within `timeout_ms` -> cancel the rest -> close subscriptions -> close connections.

Never: parses bytes (the sans-IO core does) or knows what a queue is (the QueueApi does).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

from qnode import limits
from qnode.frontend.api import QueueApi
from qnode.frontend.connection import ServerConnection
from qnode.frontend.dispatch import Dispatcher
from qnode.frontend.request_cache import RequestCache
from qnode.protocol.framing import FrameLimits
from qnode.protocol.messages import PROTOCOL_VERSION

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    frame_size_max: int = limits.frame_size_max                      # bytes per frame
    message_size_max: int = limits.message_size_max                  # advertised in HELLO
    msgpack_str_len_max: int = limits.msgpack_str_len_max
    msgpack_bin_len_max: int = limits.msgpack_bin_len_max
    msgpack_array_len_max: int = limits.msgpack_array_len_max
    msgpack_map_len_max: int = limits.msgpack_map_len_max
    inflight_requests_per_connection_max: int = limits.inflight_requests_per_connection_max
    inflight_requests_per_connection_low: int = limits.inflight_requests_per_connection_low
    outbound_pending_size_high: int = limits.outbound_pending_size_high   # pause writing above
    outbound_pending_size_max: int = limits.outbound_pending_size_max     # slow consumer beyond
    connections_max: int = limits.connections_max
    request_id_cache_count_max: int = limits.request_id_cache_count_max
    request_id_ttl_ms: int = limits.request_id_ttl_ms
    request_id_cache_size_max: int = limits.request_id_cache_size_max
    subscriptions_per_connection_max: int = limits.subscriptions_per_connection_max
    push_prefetch_max: int = limits.push_prefetch_max
    durability_default: str = "fsync"                                 # advertised in HELLO
    hello_timeout_ms: int = limits.hello_timeout_ms                   # close silent connections
    frame_timeout_ms: int = limits.frame_timeout_ms                   # .. and half-sent frames
    backlog_count: int = 1024                                         # listen() backlog

    def __post_init__(self) -> None:
        problems = self.validate()
        if problems:
            raise ValueError("; ".join(problems))

    def validate(self) -> list[str]:
        p = []
        if self.inflight_requests_per_connection_low >= self.inflight_requests_per_connection_max:
            p.append("inflight_requests_per_connection_low must be below the max")
        if self.inflight_requests_per_connection_low < 1:
            p.append("inflight_requests_per_connection_low must be at least 1")
        if self.outbound_pending_size_high >= self.outbound_pending_size_max:
            p.append("outbound_pending_size_high must be below outbound_pending_size_max")
        if self.msgpack_bin_len_max > self.frame_size_max:
            p.append("msgpack_bin_len_max must not exceed frame_size_max")
        for name in ("connections_max", "request_id_cache_count_max", "request_id_ttl_ms",
                     "request_id_cache_size_max",
                     "subscriptions_per_connection_max", "push_prefetch_max", "frame_size_max",
                     "hello_timeout_ms", "frame_timeout_ms"):
            if getattr(self, name) < 1:
                p.append(f"{name} must be positive")
        return p

    def frame_limits(self) -> FrameLimits:
        return FrameLimits(self.frame_size_max, self.msgpack_str_len_max, self.msgpack_bin_len_max,
                           self.msgpack_array_len_max, self.msgpack_map_len_max)


@dataclass(slots=True)
class ServerStats:
    connections_accepted: int = 0
    connections_rejected: int = 0
    protocol_errors: int = 0
    slow_consumers_closed: int = 0
    requests_total: int = 0
    reads_paused_total: int = 0          # inbound backpressure engaged (in-flight or outbound bound)


class BinaryServer:
    def __init__(self, api: QueueApi, config: ServerConfig | None = None, *,
                 node_info: dict | None = None,
                 extra_ops: dict[str, Callable[[Mapping], Awaitable[Any]]] | None = None) -> None:
        self.config = config or ServerConfig()
        self.api = api
        self.node_info = dict(node_info or {})
        self.node_info.setdefault("node_id", "node-1")
        self.stats = ServerStats()
        self.hello_info = {
            "node_id": str(self.node_info["node_id"]),
            "version": PROTOCOL_VERSION,
            "limits": {"frame_size_max": self.config.frame_size_max,
                       "message_size_max": self.config.message_size_max},
            "durability": str(self.node_info.get("durability", self.config.durability_default)),
        }
        self.request_cache = RequestCache(count_max=self.config.request_id_cache_count_max,
                                          ttl_ms=self.config.request_id_ttl_ms,
                                          size_max=self.config.request_id_cache_size_max)
        self.dispatcher = Dispatcher(api, request_cache=self.request_cache, status=self.status,
                                     prefetch_max=self.config.push_prefetch_max,
                                     extra_ops=extra_ops)
        self._connections: set[ServerConnection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._background: set[asyncio.Task] = set()
        self._slow_consumer_logged = False
        self._started_ns = time.monotonic_ns()
        self.address: tuple[str, int] | None = None

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Listen on host:port (0 picks a free port); returns the bound (host, port)."""
        assert self._server is None, "already started"
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: ServerConnection(self), host, port,
                                                reuse_address=True, backlog=self.config.backlog_count)
        sockname = self._server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])
        log.info("binary listener started", extra={"host": sockname[0], "port": sockname[1]})
        return self.address

    async def stop(self, timeout_ms: int = 5_000) -> None:
        """Stop accepting; let in-flight requests finish within `timeout_ms`; close everything."""
        if self._server is None:
            return
        self._server.close()
        conns = list(self._connections)
        for conn in conns:
            conn.begin_stop()
        pending = [t for conn in conns for t in conn.request_tasks()]
        if pending:
            _done, still = await asyncio.wait(pending, timeout=timeout_ms / 1000)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                for conn in conns:
                    await conn.close_subscriptions()
        except TimeoutError:
            log.warning("push subscriptions did not close within the stop timeout")
        for conn in conns:
            conn.close()
        if self._background:
            await asyncio.wait(list(self._background), timeout=timeout_ms / 1000)
        await self._server.wait_closed()
        self._server = None
        log.info("binary listener stopped")

    # --- used by connections ---------------------------------------------------------------
    def admit(self, conn: ServerConnection) -> bool:
        if len(self._connections) >= self.config.connections_max:
            self.stats.connections_rejected += 1
            return False
        self._connections.add(conn)
        self.stats.connections_accepted += 1
        return True

    def forget(self, conn: ServerConnection) -> None:
        self._connections.discard(conn)

    def note_slow_consumer(self, conn: ServerConnection) -> None:
        self.stats.slow_consumers_closed += 1
        if not self._slow_consumer_logged:
            self._slow_consumer_logged = True
            log.warning("closed a slow consumer (outbound_pending_size_max exceeded); "
                        "further ones are only counted", extra={"peer": conn.peer})

    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run a background coroutine, keeping a reference; failures are logged."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def status(self) -> dict:
        return {
            **{k: v for k, v in self.node_info.items() if isinstance(v, (str, int, float, bool, list))},
            **self.hello_info,
            "uptime_ms": (time.monotonic_ns() - self._started_ns) // 1_000_000,
            "connections": len(self._connections),
            "connections_accepted": self.stats.connections_accepted,
            "connections_rejected": self.stats.connections_rejected,
            "protocol_errors": self.stats.protocol_errors,
            "slow_consumers_closed": self.stats.slow_consumers_closed,
            "requests_total": self.stats.requests_total,
            "reads_paused_total": self.stats.reads_paused_total,
            "request_cache_count": len(self.request_cache),
            "request_cache_size": self.request_cache.size,
            "request_cache_evicted_total": self.request_cache.evicted_count,
            "request_cache_hits_total": self.request_cache.hit_count,
        }
