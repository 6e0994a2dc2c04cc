"""MetadataNode: this process's member of the metadata Raft group (the asyncio shell around it).

Owns: the bootstrap wait (bootstrap.py decides), the `MetadataStore` + `RaftDriver` and the
driver task, the addresses of metadata peers learnt from SWIM (fed into the `PeerPool`), and the peer ops
served on the binary listener:
    raft          {"m": [msg]}   -> {}            inbound Raft messages (transport.decode_batch)
    meta_propose  {"cmd": bytes} -> {"index": N}  a proposal forwarded by a follower
    cluster_status {}            -> this node's view (raft + members)
    meta_submit   {"cmd": bytes} -> {"index": N}  a change from a node without the metadata role
    meta_state    {"since": N}   -> {"index", "state"?}  the applied state, for remote caches
`propose(cmd)` works on any member: the leader proposes, a follower forwards to the leader and
then waits until its own state has applied the entry (read-your-writes on this node).

Election timing: 50 ms ticks, heartbeat every 2 ticks (100 ms), election timeout 12..24 ticks
(0.6..1.2 s): a dead leader is replaced in about 1 s, and a follower must miss 6+ heartbeats in
a row before it even pre-votes (pre-vote and check-quorum are on), which a loaded loop does not.
Invariants: Raft starts at most once per process, with the voter set persisted before it starts;
every task is owned (reference + done-callback) and stopped by `stop()`.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from pathlib import Path
from typing import Any, Callable, Mapping

import msgpack

from qnode import limits
from qnode.cluster.waiting import wait_event
from qnode.cluster import bootstrap
from qnode.cluster.transport import PeerPool, decode_batch
from qnode.membership.types import MemberDown, MemberLeft
from qnode.metadata.commands import Command
from qnode.metadata.raft.core import RaftConfig, Role
from qnode.metadata.state import ApplyResult
from qnode.metadata.store import MetadataStore
from qnode.protocol.errors import (
    InvalidParameter, NotLeader, QnodeError, RequestTimeout, Unavailable,
)

log = logging.getLogger(__name__)

TICK_INTERVAL_MS = limits.cluster_raft_tick_interval_ms
RAFT_CONFIG = RaftConfig(election_ticks=limits.cluster_raft_election_ticks,
                         heartbeat_ticks=limits.cluster_raft_heartbeat_ticks)
CLUSTER_ID = 1
STATE_CHUNK_SIZE = 512 << 10      # meta_state reply chunks: below the client's msgpack bin bound
propose_timeout_s = limits.cluster_propose_timeout_ms / 1000
forward_retry_s = 0.05


def _stopped(store: MetadataStore | None) -> bool:
    """This node's metadata group fail-stopped: retrying cannot help until a restart."""
    return store is not None and store.driver is not None and store.driver.failure is not None


class MetadataNode:
    def __init__(self, node_id: str, data_dir: Path, *, bootstrap_expect: int, has_seeds: bool,
                 pool: PeerPool, membership: Any = None, binary_address: str = "") -> None:
        self.node_id = node_id
        self.data_dir = data_dir
        self.bootstrap_expect = bootstrap_expect
        self.has_seeds = has_seeds
        self.pool = pool
        self.membership = membership
        self.binary_address = binary_address
        self.store: MetadataStore | None = None
        self.voters: tuple[str, ...] = ()
        self.fresh_raft = False                  # the raft dir did not exist before this start
        self._driver_task: asyncio.Task | None = None
        self._bootstrap_task: asyncio.Task | None = None
        self._member_changed = asyncio.Event()
        self._leader_known = asyncio.Event()
        self._started = asyncio.Event()
        self._unsubscribe: Callable[[], None] | None = None
        self._on_started: list[Callable[[MetadataStore], None]] = []

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start Raft now if the voter set is known, else wait for it in the background."""
        if self.membership is not None:
            self._unsubscribe = self.membership.subscribe(self._on_member_event)
            self._learn_members()
        voters = bootstrap.load_voters(self.data_dir)
        if voters is None:
            voters = bootstrap.initial_voters(self.node_id, self.bootstrap_expect, self.has_seeds,
                                              self._metadata_members())
        if voters is not None:
            self._start_raft(voters)
            return
        self._bootstrap_task = asyncio.get_running_loop().create_task(self._await_bootstrap(),
                                                                      name="metadata-bootstrap")
        self._bootstrap_task.add_done_callback(self._task_done)

    def on_started(self, callback: Callable[[MetadataStore], None]) -> None:
        """Run `callback(store)` once Raft has started (at once if it already has)."""
        if self.store is not None:
            callback(self.store)
        else:
            self._on_started.append(callback)

    async def wait_started(self, timeout_s: float) -> bool:
        return await wait_event(self._started, timeout_s)

    async def wait_leader(self, timeout_s: float) -> bool:
        return await wait_event(self._leader_known, timeout_s)

    async def _await_bootstrap(self) -> None:
        log.info("waiting for %d metadata members before forming the group", self.bootstrap_expect)
        while self.store is None:
            self._member_changed.clear()
            voters = bootstrap.initial_voters(self.node_id, self.bootstrap_expect, self.has_seeds,
                                              self._metadata_members())
            if voters is not None:
                self._start_raft(voters)
                return
            await self._member_changed.wait()

    def _start_raft(self, voters: tuple[str, ...]) -> None:
        assert self.store is None, "raft started twice"
        self.fresh_raft = not (self.data_dir / "raft").exists()
        if bootstrap.load_voters(self.data_dir) is None:
            bootstrap.store_voters(self.data_dir, voters)
        self.voters = voters
        store = MetadataStore.open(self.node_id, list(voters), str(self.data_dir), self.pool,
                                   cluster_id=CLUSTER_ID,
                                   wal_node_id=zlib.crc32(self.node_id.encode()) & 0x7FFF_FFFF,
                                   config=RAFT_CONFIG, tick_interval_ms=TICK_INTERVAL_MS)
        assert store.driver is not None
        core = store.driver.core
        if core.voters == (self.node_id,):
            # A one-member group: nobody else can lead, so skip the election timeout (logical
            # ticks before the driver runs; its first Ready persists the new term and vote).
            for _ in range(2 * RAFT_CONFIG.election_ticks):
                if core.role is Role.LEADER:
                    break
                core.tick()
        store.driver.role_listeners.append(self._on_role)
        self.store = store
        self._driver_task = asyncio.get_running_loop().create_task(store.driver.run(), name="raft")
        self._driver_task.add_done_callback(self._task_done)
        log.info("metadata group started: voters=%s fresh=%s", ",".join(voters), self.fresh_raft)
        self._started.set()
        callbacks, self._on_started = self._on_started, []
        for callback in callbacks:
            callback(store)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._bootstrap_task is not None and not self._bootstrap_task.done():
            self._bootstrap_task.cancel()
            await asyncio.wait({self._bootstrap_task})
        if self.store is not None and self.store.driver is not None:
            self.store.driver.stop()
        if self._driver_task is not None:
            await asyncio.wait({self._driver_task}, timeout=5.0)
            if self.store is not None and self.store.driver is not None:
                close = getattr(self.store.driver.storage.log, "close", None)
                if close is not None:
                    close()

    def _task_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("metadata task %s crashed", task.get_name(), exc_info=task.exception())

    # --- membership -------------------------------------------------------------------------
    def _on_member_event(self, event: Any) -> None:
        member = event.member
        if isinstance(event, (MemberDown, MemberLeft)):
            self.pool.forget(member.node_id)
        elif member.meta.binary_address and "metadata" in member.meta.roles:
            self.pool.set_address(member.node_id, member.meta.binary_address)
        self._member_changed.set()

    def _learn_members(self) -> None:
        for member in self.membership.members():
            if member.meta.binary_address and "metadata" in member.meta.roles:
                self.pool.set_address(member.node_id, member.meta.binary_address)

    def _metadata_members(self) -> list[str]:
        if self.membership is None:
            return []
        from qnode.membership.types import State
        return [m.node_id for m in self.membership.members()
                if "metadata" in m.meta.roles and m.state is State.ALIVE]

    def _on_role(self, role: Role, term: int, leader: str | None) -> None:
        if leader is not None:
            self._leader_known.set()
        else:
            self._leader_known.clear()

    # --- state ------------------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        return self.store is not None and self.store.driver is not None \
            and self.store.driver.core.role is Role.LEADER

    @property
    def leader(self) -> str | None:
        if self.store is None or self.store.driver is None:
            return None
        return self.store.driver.core.leader

    def address_of(self, node_id: str | None) -> str | None:
        if node_id is None:
            return None
        if node_id == self.node_id:
            return self.binary_address or None
        return self.pool.address_of(node_id)

    # --- proposals --------------------------------------------------------------------------
    async def propose(self, cmd: Command, timeout_s: float = propose_timeout_s) -> ApplyResult:
        """Commit `cmd` through the leader (this node or forwarded) and return its apply result
        once this node has applied it. Raises the apply error, or Unavailable/RequestTimeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        data = cmd.encode()
        last: QnodeError | None = None
        while True:
            store = self.store
            try:
                if store is None:
                    raise Unavailable("the metadata group has not formed yet (waiting for "
                                      f"--bootstrap-expect {self.bootstrap_expect} members)")
                assert store.driver is not None
                remaining = max(0.01, deadline - loop.time())
                if self.is_leader:
                    async with asyncio.timeout(remaining):
                        result = await store.driver.propose(data)
                    assert isinstance(result, ApplyResult), result
                    result.raise_for_error()
                    return result
                leader = self.leader
                if leader is None:
                    raise NotLeader("no metadata leader is known yet")
                reply = await self.pool.request(leader, "meta_propose", {"cmd": data}, timeout_s=remaining)
                index = reply.get("index") if isinstance(reply, dict) else None
                if type(index) is not int:
                    raise Unavailable("bad meta_propose reply")
                try:
                    async with asyncio.timeout(remaining):
                        await store.driver.wait_applied(index)
                except Unavailable as exc:
                    # The leader has it; only this node cannot apply it. Forwarding it again
                    # would commit it twice.
                    raise RequestTimeout(f"outcome unknown: {exc.message}") from None
                return ApplyResult(index, cmd.kind, value=None)
            except TimeoutError:
                raise RequestTimeout(f"metadata proposal timed out after {timeout_s} s") from None
            except (NotLeader, Unavailable) as exc:
                if _stopped(store):
                    raise
                last = exc
            if loop.time() + forward_retry_s >= deadline:
                raise Unavailable(f"no metadata leader answered within {timeout_s} s "
                                  f"({last.message if last else ''})")
            await asyncio.sleep(forward_retry_s)

    async def barrier(self, timeout_s: float = propose_timeout_s) -> None:
        """Wait until this node has applied everything the leader had committed when asked
        (a ReadIndex on the leader; a follower asks the leader for its commit index)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            store = self.store
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise RequestTimeout(f"metadata not caught up within {timeout_s} s")
            try:
                if store is not None and self.is_leader:
                    await store.read(lambda s: None, linearizable=True, timeout_ms=int(remaining * 1000))
                    return
                leader = self.leader
                if store is not None and leader is not None:
                    reply = await self.pool.request(leader, "cluster_status", {}, timeout_s=remaining)
                    commit = reply.get("raft", {}).get("commit") if isinstance(reply, dict) else None
                    if type(commit) is int:
                        assert store.driver is not None
                        async with asyncio.timeout(remaining):
                            await store.driver.wait_applied(commit)
                        return
            except TimeoutError:
                raise RequestTimeout(f"metadata not caught up within {timeout_s} s") from None
            except (NotLeader, Unavailable):
                if _stopped(store):
                    raise
            await asyncio.sleep(forward_retry_s)

    # --- peer ops ---------------------------------------------------------------------------
    def extra_ops(self) -> dict[str, Callable[[Mapping], Any]]:
        return {"raft": self._op_raft, "meta_propose": self._op_meta_propose,
                "meta_submit": self._op_meta_submit, "meta_state": self._op_meta_state,
                "cluster_status": self._op_cluster_status}

    async def _op_raft(self, args: Mapping) -> dict:
        msgs = decode_batch(args, self.node_id)
        if self.store is None:
            return {"dropped": len(msgs)}        # not bootstrapped yet: the sender retransmits
        for msg in msgs:
            self.store.receive(msg)
        return {}

    async def _op_meta_propose(self, args: Mapping) -> dict:
        data = args.get("cmd")
        if not isinstance(data, bytes):
            raise InvalidParameter("cmd must be bytes")
        store = self.store
        if store is None or not self.is_leader:
            raise NotLeader(leader_hint=self.address_of(self.leader))
        try:
            Command.decode(data)
        except (ValueError, TypeError, AssertionError, msgpack.UnpackException) as exc:
            raise InvalidParameter(f"undecodable metadata command: {type(exc).__name__}") from None
        assert store.driver is not None
        try:
            async with asyncio.timeout(propose_timeout_s):
                result = await store.driver.propose(data)
        except TimeoutError:
            raise RequestTimeout("metadata proposal timed out") from None
        assert isinstance(result, ApplyResult), result
        result.raise_for_error()
        return {"index": result.index}

    async def _op_meta_submit(self, args: Mapping) -> dict:
        """A change from a node without the metadata role: proposed (forwarded to the leader if
        needed) and applied here before the reply, so `meta_state` here then includes it."""
        data = args.get("cmd")
        if not isinstance(data, bytes):
            raise InvalidParameter("cmd must be bytes")
        try:
            cmd = Command.decode(data)
        except (ValueError, TypeError, AssertionError, msgpack.UnpackException) as exc:
            raise InvalidParameter(f"undecodable metadata command: {type(exc).__name__}") from None
        result = await self.propose(cmd)
        return {"index": result.index}

    async def _op_meta_state(self, args: Mapping) -> dict:
        """This node's applied metadata state for a cache on another node: {"index": N} and,
        when N > args["since"], {"state": [chunks of MetadataState.snapshot()]}. With
        "barrier": true it first catches up with the leader (see barrier())."""
        since = args.get("since", -1)
        if type(since) is not int:
            raise InvalidParameter("since must be an integer")
        store = self.store
        if store is None:
            raise Unavailable("the metadata group has not formed yet")
        if args.get("barrier") is True:
            await self.barrier()
        state = store.state
        out: dict[str, Any] = {"index": state.applied_index}
        if state.applied_index > since:
            data = state.snapshot()
            out["state"] = [data[i:i + STATE_CHUNK_SIZE] for i in range(0, len(data), STATE_CHUNK_SIZE)]
        return out

    async def _op_cluster_status(self, args: Mapping) -> dict:
        return self.status()

    def status(self) -> dict:
        """This node's view: its Raft position and the members it knows (SWIM)."""
        raft: dict[str, Any] = {"started": self.store is not None, "voters": list(self.voters)}
        if self.store is not None and self.store.driver is not None:
            st = self.store.driver.core.status()
            raft.update(role=st.role.value, term=st.term, leader=st.leader, commit=st.commit,
                        applied=st.applied, first_index=st.first_index, last_index=st.last_index,
                        voters=list(st.voters),
                        leader_address=self.address_of(st.leader),
                        compaction_failures=self.store.driver.compaction_failures,
                        failure=None if self.store.driver.failure is None
                        else repr(self.store.driver.failure))
        members = []
        if self.membership is not None:
            for m in self.membership.members():
                members.append({"id": m.node_id, "address": m.meta.binary_address or m.address,
                                "roles": list(m.meta.roles), "state": m.state.name.lower(),
                                "cell": m.meta.cell, "incarnation": m.incarnation})
        return {"node_id": self.node_id, "address": self.binary_address, "raft": raft,
                "members": members}
