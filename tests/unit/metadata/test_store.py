"""MetadataStore + RaftDriver over the in-process loopback transport: a real three-node cluster on
one event loop with in-memory WALs. Method: start the drivers in a TaskGroup, wait for a leader by
polling with a deadline, then propose, read and watch through the public API; assert follower
redirection (NotLeader with a hint) and that a write is visible to linearizable reads.
"""

from __future__ import annotations

import asyncio
import errno
import random

import pytest

from qnode.metadata import commands as c
from qnode.metadata.raft.core import RaftConfig, Role
from qnode.metadata.raft.driver import LoopbackNetwork
from qnode.metadata.raft.memlog import MemRecordLog
from qnode.metadata.store import MetadataStore
from qnode.protocol.errors import NotLeader, QueueAlreadyExists, RequestTimeout, Unavailable
from qnode.wal.checkpoint import CHECKPOINT_TEMP_NAME
from qnode.wal.fs import MemFs
from qnode.wal.log import SegmentedLog

IDS = ["n1", "n2", "n3"]


async def wait_for(pred, timeout_s: float = 10.0):
    async with asyncio.timeout(timeout_s):
        while not (result := pred()):
            await asyncio.sleep(0.005)   # polling a condition with a deadline, not a settle-sleep
        return result


async def test_three_node_store_proposes_reads_and_redirects():
    net = LoopbackNetwork()
    cfg = RaftConfig(election_ticks=5, heartbeat_ticks=1)
    stores = {}
    for i in IDS:
        store = MetadataStore.build(i, IDS, MemRecordLog(), net.transport(i), config=cfg, seed=hash(i) % 100,
                                    tick_interval_ms=10, compact_every_count=5)
        net.register(i, store.driver)
        stores[i] = store
    seen = []
    async with asyncio.TaskGroup() as tg:
        for s in stores.values():
            tg.create_task(s.driver.run())
        try:
            leader = await wait_for(lambda: next((s for s in stores.values()
                                                  if s.driver.core.role is Role.LEADER), None))
            leader.watch(lambda index, cmd, result: seen.append((cmd.kind if cmd else None, result.ok if result else None)))
            q = await leader.propose(c.create_queue("orders", {"VisibilityTimeout": "30"}))
            assert q.name == "orders"
            with pytest.raises(QueueAlreadyExists):
                await leader.propose(c.create_queue("orders", {"VisibilityTimeout": "60"}))
            for n in range(8):   # enough to trigger compaction (compact_every_count=5)
                await leader.propose(c.create_queue(f"q{n}"))
            follower = next(s for s in stores.values() if s is not leader)
            with pytest.raises(NotLeader) as info:
                await follower.propose(c.delete_queue("orders"))
            assert info.value.leader_hint == leader.node_id
            got = await leader.read(lambda st: st.get_queue("orders").attributes)
            assert got == {"VisibilityTimeout": "30"}
            await wait_for(lambda: all(s.state.get_queue("q7") is not None for s in stores.values()))
            assert leader.driver.core.log.snapshot_index > 0
            assert ("create_queue", True) in seen
            assert ("create_queue", False) in seen
        finally:
            for s in stores.values():
                s.driver.stop()


class _NoPeers:
    def send(self, to_node_id, msg):
        raise AssertionError(f"a single-node cluster sends nothing, got {msg!r}")


async def _wait_leader(store: MetadataStore) -> None:
    await wait_for(lambda: store.driver.core.role is Role.LEADER)


async def test_single_node_store_on_real_disk_survives_restart(tmp_path):
    cfg = RaftConfig(election_ticks=2, heartbeat_ticks=1)
    store = MetadataStore.open("n1", ["n1"], str(tmp_path), _NoPeers(), cluster_id=7, wal_node_id=1,
                               config=cfg, tick_interval_ms=5, compact_every_count=4)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(store.driver.run())
        await _wait_leader(store)
        for n in range(6):
            await store.propose(c.create_queue(f"q{n}", {"n": str(n)}))
        await store.propose(c.delete_queue("q0"))
        store.driver.stop()
    store.driver.storage.log.close()
    again = MetadataStore.open("n1", ["n1"], str(tmp_path), _NoPeers(), cluster_id=7, wal_node_id=1,
                               config=cfg, tick_interval_ms=5, compact_every_count=4)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(again.driver.run())
        await _wait_leader(again)
        names = await again.read(lambda st: st.list_queues())
        assert names == ["q1", "q2", "q3", "q4", "q5"]
        assert again.driver.core.log.snapshot_index >= 4      # restarted from a checkpoint
        assert again.driver.core.term >= 2
        again.driver.stop()


async def test_isolated_leader_is_replaced_and_its_reads_fail():
    net = LoopbackNetwork()
    cfg = RaftConfig(election_ticks=5, heartbeat_ticks=1)
    stores = {}
    for n, i in enumerate(IDS):
        store = MetadataStore.build(i, IDS, MemRecordLog(), net.transport(i), config=cfg, seed=n,
                                    tick_interval_ms=5)
        net.register(i, store.driver)
        stores[i] = store
    async with asyncio.TaskGroup() as tg:
        for s in stores.values():
            tg.create_task(s.driver.run())
        try:
            old = await wait_for(lambda: next((s for s in stores.values()
                                               if s.driver.core.role is Role.LEADER), None))
            await old.propose(c.create_queue("a"))
            net.isolate(old.node_id)
            new = await wait_for(lambda: next((s for s in stores.values() if s is not old
                                               and s.driver.core.role is Role.LEADER), None))
            await new.propose(c.create_queue("b"))
            # The old leader can no longer confirm leadership: its linearizable read fails or times out.
            with pytest.raises((NotLeader, RequestTimeout)):
                await old.read(lambda st: st.list_queues(), timeout_ms=500)
            net.heal()
            await wait_for(lambda: old.state.get_queue("b") is not None)
            assert await new.read(lambda st: st.list_queues()) == ["a", "b"]
        finally:
            for s in stores.values():
                s.driver.stop()


class _DiskFullForCheckpoints(MemFs):
    """MemFs whose checkpoint temp file hits ENOSPC while `full` is set; segments still grow
    (a disk with room for small appends but not for a whole checkpoint)."""

    full = True

    def append(self, handle, data: bytes) -> None:
        if self.full and handle.path.endswith(CHECKPOINT_TEMP_NAME):
            raise OSError(errno.ENOSPC, "No space left on device")
        super().append(handle, data)


async def test_a_compaction_the_disk_cannot_hold_is_retried_and_loses_nothing():
    fs = _DiskFullForCheckpoints()
    wal = SegmentedLog.open(fs, "/raft", cluster_id=7, node_id=1)
    cfg = RaftConfig(election_ticks=2, heartbeat_ticks=1)
    store = MetadataStore.build("n1", ["n1"], wal, _NoPeers(), config=cfg, tick_interval_ms=5,
                                compact_every_count=3)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(store.driver.run())
        await _wait_leader(store)
        for n in range(7):       # two compactions come due; neither checkpoint fits
            await store.propose(c.create_queue(f"q{n}"))
        assert store.driver.compaction_failures >= 2     # how many depends on Ready batching
        assert wal.checkpoint is None
        store.driver.stop()
    # A restart while the disk is still full: the log kept every entry.
    fs.crash(random.Random(1))
    store = MetadataStore.build("n1", ["n1"], SegmentedLog.open(fs, "/raft", cluster_id=7, node_id=1),
                                _NoPeers(), config=cfg, tick_interval_ms=5, compact_every_count=3)
    wal = store.driver.storage.log
    async with asyncio.TaskGroup() as tg:
        tg.create_task(store.driver.run())
        await _wait_leader(store)
        assert await store.read(lambda st: st.list_queues()) == sorted(f"q{n}" for n in range(7))
        fs.full = False          # room again: the next compaction writes its checkpoint
        for n in range(7, 11):
            await store.propose(c.create_queue(f"q{n}"))
        assert wal.checkpoint is not None
        assert await store.read(lambda st: len(st.list_queues())) == 11
        store.driver.stop()
    fs.crash(random.Random(2))
    again = MetadataStore.build("n1", ["n1"], SegmentedLog.open(fs, "/raft", cluster_id=7, node_id=1),
                                _NoPeers(), config=cfg, tick_interval_ms=5, compact_every_count=3)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(again.driver.run())
        await _wait_leader(again)
        assert await again.read(lambda st: st.list_queues()) == sorted(f"q{n}" for n in range(11))
        again.driver.stop()


def test_an_idle_driver_on_uvloop_wakes_about_once_per_tick():
    """uvloop's timers count whole milliseconds and may fire up to one early; the driver used
    to spin through the rest of the tick (~50 cycles per 50 ms tick, an idle node's default)
    until its clock crossed it."""
    import uvloop

    async def idle_run() -> tuple[int, int]:
        cfg = RaftConfig(election_ticks=2, heartbeat_ticks=1)
        store = MetadataStore.build("n1", ["n1"], MemRecordLog(), _NoPeers(), config=cfg,
                                    tick_interval_ms=50)
        driver = store.driver
        counts = {"ticks": 0, "cycles": 0}
        tick, next_inputs = driver.core.tick, driver._next_inputs

        def counted_tick() -> None:
            counts["ticks"] += 1
            tick()

        async def counted_next_inputs(timeout_s: float) -> list:
            counts["cycles"] += 1
            return await next_inputs(timeout_s)

        driver.core.tick = counted_tick
        driver._next_inputs = counted_next_inputs
        async with asyncio.TaskGroup() as tg:
            tg.create_task(driver.run())
            await _wait_leader(store)
            ticks0, cycles0 = counts["ticks"], counts["cycles"]
            await wait_for(lambda: counts["ticks"] >= ticks0 + 20)
            driver.stop()
        return counts["ticks"] - ticks0, counts["cycles"] - cycles0

    ticks, cycles = uvloop.run(idle_run())
    assert ticks >= 20
    assert cycles <= 2 * ticks + 2, (ticks, cycles)


async def test_after_a_storage_failure_every_call_fails_at_once():
    """Fail-stop: a Ready the log cannot persist ends the driver. Its proposal's outcome is
    unknown (with peers, its entry may have reached them). Calls made after that used to sit in
    the inbox until their own deadline; now they fail at once with the cause."""
    fs = MemFs()
    wal = SegmentedLog.open(fs, "/raft", cluster_id=7, node_id=1)
    store = MetadataStore.build("n1", ["n1"], wal, _NoPeers(),
                                config=RaftConfig(election_ticks=2, heartbeat_ticks=1),
                                tick_interval_ms=5)
    run = asyncio.get_running_loop().create_task(store.driver.run())
    await _wait_leader(store)
    await store.propose(c.create_queue("a"))
    fs.fsync_error = OSError(errno.EIO, "Input/output error")
    with pytest.raises(RequestTimeout, match="outcome unknown"):
        await store.propose(c.create_queue("b"))          # its Ready is the one that fails
    await asyncio.wait({run})
    assert isinstance(run.exception(), OSError)
    assert store.driver.failure is run.exception()
    async with asyncio.timeout(30):                      # far below the deadlines asked for
        with pytest.raises(Unavailable, match="Input/output error"):
            await store.propose(c.create_queue("c"), timeout_ms=600_000)
        with pytest.raises(Unavailable, match="Input/output error"):
            await store.read(lambda st: st.list_queues(), timeout_ms=600_000)
