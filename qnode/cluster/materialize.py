"""Materializer: makes the local backend's queue definitions follow the metadata store.

Owns: the set of queue names whose definition changed in metadata (fed by the store's watch
callback, in Raft apply order) and the one task that applies those changes to the local
`BackendService`: create, delete, attribute and tag changes, each idempotent (it compares first,
so replaying a change is harmless). A snapshot restore marks every queue dirty.

`reconcile_all(delete_extra)` brings the whole backend in line at start: create missing queues,
fix attributes and tags, and (only when the caller knows the local state is caught up with the
leader and the upgrade of an old data directory is done) delete backend queues that metadata
does not have. Queues are created without their RedrivePolicy first and get it in the attribute
pass, so a dead-letter queue always exists before a source points at it.

Bounds: the dirty set holds at most `dirty_count_max` names; beyond it a full reconcile is
scheduled instead. Errors from the backend are logged and the name retried after the next
change (never raised into Raft's apply loop: the watch callback only records names).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Mapping

from qnode.backend import attributes as qattrs
from qnode.metadata.commands import Command
from qnode.metadata.state import ApplyResult, MetadataState
from qnode.protocol.errors import QnodeError, QueueDoesNotExist

log = logging.getLogger(__name__)

REMOVABLE = ("Policy", "RedrivePolicy", "RedriveAllowPolicy", qattrs.REDELIVERY_BACKOFF)
QUEUE_KINDS = frozenset({"create_queue", "delete_queue", "set_queue_attributes", "tag_queue", "untag_queue"})
dirty_count_max = 10_000


def clean(attributes: Mapping[str, str]) -> dict[str, str]:
    """Stored metadata attributes without the "" markers of removed optional attributes."""
    return {k: v for k, v in attributes.items() if not (v == "" and k in REMOVABLE)}


class Materializer:
    def __init__(self, backend: Any, state_fn: Any) -> None:
        self.backend = backend
        self._state_fn = state_fn              # () -> MetadataState (the store's current state)
        self._dirty: set[str] = set()
        self._retry: set[str] = set()
        self._all = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task | None = None
        self._closed = False
        self.applied_count = 0

    # --- inputs ----------------------------------------------------------------------------
    def on_apply(self, index: int, cmd: Command | None, result: ApplyResult | None) -> None:
        """MetadataStore watcher: record what changed (never blocks or raises)."""
        if cmd is None:
            self._all = True
        elif cmd.kind in QUEUE_KINDS and result is not None and result.ok:
            name = cmd.args.get("name")
            if isinstance(name, str):
                if len(self._dirty) >= dirty_count_max:
                    self._all = True
                else:
                    self._dirty.add(name)
        else:
            return
        self._idle.clear()
        self._wake.set()

    def start(self, startup: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run `startup()` (the node's start-up sync), then follow recorded changes."""
        assert self._task is None
        self._task = asyncio.get_running_loop().create_task(self._run(startup), name="materializer")
        self._task.add_done_callback(self._task_done)

    async def settle(self, timeout_s: float = 10.0) -> None:
        """Wait until every change recorded so far is applied to the backend (bounded)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            log.warning("backend materialization still running after %.1f s", timeout_s)

    async def close(self) -> None:
        self._closed = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task})

    def _task_done(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("materializer crashed", exc_info=task.exception())

    # --- the loop --------------------------------------------------------------------------
    async def _run(self, startup: Callable[[], Awaitable[None]] | None) -> None:
        if startup is not None:
            self._idle.clear()
            await startup()
        while not self._closed:
            if not self._dirty and not self._all:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._all:
                self._all = False
                self._dirty.clear()
                await self.reconcile_all(delete_extra=False)
                continue
            names = sorted(self._dirty | self._retry)
            self._dirty.clear()
            self._retry.clear()
            for name in names:
                await self.materialize(name)

    async def materialize(self, name: str) -> None:
        state: MetadataState = self._state_fn()
        q = state.get_queue(name)
        backend = self.backend
        try:
            have = name in await backend.list_queues(name)
            if q is None:
                if have:
                    await backend.delete_queue(name)
                    self.applied_count += 1
                return
            if not have:
                await self._create(name, q.attributes, q.tags)
            await self._fix(name, q.attributes, q.tags)
        except QueueDoesNotExist:
            self._retry.add(name)
        except QnodeError as exc:
            log.warning("cannot materialize queue %s on the backend: %s", name, exc.message)
            self._retry.add(name)

    async def _create(self, name: str, attributes: Mapping[str, str], tags: Mapping[str, str]) -> None:
        attrs = {k: v for k, v in clean(attributes).items() if k != "RedrivePolicy"}
        if name.endswith(".fifo"):
            attrs["FifoQueue"] = "true"
        await self.backend.create_queue(name, attrs, dict(tags))
        self.applied_count += 1

    async def _fix(self, name: str, attributes: Mapping[str, str], tags: Mapping[str, str]) -> None:
        backend = self.backend
        fifo = name.endswith(".fifo")
        want = qattrs.effective(clean(attributes), fifo)
        have = dict((await backend.get_queue(name)).attributes)
        delta = {k: v for k, v in want.items() if have.get(k) != v and k != "FifoQueue"}
        delta.update({k: "" for k in REMOVABLE if k in have and k not in want})
        if delta:
            await backend.set_queue_attributes(name, delta)
            self.applied_count += 1
        have_tags = await backend.list_queue_tags(name)
        extra = sorted(k for k in have_tags if k not in tags)
        if extra:
            await backend.untag_queue(name, extra)
        changed = {k: v for k, v in tags.items() if have_tags.get(k) != v}
        if changed:
            await backend.tag_queue(name, changed)

    async def reconcile_all(self, delete_extra: bool) -> None:
        """Bring every backend queue in line with metadata (see the module docstring)."""
        state: MetadataState = self._state_fn()
        backend = self.backend
        wanted = state.list_queues()
        have = set(await backend.list_queues())
        for name in wanted:
            q = state.get_queue(name)
            if q is not None and name not in have:
                try:
                    await self._create(name, q.attributes, q.tags)
                except QnodeError as exc:
                    log.warning("cannot create queue %s on the backend: %s", name, exc.message)
        for name in wanted:
            await self.materialize(name)
        if delete_extra:
            for name in sorted(have - set(state.list_queues())):
                log.info("deleting backend queue %s: it is not in the metadata store", name)
                try:
                    await backend.delete_queue(name)
                except QnodeError as exc:
                    log.warning("cannot delete queue %s: %s", name, exc.message)
