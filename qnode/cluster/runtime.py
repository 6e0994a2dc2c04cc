"""ClusterRuntime: the cluster side of one node (SWIM, peer links, metadata Raft, queue layer).

Owns, for `qnode/node.py`: building and ordering the cluster components (on a metadata node a
`MetadataNode`; on a frontend/backend node started with `--seeds` a `RemoteMetadata` cache of
the same state, see remote.py), and the start-up work
of a node with the backend role:
  1. barrier: wait until the local metadata state has caught up with the leader;
  2. upgrade: a data directory written before queue definitions moved into Raft has queues in the
     backend WAL only; they are proposed into metadata once (idempotent: a queue already in
     metadata is left alone), then `<data_dir>/queues-in-metadata` records that it is done;
  3. reconcile: the backend is brought in line with metadata (create missing, fix attributes and
     tags, delete queues metadata does not have: only after steps 1 and 2);
then the materializer follows every applied change.
Order on start: SWIM (UDP on the binary port number), peer pool, Raft (at once or after the
bootstrap wait), queue layer. On stop: materializer, SWIM leave, Raft, peer links (the node stops
its listeners and backend around this; see node.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

from qnode.backend import attributes as qattrs
from qnode.cluster.materialize import Materializer
from qnode.cluster.metanode import MetadataNode
from qnode.cluster.queues import ClusterQueues
from qnode.cluster.remote import RemoteMetadata
from qnode.cluster.transport import PeerPool
from qnode.metadata import commands
from qnode.metadata.raft.core import Role
from qnode.protocol.errors import QnodeError, QueueAlreadyExists

log = logging.getLogger(__name__)

UPGRADE_MARKER = "queues-in-metadata"
single_start_timeout_s = 15.0
startup_retry_s = 0.2


WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def advertise_host(bind_host: str, seeds: tuple[str, ...] | list[str]) -> str:
    """The host peers reach us at: the bound host, or for a wildcard bind the local address
    that routes to the first seed (127.0.0.1 without seeds)."""
    if bind_host not in WILDCARD_HOSTS:
        return bind_host
    for seed in seeds:
        host, _, port = seed.rpartition(":")
        try:
            with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET,
                               socket.SOCK_DGRAM) as s:
                s.connect((host.strip("[]"), int(port)))
                return s.getsockname()[0]
        except (OSError, ValueError):
            continue
    return "127.0.0.1"


class ClusterRuntime:
    def __init__(self, config: Any, backend: Any | None) -> None:
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.backend = backend
        self.pool = PeerPool(config.node_id)
        self.membership: Any = None
        self.is_metadata = "metadata" in config.roles
        self.meta: Any
        if self.is_metadata:
            self.meta = MetadataNode(config.node_id, self.data_dir, bootstrap_expect=config.bootstrap_expect,
                                     has_seeds=bool(config.seeds), pool=self.pool)
        else:                                     # frontend/backend node of a cluster (--seeds)
            self.meta = RemoteMetadata(config.node_id, pool=self.pool)
        self.materializer = Materializer(backend, self._state) if backend is not None else None
        self.queues = ClusterQueues(self.meta, backend, self.materializer, region=config.region,
                                    account_id=config.account_id)
        self._startup_task: asyncio.Task | None = None
        self._startup_done = asyncio.Event()
        self._closed = False

    @property
    def single(self) -> bool:
        return self.is_metadata and not self.config.seeds and self.config.bootstrap_expect <= 0

    def _state(self) -> Any:
        assert self.meta.store is not None
        return self.meta.store.state

    def extra_ops(self) -> dict:
        return self.meta.extra_ops()

    async def start(self, binary_address: str, http_address: str = "") -> None:
        from qnode.membership.config import SwimConfig
        from qnode.membership.types import Meta
        from qnode.membership.udp import Membership

        host, _, port = binary_address.rpartition(":")
        host = host.strip("[]")
        advertise = advertise_host(host, self.config.seeds)
        binary_address = f"[{advertise}]:{port}" if ":" in advertise else f"{advertise}:{port}"
        meta = Meta.build(roles=tuple(self.config.roles), binary_address=binary_address,
                          http_address=http_address if http_address not in ("", "off") else "",
                          cell=self.config.cell)
        try:
            self.membership = await Membership.start(self.config.node_id, host, int(port), meta,
                                                     seeds=list(self.config.seeds), config=SwimConfig.lan(),
                                                     advertise_host=advertise)
        except (OSError, ValueError) as exc:
            if not self.single:
                raise
            log.warning("membership (UDP %s) not started: %s; running as a single node", binary_address, exc)
        self.meta.membership = self.membership
        self.meta.binary_address = binary_address
        try:
            await self.meta.start()
        except ValueError as exc:                 # --bootstrap-expect out of range, damaged voters file
            from qnode.node import StartupError
            raise StartupError(f"metadata: {exc}") from None
        if self.materializer is not None:
            self.meta.on_started(self._on_raft_started)
        if self.single:
            if not await self.meta.wait_leader(single_start_timeout_s):
                log.warning("the one-member metadata group elected no leader within %.0f s", single_start_timeout_s)
            if self.materializer is not None:
                try:
                    async with asyncio.timeout(single_start_timeout_s):
                        await self._startup_done.wait()
                except TimeoutError:
                    log.warning("queue definitions not reconciled within %.0f s", single_start_timeout_s)

    def _on_raft_started(self, store: Any) -> None:
        assert self.materializer is not None
        store.watch(self.materializer.on_apply)
        self.materializer.start(startup=self._startup)

    async def _startup(self) -> None:
        assert self.materializer is not None and self.backend is not None
        while not self._closed:
            try:
                await self.meta.barrier()
                await self._upgrade()
                await self.materializer.reconcile_all(delete_extra=True)
                break
            except QnodeError as exc:
                log.info("metadata start-up sync waiting: %s", exc.message)
                await asyncio.sleep(startup_retry_s)
        self._startup_done.set()

    async def _upgrade(self) -> None:
        marker = self.data_dir / UPGRADE_MARKER
        if marker.exists():
            return
        backend = self.backend
        names = await backend.list_queues()
        if names:
            log.info("upgrading data directory: moving %d queue definitions into the metadata store", len(names))
        state = self._state()
        for name in names:
            if state.get_queue(name) is not None:
                continue
            info = await backend.get_queue(name)
            attrs = await backend.get_queue_attributes(name, ["All"])
            stored = {k: v for k, v in info.attributes.items() if k in qattrs.SETTABLE}
            created_ms = int(attrs.get("CreatedTimestamp", "0")) * 1000
            try:
                await self.meta.propose(commands.create_queue(name, stored, dict(info.tags), created_ms))
            except QueueAlreadyExists:
                log.warning("queue %s already in metadata with other attributes; metadata wins", name)
        marker.write_text("queue definitions live in the metadata store (raft/)\n")

    async def stop(self) -> None:
        self._closed = True
        if self.materializer is not None:
            await self.materializer.close()
        if self.membership is not None:
            from qnode.membership.types import State
            others = [m for m in self.membership.members()
                      if m.node_id != self.config.node_id and m.state in (State.ALIVE, State.SUSPECT)]
            try:
                if others:                        # alone, there is nobody to tell
                    await self.membership.leave(timeout_s=1.0)
            finally:
                await self.membership.stop()
        await self.meta.stop()
        await self.pool.close()

    def status(self) -> dict:
        return self.meta.status()

    def stats(self) -> dict:
        """Numbers for /metrics: this node's Raft replica, when it runs one."""
        store = getattr(self.meta, "store", None)
        driver = getattr(store, "driver", None) if store is not None else None
        if driver is None:
            return {}
        st = driver.core.status()
        return {"raft": {"term": st.term, "commit": st.commit, "applied": st.applied,
                         "is_leader": st.role is Role.LEADER and driver.failure is None,
                         "compaction_failures": driver.compaction_failures,
                         "dropped_raft_messages": driver.dropped_message_count,
                         "stopped": driver.failure is not None}}
