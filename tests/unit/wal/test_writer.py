"""Wal, the asyncio shell: group commit, waiters, bounds, failures, checkpoint and truncate.

Goal: appends get LSNs at once and become durable through group commit (one write and one
fdatasync per batch, on the WAL thread); every bound gives its typed error; an I/O failure
fails every waiter instead of hanging it. Method: real files (tmp_path, real fdatasync) for the
happy paths, MemFs for disk-full and injected EIO; waits are awaits with deadlines, never sleeps.
"""

import asyncio
import threading

import pytest

from qnode import limits
from qnode.protocol.errors import DiskFull, ErrorCode, InvalidParameter, ShuttingDown
from qnode.wal.errors import CheckpointNotWritten, WalBackpressure, WalFailed
from qnode.wal.fs import MemFs
from qnode.wal.writer import Wal, WalConfig

CONFIG = WalConfig(cluster_id=7, node_id=3)


def test_config_defaults_come_from_limits():
    c = WalConfig()
    assert (c.segment_size_max, c.batch_size_max, c.pending_size_max, c.disk_reserve_size) == (
        limits.wal_segment_size_max, limits.wal_batch_size_max, limits.wal_pending_size_max,
        limits.wal_disk_reserve_size)
    assert c.fsync is True
    assert c.validate() == []
    assert WalConfig(batch_size_max=1024).validate()


async def test_append_sync_close_reopen_replay(tmp_path):
    wal = await Wal.open(tmp_path, CONFIG)
    assert (wal.last_lsn, wal.durable_lsn, wal.checkpoint_lsn, wal.checkpoint_payload) == (0, 0, 0, None)
    assert list(wal.replay()) == []
    lsn1 = wal.append(16, b"one")
    lsn2 = wal.append(130, b"two")
    assert (lsn1, lsn2) == (1, 2)
    assert wal.durable_lsn == 0          # queued, not yet durable
    await wal.sync(lsn2)
    assert wal.durable_lsn >= 2
    await wal.sync(1)                    # cheap when already durable
    await wal.close()
    wal = await Wal.open(tmp_path, CONFIG)
    assert [(r.lsn, r.kind, r.body) for r in wal.replay()] == [(1, 16, b"one"), (2, 130, b"two")]
    assert wal.append(16, b"three") == 3
    await wal.close()


async def test_concurrent_appenders_share_fsyncs(tmp_path):
    wal = await Wal.open(tmp_path, CONFIG)
    durable_seen: list[int] = []
    wal.on_durable(durable_seen.append)

    async def appender(i: int) -> None:
        for j in range(20):
            lsn = wal.append(16, f"{i}-{j}".encode())
            await wal.sync(lsn)
            assert wal.durable_lsn >= lsn

    async with asyncio.timeout(60):
        async with asyncio.TaskGroup() as tg:
            for i in range(50):
                tg.create_task(appender(i))
    stats = wal.stats()
    assert stats["records"] == 1000
    assert stats["fsyncs"] == stats["batches"]
    assert stats["fsyncs"] < 200            # group commit: far fewer fsyncs than records
    assert stats["batch_records_avg"] > 5
    assert durable_seen == sorted(durable_seen)
    assert durable_seen[-1] == 1000
    await wal.close()


async def test_a_cancelled_waiter_does_not_disturb_the_others(tmp_path):
    wal = await Wal.open(tmp_path, CONFIG)
    gate = threading.Event()
    blocker = wal._thread.call(gate.wait, 30)   # hold the WAL thread: no fsync can finish
    lsn = wal.append(16, b"x")
    both_waiting = asyncio.Event()
    entered = []

    async def waiter() -> None:
        entered.append(1)
        if len(entered) == 2:
            both_waiting.set()
        await wal.sync(lsn)      # registers its future before yielding

    doomed = asyncio.ensure_future(waiter())
    survivor = asyncio.ensure_future(waiter())
    await both_waiting.wait()
    doomed.cancel()
    gate.set()
    async with asyncio.timeout(30):
        await survivor
    assert doomed.cancelled()
    assert blocker.result() is True
    await wal.close()


async def test_append_many_is_all_or_nothing_and_one_batch(tmp_path):
    wal = await Wal.open(tmp_path, CONFIG)
    with pytest.raises(InvalidParameter):
        wal.append_many([(16, b"a"), (3, b"reserved kind"), (16, b"c")])
    assert wal.last_lsn == 0
    with pytest.raises(InvalidParameter):
        wal.append_many([])
    last = wal.append_many([(16, b"a"), (17, b"b"), (18, b"c")])
    assert last == 3
    await wal.sync(last)
    assert wal.stats()["batches"] == 1
    await wal.close()


async def test_bad_records_are_invalid_parameter(tmp_path):
    wal = await Wal.open(tmp_path, CONFIG)
    for kind, body in ((0, b"x"), (15, b"x"), (256, b"x"), (16, "str"),
                       (16, b"x" * (limits.wal_record_size_max + 1))):
        with pytest.raises(InvalidParameter):
            wal.append(kind, body)
    with pytest.raises(InvalidParameter):
        await wal.sync(5)
    assert wal.last_lsn == 0
    await wal.close()


async def test_pending_bound_gives_backpressure(tmp_path):
    config = WalConfig(pending_size_max=limits.wal_batch_size_max)
    wal = await Wal.open(tmp_path, config)
    body = b"x" * (1024 * 1024)
    accepted = 0
    with pytest.raises(WalBackpressure) as info:
        for _ in range(20):        # no await: nothing can drain meanwhile
            wal.append(16, body)
            accepted += 1
    assert info.value.code is ErrorCode.BUSY
    assert wal.stats()["backpressure_rejections"] == 1
    assert accepted == limits.wal_batch_size_max // (len(body) + 21)
    await wal.sync(wal.last_lsn)
    wal.append(16, body)           # drained: accepted again
    await wal.close()


async def test_disk_reserve_gives_disk_full_before_the_disk_is_full():
    reserve = 64 * 1024
    fs = MemFs(capacity_size=reserve + 40 * 1024)
    wal = await Wal.open("/wal", WalConfig(disk_reserve_size=reserve), fs=fs)
    written = 0
    with pytest.raises(DiskFull):
        for _ in range(100):
            lsn = wal.append(16, b"y" * 1024)
            await wal.sync(lsn)
            written += 1
    assert 30 <= written < 40
    assert fs.free_bytes("/wal") >= reserve - 2048   # the device itself never filled up
    assert wal.durable_lsn == written                # everything accepted is durable
    assert wal.stats()["disk_full_rejections"] == 1
    await wal.close()


async def test_fsync_failure_fails_every_waiter_and_later_calls():
    fs = MemFs()
    wal = await Wal.open("/wal", CONFIG, fs=fs)
    await wal.sync(wal.append(16, b"ok"))
    fs.fsync_error = OSError(5, "Input/output error")
    lsns = [wal.append(16, b"lost") for _ in range(5)]
    waiters = [asyncio.ensure_future(wal.sync(lsn)) for lsn in lsns]
    async with asyncio.timeout(30):
        results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, WalFailed) for r in results)
    with pytest.raises(WalFailed):
        wal.append(16, b"after")
    with pytest.raises(WalFailed):
        await wal.sync(lsns[-1])
    assert wal.durable_lsn == 1
    with pytest.raises(WalFailed):
        await wal.truncate_after(0)
    await wal.close()


async def test_close_flushes_pending_and_refuses_appends(tmp_path):
    wal = await Wal.open(tmp_path, CONFIG)
    for i in range(10):
        wal.append(16, bytes([i]))
    await wal.close()
    with pytest.raises(ShuttingDown):
        wal.append(16, b"late")
    wal = await Wal.open(tmp_path, CONFIG)
    assert [r.body for r in wal.replay()] == [bytes([i]) for i in range(10)]
    await wal.close()


async def test_checkpoint_and_truncate_through_the_shell(tmp_path):
    config = WalConfig(segment_size_max=limits.wal_batch_size_max)
    wal = await Wal.open(tmp_path, config)
    body = b"z" * (512 * 1024)
    for _ in range(40):                     # ~20 MiB: several 8 MiB segments
        await wal.sync(wal.append(16, body))
    await wal.checkpoint(30, [b"state-", b"at-30"])
    assert wal.checkpoint_lsn == 30
    assert wal.checkpoint_payload == b"state-at-30"
    gate = threading.Event()
    wal._thread.call(gate.wait, 30)          # hold the WAL thread: truncation must wait
    truncation = asyncio.ensure_future(wal.truncate_after(35))
    async with asyncio.timeout(30):
        while not wal._truncating:                # polled with a deadline, no sleeping
            await asyncio.wait([truncation], timeout=0)
    with pytest.raises(WalBackpressure):
        wal.append(16, b"during truncation")
    gate.set()
    await truncation
    assert (wal.last_lsn, wal.durable_lsn) == (35, 35)
    assert wal.append(16, b"36") == 36
    await wal.close()
    wal = await Wal.open(tmp_path, config)
    assert wal.checkpoint_payload == b"state-at-30"
    assert [r.lsn for r in wal.replay()] == [31, 32, 33, 34, 35, 36]
    assert [r.body for r in wal.replay()][-1] == b"36"
    await wal.close()


async def test_fsync_off_still_writes(tmp_path):
    wal = await Wal.open(tmp_path, WalConfig(fsync=False))
    await wal.sync(wal.append(16, b"fast"))
    await wal.close()
    wal = await Wal.open(tmp_path, WalConfig(fsync=False))
    assert [r.body for r in wal.replay()] == [b"fast"]
    await wal.close()


async def test_open_refuses_a_corrupt_log(tmp_path):
    from qnode.wal.errors import WalCorruption
    wal = await Wal.open(tmp_path, CONFIG)
    for i in range(5):
        await wal.sync(wal.append(16, b"record-%d" % i))
    await wal.close()
    (segment,) = [p for p in tmp_path.iterdir() if p.suffix == ".wal"]
    data = bytearray(segment.read_bytes())
    data[100] ^= 0xFF                    # inside the first (acknowledged) batch
    segment.write_bytes(bytes(data))
    with pytest.raises(WalCorruption) as info:
        await Wal.open(tmp_path, CONFIG)
    assert info.value.path == str(segment)
    assert info.value.code is ErrorCode.WAL_CORRUPTION


async def test_a_raising_on_durable_callback_does_not_stall_the_wal(tmp_path):
    wal = await Wal.open(tmp_path, CONFIG)
    seen: list[int] = []

    def broken(durable_lsn: int) -> None:
        raise RuntimeError("engine bug")

    wal.on_durable(broken)
    wal.on_durable(seen.append)
    async with asyncio.timeout(30):
        await wal.sync(wal.append(16, b"a"))
        await wal.sync(wal.append(16, b"b"))
    assert seen[-1] == 2
    await wal.close()


async def test_a_backlog_larger_than_batch_size_max_is_split_at_whole_groups(tmp_path):
    wal = await Wal.open(tmp_path, CONFIG)
    mib = 1024 * 1024
    wal.append(16, b"a" * mib)
    group_last = wal.append_many([(17, b"g" * (mib // 2)) for _ in range(6)])   # 3 MiB group
    for _ in range(12):
        wal.append(18, b"c" * mib)
    async with asyncio.timeout(60):
        await wal.sync(wal.last_lsn)
    stats = wal.stats()
    assert stats["batches"] >= 2                  # ~16 MiB cannot go in one 8 MiB batch
    assert stats["records"] == 19
    await wal.close()
    # Each batch is at most batch_size_max and the group was never split across batches.
    from qnode.wal.fs import RealFs
    from qnode.wal.segment import scan_segment
    (segment,) = [p for p in tmp_path.iterdir() if p.suffix == ".wal"]
    scan = scan_segment(RealFs().read(str(segment)), 1, cluster_id=7, node_id=3, collect=True)
    starts = [offset for offset, _ in scan.batch_starts] + [scan.valid_end]
    assert all(b - a <= CONFIG.batch_size_max for a, b in zip(starts, starts[1:]))
    first_lsns = [first for _, first in scan.batch_starts]
    assert not any(2 < first <= group_last for first in first_lsns)
    assert [r.kind for r in scan.records] == [16] + [17] * 6 + [18] * 12


async def test_a_group_larger_than_batch_size_max_is_one_batch_of_its_own(tmp_path):
    wal = await Wal.open(tmp_path, CONFIG)
    mib = 1024 * 1024
    wal.append(16, b"before")
    last = wal.append_many([(17, b"g" * mib) for _ in range(10)])      # 10 MiB > 8 MiB
    wal.append(18, b"after")
    async with asyncio.timeout(60):
        await wal.sync(wal.last_lsn)
    assert last == 11
    assert wal.stats()["batches"] == 3
    await wal.close()
    wal = await Wal.open(tmp_path, CONFIG)
    assert [r.kind for r in wal.replay()] == [16] + [17] * 10 + [18]
    await wal.close()


async def test_going_idle_declares_the_last_acknowledged_batch(tmp_path):
    from qnode.wal.errors import WalCorruption
    wal = await Wal.open(tmp_path, CONFIG)
    await wal.sync(wal.append(16, b"first"))
    await wal.sync(wal.append(16, b"last acknowledged"))
    await wal.close()
    (segment,) = [p for p in tmp_path.iterdir() if p.suffix == ".wal"]
    data = bytearray(segment.read_bytes())
    at = data.index(b"last acknowledged")
    data[at] ^= 0xFF
    segment.write_bytes(bytes(data))
    # Rot in the newest acknowledged record is corruption, not a torn tail.
    with pytest.raises(WalCorruption):
        await Wal.open(tmp_path, CONFIG)


async def _wait_for_condition(predicate, timeout_s: float = 30.0) -> None:
    """Poll `predicate` until true, failing after the deadline."""
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.001)


async def test_an_idle_wal_writes_a_marker_without_being_closed(tmp_path):
    import shutil
    from qnode.wal.errors import WalCorruption
    wal = await Wal.open(tmp_path / "live", CONFIG)
    lsn = wal.append(16, b"newest acknowledged")
    await wal.sync(lsn)
    await _wait_for_condition(lambda: wal._log._declared_lsn == lsn)
    assert wal.stats()["fsyncs"] == 1          # the marker costs no fsync
    # What a power loss after writeback would leave: copy the files of the open WAL.
    shutil.copytree(tmp_path / "live", tmp_path / "copy")
    await wal.close()
    (segment,) = [p for p in (tmp_path / "copy").iterdir() if p.suffix == ".wal"]
    data = bytearray(segment.read_bytes())
    data[data.index(b"newest acknowledged")] ^= 0xFF
    segment.write_bytes(bytes(data))
    with pytest.raises(WalCorruption):
        await Wal.open(tmp_path / "copy", CONFIG)


async def test_batches_queued_behind_a_busy_thread_share_one_fsync(tmp_path):
    """The pipelined thread: batches handed over while it is busy are coalesced into one
    write + fdatasync when it gets to them, and every waiter is woken by that one fsync."""
    wal = await Wal.open(tmp_path, CONFIG)
    await wal.sync(wal.append(16, b"warm"))
    fsyncs_before = wal.stats()["fsyncs"]
    gate = threading.Event()
    held = wal._thread.call(gate.wait, 30)        # the thread is busy: batches queue behind
    lsns = []
    for i in range(3):                             # three loop iterations: three batches
        lsns.append(wal.append(16, b"b%d" % i))
        await asyncio.sleep(0)                     # a loop turn (no waiting on time)
    assert wal._inflight == 3
    gate.set()
    async with asyncio.timeout(30):
        await asyncio.gather(*(wal.sync(lsn) for lsn in lsns))
    assert held.result() is True
    assert wal.stats()["fsyncs"] == fsyncs_before + 1
    assert wal._inflight == 0
    await wal.close()
    wal = await Wal.open(tmp_path, CONFIG)
    assert [r.body for r in wal.replay()] == [b"warm", b"b0", b"b1", b"b2"]
    await wal.close()


async def test_thread_jobs_run_in_submission_order_with_batches(tmp_path):
    wal = await Wal.open(tmp_path, CONFIG)
    gate = threading.Event()
    wal._thread.call(gate.wait, 30)
    first = wal.append(16, b"first")
    await asyncio.sleep(0)                         # handed to the thread
    seen = wal._thread.call(lambda: wal._log.last_lsn)    # queued after that batch
    second = wal.append(16, b"second")
    await asyncio.sleep(0)
    gate.set()
    async with asyncio.timeout(30):
        assert await asyncio.wrap_future(seen) == first
        await wal.sync(second)
    await wal.close()


async def test_batches_queued_behind_a_failed_one_fail_too():
    fs = MemFs()
    wal = await Wal.open("/wal", CONFIG, fs=fs)
    await wal.sync(wal.append(16, b"ok"))
    gate = threading.Event()
    wal._thread.call(gate.wait, 30)
    fs.fsync_error = OSError(5, "Input/output error")
    doomed = []
    for i in range(2):                             # two batches behind the gate
        doomed.append(asyncio.ensure_future(wal.sync(wal.append(16, b"lost%d" % i))))
        await asyncio.sleep(0)
    gate.set()
    async with asyncio.timeout(30):
        results = await asyncio.gather(*doomed, return_exceptions=True)
    assert all(isinstance(r, WalFailed) for r in results), results
    assert wal.durable_lsn == 1
    with pytest.raises(WalFailed):
        wal.append(16, b"after")
    await wal.close()


async def test_the_thread_keeps_zeros_preallocated_ahead_of_the_tail(tmp_path):
    wal = await Wal.open(tmp_path, WalConfig(cluster_id=7, node_id=3, preallocate_size=64 * 1024))
    (segment,) = [p for p in tmp_path.iterdir() if p.suffix == ".wal"]
    await wal.sync(wal.append(16, b"one"))
    # Between batches (after the acknowledgement) the thread writes and fsyncs the zeros.
    await _wait_for_condition(lambda: segment.stat().st_size >= 64 * 1024)
    size = segment.stat().st_size
    for i in range(20):
        await wal.sync(wal.append(16, b"x" * 100))
    assert segment.stat().st_size == size        # the batches overwrote zeros in place
    await wal.close()
    wal = await Wal.open(tmp_path, CONFIG)
    assert [r.body for r in wal.replay()] == [b"one"] + [b"x" * 100] * 20
    await wal.close()


async def test_an_io_error_while_preallocating_fails_the_wal():
    class FailingZeros(MemFs):
        def write_zeros(self, handle, offset, size):
            raise OSError(5, "Input/output error")

    wal = await Wal.open("/wal", WalConfig(cluster_id=7, node_id=3, preallocate_size=64 * 1024),
                         fs=FailingZeros())
    await wal.sync(wal.append(16, b"acknowledged"))      # its fsync succeeded
    await _wait_for_condition(lambda: wal._failed is not None)
    with pytest.raises(WalFailed):
        wal.append(16, b"after")
    await wal.close()


async def test_a_checkpoint_refused_for_space_leaves_the_wal_serving():
    fs = MemFs()
    wal = await Wal.open("/wal", WalConfig(disk_reserve_size=0, preallocate_size=0), fs=fs)
    await wal.sync(wal.append(16, b"before"))
    fs.capacity_size = fs._used_size() + 100
    with pytest.raises(CheckpointNotWritten):
        await wal.checkpoint(1, [b"s" * 4096])
    assert wal.checkpoint_lsn == 0
    fs.capacity_size = 1 << 40
    await wal.sync(wal.append(16, b"after"))     # not failed: appends go on
    await wal.close()
    wal = await Wal.open("/wal", WalConfig(disk_reserve_size=0, preallocate_size=0), fs=fs)
    assert [r.body for r in wal.replay()] == [b"before", b"after"]
    await wal.close()


async def test_has_room_for_counts_the_disk_reserve():
    fs = MemFs(capacity_size=10 * 1024 * 1024)
    wal = await Wal.open("/wal", WalConfig(disk_reserve_size=4 * 1024 * 1024), fs=fs)
    free = fs.free_bytes("/wal")
    assert wal.has_room_for(free - 4 * 1024 * 1024)
    assert not wal.has_room_for(free - 4 * 1024 * 1024 + 1)
    await wal.close()


async def test_deferred_records_ride_in_the_next_batch_started_by_another_append(tmp_path, monkeypatch):
    from qnode.wal import writer
    monkeypatch.setattr(writer, "DEFER_MAX_S", 60.0)     # only the next append may start it
    wal = await Wal.open(tmp_path, CONFIG)
    deferred = wal.append_many([(16, b"receive count")], defer=True)
    await asyncio.sleep(0)                       # a loop turn: an ordinary append would kick here
    assert wal.stats()["batches"] == 0 and wal.durable_lsn == 0
    urgent = wal.append(16, b"delete")
    await wal.sync(urgent)
    s = wal.stats()
    assert (deferred, urgent) == (1, 2) and wal.durable_lsn == 2
    assert (s["batches"], s["fsyncs"], s["records"]) == (1, 1, 2)    # one batch carried both
    await wal.close()
    wal = await Wal.open(tmp_path, CONFIG)
    assert [r.body for r in wal.replay()] == [b"receive count", b"delete"]
    await wal.close()


async def test_sync_on_a_deferred_record_starts_its_batch(tmp_path, monkeypatch):
    from qnode.wal import writer
    monkeypatch.setattr(writer, "DEFER_MAX_S", 60.0)     # so that it is sync, not the timer
    wal = await Wal.open(tmp_path, CONFIG)
    lsn = wal.append_many([(16, b"must be durable")], defer=True)
    await asyncio.wait_for(wal.sync(lsn), 5)     # no other append: sync itself starts it
    assert wal.durable_lsn == lsn and wal.stats()["fsyncs"] == 1
    await wal.close()


async def test_deferred_records_alone_are_written_within_defer_max(tmp_path):
    from qnode.wal.writer import DEFER_MAX_S
    wal = await Wal.open(tmp_path, CONFIG)
    durable = asyncio.Event()
    wal.on_durable(lambda lsn: durable.set())
    loop = asyncio.get_running_loop()
    started = loop.time()
    lsn = wal.append_many([(16, b"nobody waits")], defer=True)
    await asyncio.wait_for(durable.wait(), 5)    # nobody called sync: the timer started it
    assert wal.durable_lsn == lsn
    assert loop.time() - started >= DEFER_MAX_S * 0.9
    await wal.close()
