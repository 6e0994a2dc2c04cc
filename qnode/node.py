"""Assembly of one qnode process: which roles, which listeners, and the wiring between them.

One `Node` owns every component; there is no module-level state. Start order: lock the data
directory, open the backend (WAL recovery), start the binary listener, then the HTTP listener,
then (metadata role) the cluster runtime (SWIM, metadata Raft, queue definitions; a one-member
group is ready before start() returns), then log the bound addresses. Stop order (DESIGN.md / STYLE.md §3): stop accepting, let in-flight
requests finish within `shutdown_timeout_ms` (parked long polls are answered empty), flush and
fsync the WAL, close sockets, release the lock.
"""

from __future__ import annotations

import asyncio
import gc
import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from qnode.config import NodeConfig, is_loopback, parse_address

log = logging.getLogger(__name__)

PROTOCOL_DURABILITY_DEFAULT = "fsync"


class StartupError(RuntimeError):
    """The node cannot start; the message is one line an operator can act on."""


class DataDirLock:
    """An exclusive `flock` on `<data_dir>/LOCK`: a second process on the same directory refuses."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "LOCK"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StartupError(
                f"data directory {self.path.parent} is in use by another qnode process "
                f"(pid {holder}); stop it or choose another --data-dir") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True, slots=True)
class BoundAddresses:
    binary: str
    http: str          # "off" when disabled

    def line(self) -> str:
        return f"listening binary={self.binary} http={self.http}"


def check_protected_mode(config: NodeConfig) -> list[str]:
    """Return warnings to log; raise StartupError when a listener would be exposed without auth.

    Until the binary protocol has authentication, a non-loopback --listen needs
    --insecure-no-auth. The HTTP listener needs credentials or --insecure-no-auth.
    """
    warnings = []
    host, _ = parse_address(config.listen)
    if not is_loopback(host):
        if not config.insecure_no_auth:
            raise StartupError(
                f"refusing to listen on {config.listen}: the binary protocol has no "
                "authentication yet; use a loopback address or pass --insecure-no-auth")
        warnings.append(f"binary listener {config.listen} is reachable without authentication "
                        "(--insecure-no-auth)")
    if config.http != "off":
        http_host, _ = parse_address(config.http)
        if not is_loopback(http_host) and not config.access_keys:
            if not config.insecure_no_auth:
                raise StartupError(
                    f"refusing to serve HTTP on {config.http} without credentials: configure "
                    "access_keys or pass --insecure-no-auth")
            warnings.append(f"HTTP listener {config.http} accepts unsigned requests "
                            "(--insecure-no-auth)")
    return warnings


class Node:
    """One qnode process. `await node.start()`, then `await node.stop()`."""

    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self._lock = DataDirLock(config.data_path)
        self.backend = None
        self.api = None                  # what the listeners serve: the backend, or ClusterQueues
        self.cluster = None              # ClusterRuntime on metadata nodes
        self.binary_server = None
        self.http_server = None
        self.addresses: BoundAddresses | None = None

    async def start(self) -> BoundAddresses:
        from qnode.backend.service import BackendConfig, BackendService
        from qnode.frontend.server import BinaryServer, ServerConfig

        for warning in check_protected_mode(self.config):
            log.warning(warning)
        self._lock.acquire()
        try:
            host, port = parse_address(self.config.listen)
            roles = set(self.config.roles)
            if "backend" in roles or "metadata" not in roles:
                backend_config = BackendConfig(region=self.config.region,
                                               account_id=self.config.account_id)
                self.backend = await BackendService.open(self.config.data_path / "queues",
                                                         backend_config)
            api = self.backend
            extra_ops = None
            if "metadata" in roles or self.config.seeds:
                # Queue definitions live in the Raft metadata store (docs/design/cluster.md);
                # a node without the metadata role reads and changes them through its seeds.
                from qnode.cluster.runtime import ClusterRuntime
                self.cluster = ClusterRuntime(self.config, self.backend)
                api = self.cluster.queues
                extra_ops = self.cluster.extra_ops()
            self.api = api
            node_info = {"node_id": self.config.node_id, "roles": list(self.config.roles),
                         "durability": PROTOCOL_DURABILITY_DEFAULT}
            self.binary_server = BinaryServer(api, ServerConfig(), node_info=node_info,
                                              extra_ops=extra_ops)
            bhost, bport = await self.binary_server.start(host, port)
            http = "off"
            if self.config.http != "off":
                http = await self._start_http()
            if self.cluster is not None:
                await self.cluster.start(f"{bhost}:{bport}", http)
        except BaseException:
            await self._close_components()
            self._lock.release()
            raise
        self.addresses = BoundAddresses(binary=f"{bhost}:{bport}", http=http)
        # Everything allocated so far (modules, classes, functions, recovered state) lives as
        # long as the process: out of the collector's scans. A full collection otherwise walks
        # it all, a ~40 ms pause of the event loop every few thousand requests.
        gc.collect()
        gc.freeze()
        return self.addresses

    async def _start_http(self) -> str:
        from qnode.frontend.http import HttpConfig, HttpServer

        host, port = parse_address(self.config.http)
        config = HttpConfig(account_id=self.config.account_id, region=self.config.region,
                            credentials=dict(self.config.access_keys),
                            insecure_no_auth=self.config.insecure_no_auth)
        self.http_server = HttpServer(self.api, config, metrics=self.metrics_text,
                                      health=self.health)
        hhost, hport = await self.http_server.start(host, port)
        return f"{hhost}:{hport}"

    def health(self) -> dict:
        return {"status": "ok", "node_id": self.config.node_id, "roles": list(self.config.roles)}

    def metrics_text(self) -> str:
        """Prometheus text exposition of the backend's and the Raft replica's counters and gauges."""
        from qnode.metrics import render_metrics

        stats = dict(self.backend.stats()) if self.backend else {}
        if self.cluster is not None:
            stats.update(self.cluster.stats())
        return render_metrics(stats)

    async def stop(self) -> None:
        await self._close_components()
        self._lock.release()

    async def _close_components(self) -> None:
        """Stop accepting, finish in-flight requests, close the backend, then leave SWIM, stop
        Raft and close the peer links."""
        timeout_ms = self.config.shutdown_timeout_ms
        if self.http_server is not None:
            await self.http_server.stop()
            self.http_server = None
        if self.cluster is not None and self.cluster.materializer is not None:
            await self.cluster.materializer.close()
        if self.binary_server is not None:
            # Stop accepting first; parked long polls are answered empty by backend.close().
            stopping = asyncio.ensure_future(self.binary_server.stop(timeout_ms))
            if self.backend is not None:
                await self.backend.close()
                self.backend = None
            await stopping
            self.binary_server = None
        if self.backend is not None:
            await self.backend.close()
            self.backend = None
        if self.cluster is not None:
            await self.cluster.stop()
            self.cluster = None
