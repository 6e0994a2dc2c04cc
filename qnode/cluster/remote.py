"""RemoteMetadata: queue definitions for a node *without* the metadata role (it has `--seeds`).

Owns: a local read-only cache of the metadata state, pulled from metadata members, and the
write path to them. It offers the part of `MetadataNode`'s interface that `ClusterQueues` and
`ClusterRuntime` use (`store.state`, `store.watch`, `propose`, `barrier`, `status`, ...), so the
queue layer and the materializer work unchanged on frontend/backend-only nodes.

- Reads: `meta_state` from a metadata member every `poll_interval_s` (the reply carries the whole
  state only when its applied index moved past ours; chunks of `MetadataState.snapshot()`).
  Each new state is diffed against the cached one, and every queue whose definition changed is
  reported to the watchers as one change, so the materializer creates, updates and deletes
  exactly as on a metadata node.
- Writes: `meta_submit` to a metadata member (which forwards to the leader and applies the entry
  before it replies), then a pull from that same member, so the caller reads its own write.
  Unreachable members are skipped in turn until `propose_timeout_s`.
- barrier(): a pull with `"barrier": true` (the member first catches up with the leader).
Invariants: the cache only moves forward (a reply with a lower applied index than the cache is
ignored); one pull task, owned and cancelled by `stop()`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Mapping

from qnode.cluster.waiting import wait_event
from qnode.cluster.transport import PeerPool
from qnode.membership.types import MemberDown, MemberLeft
from qnode.metadata.commands import Command
from qnode.metadata.state import ApplyResult, MetadataState
from qnode.protocol.errors import NotLeader, QnodeError, RequestTimeout, Unavailable

log = logging.getLogger(__name__)

poll_interval_s = 0.5
request_timeout_s = 3.0
propose_timeout_s = 5.0
state_size_max = 64 << 20

Watcher = Callable[[int, Command | None, ApplyResult | None], None]


def changed_queues(old: MetadataState, new: MetadataState) -> list[tuple[str, str]]:
    """(name, kind) for every queue whose definition differs between two states (pure)."""
    out = []
    for name in sorted(set(old.queues) | set(new.queues)):
        a, b = old.queues.get(name), new.queues.get(name)
        if b is None:
            out.append((name, "delete_queue"))
        elif a is None or a.created_index != b.created_index:
            out.append((name, "create_queue"))
        elif a != b:
            out.append((name, "set_queue_attributes"))
    return out


class CacheStore:
    """The cached state plus watchers (the subset of MetadataStore the queue layer reads)."""

    def __init__(self) -> None:
        self.state = MetadataState()
        self._watchers: list[Watcher] = []

    def watch(self, callback: Watcher) -> Callable[[], None]:
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback) if callback in self._watchers else None

    def replace(self, new: MetadataState) -> None:
        if new.applied_index <= self.state.applied_index:
            return
        changes = changed_queues(self.state, new)
        self.state = new
        for name, kind in changes:
            result = ApplyResult(new.applied_index, kind)
            for watcher in list(self._watchers):
                try:
                    watcher(new.applied_index, Command(kind, {"name": name}), result)
                except Exception:  # noqa: BLE001 - a broken watcher must not stop the cache
                    log.exception("metadata cache watcher failed; removed")
                    self._watchers.remove(watcher)


class RemoteMetadata:
    def __init__(self, node_id: str, *, pool: PeerPool, membership: Any = None,
                 binary_address: str = "") -> None:
        self.node_id = node_id
        self.pool = pool
        self.membership = membership
        self.binary_address = binary_address
        self.store: CacheStore | None = None
        self._cache = CacheStore()
        self._started = asyncio.Event()
        self._on_started: list[Callable[[CacheStore], None]] = []
        self._task: asyncio.Task | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._preferred: str | None = None
        self._pull_lock = asyncio.Lock()

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        if self.membership is not None:
            self._unsubscribe = self.membership.subscribe(self._on_member_event)
            for member in self.membership.members():
                self._learn(member)
        self._task = asyncio.get_running_loop().create_task(self._poll(), name="metadata-cache")
        self._task.add_done_callback(self._task_done)

    def on_started(self, callback: Callable[[CacheStore], None]) -> None:
        if self.store is not None:
            callback(self.store)
        else:
            self._on_started.append(callback)

    async def wait_leader(self, timeout_s: float) -> bool:
        return await wait_event(self._started, timeout_s)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task})

    def extra_ops(self) -> dict[str, Callable[[Mapping], Any]]:
        return {"cluster_status": self._op_cluster_status}

    def _task_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("metadata cache task crashed", exc_info=task.exception())

    # --- members ----------------------------------------------------------------------------
    def _on_member_event(self, event: Any) -> None:
        if isinstance(event, (MemberDown, MemberLeft)):
            self.pool.forget(event.member.node_id)
        else:
            self._learn(event.member)

    def _learn(self, member: Any) -> None:
        if member.meta.binary_address and "metadata" in member.meta.roles:
            self.pool.set_address(member.node_id, member.meta.binary_address)

    def _members(self) -> list[str]:
        """Metadata members to try, the last one that answered first."""
        from qnode.membership.types import State
        alive = []
        if self.membership is not None:
            alive = [m.node_id for m in self.membership.members()
                     if "metadata" in m.meta.roles and m.state in (State.ALIVE, State.SUSPECT)]
        ids = [n for n in alive if self.pool.address_of(n) is not None]
        if self._preferred in ids:
            ids.remove(self._preferred)
            ids.insert(0, self._preferred)
        return ids

    # --- reads ------------------------------------------------------------------------------
    async def _poll(self) -> None:
        while True:
            try:
                await self.pull()
            except QnodeError as exc:
                log.debug("metadata cache pull failed: %s", exc.message)
            await asyncio.sleep(poll_interval_s)

    async def pull(self, member: str | None = None, barrier: bool = False) -> int:
        """Refresh the cache from `member` (or any metadata member); returns its applied index."""
        candidates = [member] if member is not None else self._members()
        if not candidates:
            raise Unavailable("no metadata member is known yet (check --seeds)")
        last: QnodeError | None = None
        for node_id in candidates:
            try:
                async with self._pull_lock:
                    reply = await self.pool.request(node_id, "meta_state",
                                                    {"since": self._cache.state.applied_index, "barrier": barrier},
                                                    timeout_s=request_timeout_s + (propose_timeout_s if barrier else 0))
                    index = self._absorb(reply)
            except (Unavailable, NotLeader, RequestTimeout) as exc:
                last = exc
                continue
            self._preferred = node_id
            self._mark_started()
            return index
        assert last is not None
        raise last

    def _absorb(self, reply: Any) -> int:
        if not isinstance(reply, dict) or type(reply.get("index")) is not int:
            raise Unavailable("bad meta_state reply")
        chunks = reply.get("state")
        if chunks is not None:
            if not isinstance(chunks, list) or not all(isinstance(c, bytes) for c in chunks) \
                    or sum(len(c) for c in chunks) > state_size_max:
                raise Unavailable("bad meta_state reply")
            try:
                state = MetadataState.restore(b"".join(chunks))
            except (ValueError, TypeError, KeyError, AssertionError) as exc:
                raise Unavailable(f"undecodable metadata state ({type(exc).__name__})") from None
            self._cache.replace(state)
        return reply["index"]

    def _mark_started(self) -> None:
        if self.store is None:
            self.store = self._cache
            self._started.set()
            callbacks, self._on_started = self._on_started, []
            for callback in callbacks:
                callback(self._cache)

    async def barrier(self) -> None:
        await self.pull(barrier=True)

    # --- writes -----------------------------------------------------------------------------
    async def propose(self, cmd: Command, timeout_s: float = propose_timeout_s) -> ApplyResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        data = cmd.encode()
        last: QnodeError | None = None
        while True:
            for node_id in self._members():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    reply = await self.pool.request(node_id, "meta_submit", {"cmd": data}, timeout_s=remaining)
                except (Unavailable, NotLeader) as exc:
                    last = exc
                    continue
                index = reply.get("index") if isinstance(reply, dict) else None
                if type(index) is not int:
                    raise Unavailable("bad meta_submit reply")
                try:
                    # The member applied it before replying; our cache catches up within the
                    # caller's deadline. Failing here must not look like "not done": a retry
                    # would apply it twice.
                    async with asyncio.timeout_at(deadline):
                        for _ in range(3):
                            if self._cache.state.applied_index >= index:
                                break
                            await self.pull(node_id)
                except (TimeoutError, QnodeError) as exc:
                    raise RequestTimeout(f"committed at index {index}, but this node's metadata "
                                         f"cache did not catch up in time ({exc!r})") from None
                return ApplyResult(index, cmd.kind)
            if loop.time() + poll_interval_s / 5 >= deadline:
                why = f" ({last.message})" if last is not None else ""
                raise Unavailable(f"no metadata member took the change within {timeout_s} s{why}")
            await asyncio.sleep(poll_interval_s / 5)

    # --- status -----------------------------------------------------------------------------
    async def _op_cluster_status(self, args: Mapping) -> dict:
        return self.status()

    def status(self) -> dict:
        members = []
        if self.membership is not None:
            for m in self.membership.members():
                members.append({"id": m.node_id, "address": m.meta.binary_address or m.address,
                                "roles": list(m.meta.roles), "state": m.state.name.lower(),
                                "cell": m.meta.cell, "incarnation": m.incarnation})
        return {"node_id": self.node_id, "address": self.binary_address,
                "raft": {"started": False, "cache_index": self._cache.state.applied_index,
                         "cache_from": self._preferred},
                "members": members}
