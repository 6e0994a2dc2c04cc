"""MetadataStore: the API frontends and managers use to read and change replicated metadata.

Owns: the node's `MetadataState` (applied through Raft), watchers of applied changes, and the
state-machine side of the RaftDriver (`apply_entry`, `restore_snapshot`, `take_snapshot`).

    store = await MetadataStore.open(node_id, peers, data_dir, transport)   # or construct + attach
    result = await store.propose(commands.create_queue("orders", {...}))    # value, or raises the
                                                                            # apply error (QueueAlreadyExists ...)
    q = await store.read(lambda s: s.get_queue("orders"))                   # linearizable (ReadIndex)
    q = await store.read(lambda s: s.get_queue("orders"), linearizable=False)  # local, maybe stale
    unwatch = store.watch(lambda index, cmd, result: ...)                   # every applied command
    store.receive(msg)                                                      # inbound Raft message (transport)

Errors: a follower answers NotLeader(leader_hint=<node id or None>) (no forwarding: the caller
retries at the hint); Busy when Raft's uncommitted/inbox bounds are hit; RequestTimeout when the
deadline passes or the outcome became unknown (the entry was truncated without replacement, or a
snapshot jumped over it): the command may still commit later, so retry knowing that commands are
idempotent or conflict deterministically; Unavailable (ProposalDropped) when another entry was
committed at its index (it never took effect).
Invariant: `state` only changes inside `apply_entry`/`restore_snapshot`, in Raft order.
Watch callbacks run synchronously on the loop after each apply; they must not block or raise
(an exception is logged and the watcher is removed).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Callable

from qnode import limits
from qnode.metadata.commands import Command
from qnode.metadata.raft.core import RaftConfig, RaftCore, Restored
from qnode.metadata.raft.driver import RaftDriver, Transport
from qnode.metadata.raft.messages import Entry, EntryKind, Message, Snapshot
from qnode.metadata.raft.storage import RaftStorage, RecordLog
from qnode.metadata.state import ApplyResult, MetadataState
from qnode.protocol.errors import RequestTimeout

log = logging.getLogger(__name__)

propose_timeout_ms_default = 5_000
read_timeout_ms_default = 5_000
watchers_count_max = 1_000

Watcher = Callable[[int, Command | None, ApplyResult | None], None]


class MetadataStore:
    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.state = MetadataState()
        self._watchers: list[Watcher] = []
        self.driver: RaftDriver | None = None

    def attach(self, driver: RaftDriver, restored: Restored) -> None:
        """Bind to the driver and restore the state from the recovered snapshot (entries after it
        are re-applied by Raft as they are committed again)."""
        self.driver = driver
        if restored.snapshot is not None:
            self.state = MetadataState.restore(restored.snapshot.data)

    @classmethod
    def build(cls, node_id: str, peers: list[str] | tuple[str, ...], wal: RecordLog, transport: Transport,
              *, config: RaftConfig | None = None, seed: int | None = None,
              tick_interval_ms: int = 100,
              compact_every_count: int = limits.raft_compact_every_count) -> "MetadataStore":
        """Assemble store + driver + core + storage over an opened WAL (SegmentedLog or the
        in-memory MemRecordLog). Run `store.driver.run()` in the node's TaskGroup."""
        storage = RaftStorage(wal)
        restored = storage.load()
        rng = random.Random(seed if seed is not None else f"raft/{node_id}")
        core = RaftCore(node_id, tuple(peers), rng, config, restored)
        store = cls(node_id)
        driver = RaftDriver(core, storage, transport, store, tick_interval_ms=tick_interval_ms,
                            compact_every_count=compact_every_count)
        store.attach(driver, restored)
        return store

    @classmethod
    def open(cls, node_id: str, peers: list[str] | tuple[str, ...], data_dir: str, transport: Transport,
             *, cluster_id: int, wal_node_id: int, **kwargs: Any) -> "MetadataStore":
        """Open the Raft WAL at `<data_dir>/raft` on the real disk and build the store.
        Raises qnode.wal.errors.WalCorruption when the log is damaged (rebuild from peers)."""
        from qnode.wal.fs import RealFs
        from qnode.wal.log import SegmentedLog
        wal = SegmentedLog.open(RealFs(), f"{data_dir}/raft", cluster_id=cluster_id, node_id=wal_node_id)
        return cls.build(node_id, peers, wal, transport, **kwargs)

    # --- API -------------------------------------------------------------------------------
    async def propose(self, cmd: Command, timeout_ms: int = propose_timeout_ms_default) -> Any:
        """Commit `cmd` and return its apply value; raises its apply error (a QnodeError), or
        NotLeader / Busy / Unavailable / RequestTimeout / ShuttingDown."""
        result = await self._await(self._driver().propose(cmd.encode()), timeout_ms)
        assert isinstance(result, ApplyResult), result
        return result.raise_for_error()

    async def read(self, fn: Callable[[MetadataState], Any], linearizable: bool = True,
                   timeout_ms: int = read_timeout_ms_default) -> Any:
        """Run fn(state) on a state at least as new as every write committed before the call
        (dissertation §6.4 ReadIndex), or on the local state if linearizable=False."""
        if linearizable:
            driver = self._driver()
            index = await self._await(driver.read_index(), timeout_ms)
            await self._await(driver.wait_applied(index), timeout_ms)
        return fn(self.state)

    def watch(self, callback: Watcher) -> Callable[[], None]:
        """Call callback(index, command, result) after every applied command (command None for
        a snapshot restore: re-read everything). Returns an unwatch function."""
        assert len(self._watchers) < watchers_count_max, "too many metadata watchers"
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback) if callback in self._watchers else None

    def receive(self, msg: Message) -> None:
        self._driver().receive(msg)

    def status_line(self) -> str:
        return self._driver().core.status().line()

    # --- StateMachine (called by RaftDriver, in Raft order) ---------------------------------
    def apply_entry(self, entry: Entry) -> Any:
        if entry.kind is not EntryKind.NORMAL:
            self.state.skip(entry.index)
            return None
        result = self.state.apply(entry.index, entry.data)
        cmd = Command.decode(entry.data) if result.kind != "?" else None
        self._notify(entry.index, cmd, result)
        return result

    def restore_snapshot(self, snapshot: Snapshot) -> None:
        self.state = MetadataState.restore(snapshot.data)
        self._notify(snapshot.index, None, None)

    def take_snapshot(self) -> bytes:
        return self.state.snapshot()

    # --- helpers ---------------------------------------------------------------------------
    def _driver(self) -> RaftDriver:
        assert self.driver is not None, "MetadataStore not attached to a RaftDriver"
        return self.driver

    async def _await(self, aw: Any, timeout_ms: int) -> Any:
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                return await aw
        except TimeoutError:
            raise RequestTimeout(f"metadata operation timed out after {timeout_ms} ms") from None

    def _notify(self, index: int, cmd: Command | None, result: ApplyResult | None) -> None:
        for watcher in list(self._watchers):
            try:
                watcher(index, cmd, result)
            except Exception:  # noqa: BLE001 - a broken watcher must not stop Raft's apply loop
                log.exception("metadata watcher failed; removed", extra={"index": index})
                self._watchers.remove(watcher)
