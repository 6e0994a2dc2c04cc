"""RaftDriver: the asyncio shell around RaftCore (persist -> fsync -> send -> apply -> advance).

Owns: the event loop side of one Raft node: a bounded inbox of inputs (messages, proposals, reads),
the tick timer, the Ready cycle, and the futures of pending proposals and reads. It makes no
protocol decisions; every `if` about Raft state lives in core.py.

The Ready cycle, in this order (etcd-raft README; RaftCore docstring):
  1. storage.save(hard_state, snapshot, entries) and fsync, on the storage executor (one thread,
     so writes keep their order and the loop never blocks on disk)
  2. transport.send() every message (they may depend on step 1)
  3. state_machine.restore(snapshot) if any, then state_machine.apply(entry) for each committed
     entry, resolving the proposal futures whose (index, term) match
  4. resolve ReadIndex futures (the caller waits for applied >= index, see wait_applied)
  5. core.advance(rd); maybe compact (snapshot + storage.save_snapshot)

A compaction whose checkpoint is not written (CheckpointNotWritten: the temp file failed, e.g. the
disk is full) loses nothing, since the log still holds every entry: it is logged and counted in
`compaction_failures`, and the next compaction, `compact_every_count` entries later, tries again.
Any other storage error ends `run()` (fail-stop: a log that cannot persist a Ready must not ack);
`failure` then holds it: calls made later fail at once with Unavailable, and proposals already in
the log with RequestTimeout (their outcome is unknown: they may have reached followers).

Bounds: the inbox holds `inbox_count_max` inputs; a full inbox drops inbound Raft messages (Raft
retransmits) and refuses proposals and reads with Busy. Proposals and reads carry deadlines
chosen by the caller (MetadataStore), so nothing waits forever.

Constructing a node (what qnode/node.py does; see also MetadataStore.open):

    from qnode.wal.fs import RealFs
    from qnode.wal.log import SegmentedLog
    wal = SegmentedLog.open(RealFs(), f"{data_dir}/raft", cluster_id=cid, node_id=int_node_id)
    storage = RaftStorage(wal)
    restored = storage.load()
    core = RaftCore(node_id, peers, random.Random(seed), RaftConfig(), restored)
    store = MetadataStore(node_id)                       # the state machine adapter + API
    driver = RaftDriver(core, storage, transport, store, tick_interval_ms=100)
    store.attach(driver, restored)
    async with asyncio.TaskGroup() as tg: tg.create_task(driver.run())
    ... driver.stop()

`transport` is anything with `send(to_node_id, msg)` (non-blocking; may drop) that calls
`driver.receive(msg)` for inbound Raft messages; `LoopbackNetwork` below is the in-process one.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Protocol

from qnode import limits
from qnode.metadata.raft.core import RaftCore, Ready, Role
from qnode.metadata.raft.messages import Entry, EntryKind, Message, ReadState, Snapshot
from qnode.metadata.raft.storage import RaftStorage
from qnode.protocol.errors import Busy, NotLeader, QnodeError, RequestTimeout, ShuttingDown, Unavailable
from qnode.wal.errors import CheckpointNotWritten

log = logging.getLogger(__name__)

inbox_count_max = limits.raft_inbox_count_max   # beyond it: drop messages, Busy for clients
inputs_per_cycle_max = 512        # inputs handled before the next Ready is processed
# uvloop's timers count whole milliseconds and may fire up to one early, and a wait for less
# returns at once. A tick due within this is taken now; before, the loop spun through that last
# millisecond (8 to 50 empty cycles per 50 ms tick, measured on an idle node).
tick_slack_s = 0.001


class Transport(Protocol):
    def send(self, to_node_id: str, msg: Message) -> None: ...


class StateMachine(Protocol):
    def apply_entry(self, entry: Entry) -> Any: ...     # returns the proposal's result
    def restore_snapshot(self, snapshot: Snapshot) -> None: ...
    def take_snapshot(self) -> bytes: ...


class ProposalDropped(Unavailable):
    """The entry was replaced by another leader's entry: it never took effect; retry."""


class RaftDriver:
    def __init__(self, core: RaftCore, storage: RaftStorage, transport: Transport,
                 state_machine: StateMachine, *, tick_interval_ms: int = 100,
                 compact_every_count: int = limits.raft_compact_every_count) -> None:
        assert tick_interval_ms > 0
        assert compact_every_count > 0
        self.core = core
        self.storage = storage
        self.transport = transport
        self.state_machine = state_machine
        self.tick_interval_ms = tick_interval_ms
        self.compact_every_count = compact_every_count
        self._inbox: asyncio.Queue[tuple] = asyncio.Queue(maxsize=inbox_count_max)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"raft-{core.id}")
        self._proposals: dict[int, tuple[int, asyncio.Future]] = {}
        self._reads: dict[int, asyncio.Future] = {}
        self._read_seq = 0
        self._applied_waiters: list[tuple[int, asyncio.Future]] = []
        self._stopping = False
        self.failure: Exception | None = None   # what ended run() (fail-stop), if anything did
        self.dropped_message_count = 0
        self.compaction_failures = 0
        self.applied_index = core.log.applied
        self.role_listeners: list[Callable[[Role, int, str | None], None]] = []
        self._last_role: tuple[Role, int, str | None] = (core.role, core.term, core.leader)

    # --- inputs (any coroutine or callback on the loop) ------------------------------------
    def receive(self, msg: Message) -> None:
        """Inbound Raft message from the transport. Dropped if the inbox is full."""
        try:
            self._inbox.put_nowait(("msg", msg))
        except asyncio.QueueFull:
            self.dropped_message_count += 1

    def propose(self, data: bytes, kind: EntryKind = EntryKind.NORMAL) -> asyncio.Future:
        """A future resolving to the state machine's apply result; exception NotLeader, Busy,
        ProposalDropped or ShuttingDown. The caller bounds the wait (asyncio.timeout)."""
        fut = asyncio.get_running_loop().create_future()
        self._submit(("propose", data, kind, fut), fut)
        return fut

    def read_index(self) -> asyncio.Future:
        """A future resolving to a commit index that a linearizable read must wait for."""
        fut = asyncio.get_running_loop().create_future()
        self._submit(("read", fut), fut)
        return fut

    async def wait_applied(self, index: int) -> None:
        if self.applied_index >= index:
            return
        if self._stopping:
            raise self._ended_error()
        fut = asyncio.get_running_loop().create_future()
        self._applied_waiters.append((index, fut))
        await fut

    def _submit(self, item: tuple, fut: asyncio.Future) -> None:
        if self._stopping:
            fut.set_exception(self._ended_error())
            return
        try:
            self._inbox.put_nowait(item)
        except asyncio.QueueFull:
            fut.set_exception(Busy("raft inbox full", retry_after_ms=50))

    def stop(self) -> None:
        """Ask run() to return; it notices within one tick interval at most (sooner if the
        inbox has room for the stop marker)."""
        self._stopping = True
        if not self._inbox.full():
            self._inbox.put_nowait(("stop",))

    # --- the loop --------------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        tick_s = self.tick_interval_ms / 1000
        next_tick = loop.time() + tick_s
        try:
            while not self._stopping:
                items = await self._next_inputs(max(0.0, next_tick - loop.time()))
                for item in items:
                    self._handle(item)
                if loop.time() >= next_tick - tick_slack_s:
                    self.core.tick()
                    next_tick = max(next_tick + tick_s, loop.time())
                while (rd := self.core.ready()) is not None:
                    await self._process(rd)
                self._notify_role()
        except Exception as exc:
            # Fail-stop (a storage error): remember why, so that every later call fails at
            # once with it instead of waiting in the inbox for its deadline.
            self.failure = exc
            raise
        finally:
            self._stopping = True
            # A proposal already in the log when storage failed may still commit (its entry
            # may have reached followers in an earlier cycle): its outcome is unknown.
            unknown = None if self.failure is None else RequestTimeout(
                f"outcome unknown: the metadata group stopped on this node: {self.failure!r}")
            self._fail_all(self._ended_error(), proposals=unknown)
            self._executor.shutdown(wait=True)

    def _ended_error(self) -> QnodeError:
        if self.failure is None:
            return ShuttingDown()
        return Unavailable(f"the metadata group stopped on this node: {self.failure!r}")

    async def _next_inputs(self, timeout_s: float) -> list[tuple]:
        items: list[tuple] = []
        try:
            async with asyncio.timeout(timeout_s):
                items.append(await self._inbox.get())
        except TimeoutError:
            return items
        while len(items) < inputs_per_cycle_max and not self._inbox.empty():
            items.append(self._inbox.get_nowait())
        return items

    def _handle(self, item: tuple) -> None:
        kind = item[0]
        core = self.core
        if kind == "msg":
            core.step(item[1])
        elif kind == "propose":
            _, data, entry_kind, fut = item
            if fut.done():
                return
            try:
                index, term = core.propose(data, entry_kind)
            except QnodeError as exc:
                fut.set_exception(exc)
                return
            stale = self._proposals.pop(index, None)
            if stale is not None and not stale[1].done():
                # Our older entry here was truncated without replacement; it may still commit
                # through another node's log, so its outcome is unknown.
                stale[1].set_exception(RequestTimeout("outcome unknown: entry truncated"))
            self._proposals[index] = (term, fut)
        elif kind == "read":
            fut = item[1]
            if fut.done():
                return
            self._read_seq += 1
            try:
                core.read_index(self._read_seq)
            except QnodeError as exc:
                fut.set_exception(exc)
                return
            self._reads[self._read_seq] = fut
        elif kind == "stop":
            self._stopping = True
        else:
            assert False, item

    async def _process(self, rd: Ready) -> None:
        loop = asyncio.get_running_loop()
        if rd.hard_state is not None or rd.snapshot is not None or rd.entries:
            await loop.run_in_executor(self._executor, self.storage.save, rd.hard_state, rd.snapshot, rd.entries)
        for msg in rd.messages:
            self.transport.send(msg.dst, msg)
        if rd.snapshot is not None:
            self.state_machine.restore_snapshot(rd.snapshot)
            self._settle_proposals_upto(rd.snapshot.index)
        for entry in rd.committed:
            result = self.state_machine.apply_entry(entry)
            pending = self._proposals.pop(entry.index, None)
            if pending is not None and not pending[1].done():
                term, fut = pending
                if term == entry.term:
                    fut.set_result(result)
                else:
                    fut.set_exception(ProposalDropped("the entry was replaced by another leader's"))
        for rs in rd.read_states:
            fut = self._reads.pop(rs.ctx, None)
            if fut is not None and not fut.done():
                fut.set_result(rs.index)
        self.core.advance(rd)
        self.applied_index = self.core.log.applied
        self._wake_applied()
        if self.core.role is not Role.LEADER and self._reads:
            reads, self._reads = self._reads, {}
            for ctx in sorted(reads):
                if not reads[ctx].done():
                    reads[ctx].set_exception(NotLeader(leader_hint=self.core.leader))
        await self._maybe_compact()

    async def _maybe_compact(self) -> None:
        core = self.core
        if core.log.applied - core.log.snapshot_index < self.compact_every_count:
            return
        snap = core.compact(core.log.applied, self.state_machine.take_snapshot())
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.storage.save_snapshot, snap)
        except CheckpointNotWritten as exc:
            self.compaction_failures += 1
            log.error("raft: compaction checkpoint not written; the log keeps every entry, "
                      "the next compaction retries", extra={"node": core.id, "index": snap.index,
                                                            "error": repr(exc)})

    def _settle_proposals_upto(self, index: int) -> None:
        for i in sorted(self._proposals):
            if i <= index:
                _term, fut = self._proposals.pop(i)
                if not fut.done():
                    # A snapshot jumped over it: it may or may not have committed.
                    fut.set_exception(RequestTimeout("outcome unknown: state replaced by a snapshot"))

    def _wake_applied(self) -> None:
        keep = []
        for index, fut in self._applied_waiters:
            if fut.done():
                continue
            if index <= self.applied_index:
                fut.set_result(None)
            else:
                keep.append((index, fut))
        self._applied_waiters = keep

    def _notify_role(self) -> None:
        now = (self.core.role, self.core.term, self.core.leader)
        if now != self._last_role:
            self._last_role = now
            log.info("raft role", extra={"node": self.core.id, "role": now[0].value, "term": now[1],
                                         "leader": now[2]})
            for listener in self.role_listeners:
                listener(*now)

    def _fail_all(self, exc: QnodeError, proposals: QnodeError | None = None) -> None:
        """Fail every pending call with `exc` (proposals in the log with `proposals`, if given)."""
        for _i, (_t, fut) in sorted(self._proposals.items()):
            if not fut.done():
                fut.set_exception(proposals or exc)
        for _c, fut in sorted(self._reads.items()):
            if not fut.done():
                fut.set_exception(exc)
        for _i, fut in self._applied_waiters:
            if not fut.done():
                fut.set_exception(exc)
        self._proposals, self._reads, self._applied_waiters = {}, {}, []
        while not self._inbox.empty():
            item = self._inbox.get_nowait()
            if item[0] in ("propose", "read") and not item[-1].done():
                item[-1].set_exception(exc)


class LoopbackNetwork:
    """In-process transport for tests: delivers on the next loop iteration, can cut links."""

    def __init__(self) -> None:
        self._drivers: dict[str, RaftDriver] = {}
        self._cut: set[tuple[str, str]] = set()

    def register(self, node_id: str, driver: RaftDriver) -> None:
        self._drivers[node_id] = driver

    def transport(self, node_id: str) -> "LoopbackTransport":
        return LoopbackTransport(self, node_id)

    def isolate(self, node_id: str) -> None:
        for other in sorted(self._drivers):
            if other != node_id:
                self._cut.add((node_id, other))
                self._cut.add((other, node_id))

    def heal(self) -> None:
        self._cut.clear()

    def deliver(self, src: str, dst: str, msg: Message) -> None:
        driver = self._drivers.get(dst)
        if driver is None or (src, dst) in self._cut:
            return
        asyncio.get_running_loop().call_soon(driver.receive, msg)


class LoopbackTransport:
    def __init__(self, network: LoopbackNetwork, node_id: str) -> None:
        self.network = network
        self.node_id = node_id

    def send(self, to_node_id: str, msg: Message) -> None:
        self.network.deliver(self.node_id, to_node_id, msg)
