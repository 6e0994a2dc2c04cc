"""SnapshotChild: checkpoint snapshots encoded in a forked child, and BackendService using it.

Goal: the child writes the state as it was at the fork, whatever the parent does after; a failed,
overrunning or cancelled child is reported and never left running; signals meant for the node are
not handled by the child's copy of the node's handlers; a checkpoint taken while the service goes
on serving restores exactly, and a failed fork falls back to encoding on the loop. Method: real
forks of the test process; waits are awaited pidfds bounded by `asyncio.timeout`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qnode.backend import snapshot_child
from qnode.backend.service import SNAPSHOT_FILE_NAME, BackendConfig, BackendService
from qnode.backend.snapshot_child import SnapshotChild, SnapshotFailed
from qnode.frontend.api import SendEntry
from qnode.wal.errors import CheckpointNotWritten
from qnode.wal.writer import WalConfig
from tests.unit.frontend.helpers import wait_for

CONFIG = BackendConfig(wal=WalConfig(disk_reserve_size=0))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_the_child_writes_the_state_as_it_was_at_the_fork(tmp_path: Path) -> None:
    state = [b"before"]
    child = SnapshotChild.fork(lambda: [b"|".join(state)] * 300_000, tmp_path / "snap")
    state.append(b"after")                     # the parent moves on at once
    async with asyncio.timeout(30):
        await child.wait()
    assert (tmp_path / "snap").read_bytes() == b"before" * 300_000
    chunks = list(child.chunks())
    assert len(chunks) == 2 and b"".join(chunks) == b"before" * 300_000
    assert _gone(child.pid)


async def test_a_child_that_raises_is_snapshot_failed(tmp_path: Path) -> None:
    child = SnapshotChild.fork(lambda: 1 / 0, tmp_path / "snap")
    with pytest.raises(SnapshotFailed, match="exited with 1"):
        async with asyncio.timeout(30):
            await child.wait()
    assert _gone(child.pid)


async def test_cancelling_the_wait_kills_and_reaps_the_child(tmp_path: Path) -> None:
    child = SnapshotChild.fork(lambda: time.sleep(60) or [b""], tmp_path / "snap")
    waiting = asyncio.ensure_future(child.wait())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert _gone(child.pid)


async def test_an_overrunning_child_is_killed(tmp_path: Path) -> None:
    child = SnapshotChild.fork(lambda: time.sleep(60) or [b""], tmp_path / "snap")
    with pytest.raises(SnapshotFailed, match="ran over"):
        await child.wait(time_max_s=0.2)
    assert _gone(child.pid)


async def test_sigterm_kills_the_child_instead_of_running_the_nodes_handler(tmp_path: Path) -> None:
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        child = SnapshotChild.fork(lambda: time.sleep(60) or [b""], tmp_path / "snap")
        os.kill(child.pid, signal.SIGTERM)
        with pytest.raises(SnapshotFailed, match=f"exited with -{int(signal.SIGTERM)}"):
            await child.wait(time_max_s=20)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert received == []          # the parent's handler saw nothing either


async def test_the_child_holds_none_of_the_nodes_descriptors(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    child = SnapshotChild.fork(lambda: time.sleep(60) or [b""], tmp_path / "snap")
    waiting = asyncio.ensure_future(child.wait())
    await asyncio.sleep(0)                   # let the wait start: a task cancelled before it runs kills nothing
    try:
        def held() -> set[str]:
            fds, targets = f"/proc/{child.pid}/fd", set()
            for fd in os.listdir(fds):
                try:
                    if int(fd) > 2:
                        targets.add(os.readlink(f"{fds}/{fd}"))
                except FileNotFoundError:
                    pass                     # closed by the child while we looked
            return targets
        async with asyncio.timeout(20):      # the child closes them as its first step
            while held() != {str(tmp_path / "snap")}:
                await asyncio.sleep(0.01)
        listener.close()
        # Had the child kept its copy of the listening socket, the port would still be taken.
        again = socket.create_server(("127.0.0.1", port))
        again.close()
    finally:
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
    assert _gone(child.pid)


_ORPHANING = """
import os, signal, sys, time
from pathlib import Path
from qnode.backend.snapshot_child import SnapshotChild
child = SnapshotChild.fork(lambda: time.sleep(60) or [b""], Path(sys.argv[1]))
print(child.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


async def test_the_child_dies_with_the_node(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _ORPHANING, str(tmp_path / "snap")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    pid = int(proc.stdout.split()[0])

    def dead() -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
        except FileNotFoundError:
            return True
    async with asyncio.timeout(20):          # the kernel's SIGKILL: promptly, not after 60 s
        while not dead():
            await asyncio.sleep(0.01)


async def test_a_checkpoint_taken_while_the_service_serves_restores_exactly(tmp_path: Path) -> None:
    svc = await BackendService.open(tmp_path, CONFIG)
    await svc.create_queue("q")
    for i in range(20):
        await svc.send_messages("q", [SendEntry(b"m%d" % (10 * i + j), entry_id=str(j)) for j in range(10)])
    checkpoint = asyncio.ensure_future(svc.checkpoint())
    await asyncio.sleep(0)              # the task forks in its first step, then waits on the child
    assert svc._checkpointing
    got = await svc.receive_messages("q", max_count=10)
    await svc.delete_messages("q", [m.receipt for m in got])
    await svc.send_messages("q", [SendEntry(b"late")])
    async with asyncio.timeout(60):
        lsn = await checkpoint
    assert lsn < svc._wal.last_lsn     # the receive, delete and send came after the snapshot
    assert not (tmp_path / SNAPSHOT_FILE_NAME).exists()
    expected = {b"m%d" % i for i in range(200)} - {m.body for m in got} | {b"late"}
    await svc.close()
    svc = await BackendService.open(tmp_path, CONFIG)
    try:
        assert svc._wal.checkpoint_lsn == lsn
        bodies = set()
        for _ in range(30):
            bodies |= {m.body for m in await svc.receive_messages("q", max_count=10)}
        assert bodies == expected
    finally:
        await svc.close()


async def test_a_failed_fork_falls_back_to_encoding_on_the_loop(tmp_path: Path, monkeypatch) -> None:
    svc = await BackendService.open(tmp_path, CONFIG)
    await svc.create_queue("q")
    await svc.send_messages("q", [SendEntry(b"kept")])

    def no_fork() -> int:
        raise OSError(11, "Resource temporarily unavailable")
    monkeypatch.setattr(snapshot_child.os, "fork", no_fork)
    lsn = await svc.checkpoint()
    monkeypatch.undo()
    await svc.close()
    svc = await BackendService.open(tmp_path, CONFIG)
    try:
        assert svc._wal.checkpoint_lsn == lsn
        assert [m.body for m in await svc.receive_messages("q")] == [b"kept"]
    finally:
        await svc.close()


async def test_a_failed_snapshot_changes_nothing_and_the_service_goes_on(tmp_path: Path) -> None:
    svc = await BackendService.open(tmp_path, CONFIG)
    try:
        await svc.create_queue("q")
        await svc.send_messages("q", [SendEntry(b"x")])
        svc._log_bytes_since_checkpoint = 12345
        svc._engine.snapshot_chunks = lambda: 1 / 0     # raises in the child
        with pytest.raises(SnapshotFailed):
            await svc.checkpoint()
        assert svc._wal.checkpoint_lsn == 0
        assert svc._log_bytes_since_checkpoint == 12345    # still due
        assert not (tmp_path / SNAPSHOT_FILE_NAME).exists()
        await svc.send_messages("q", [SendEntry(b"y")])
        assert len(await svc.receive_messages("q", max_count=10)) == 2
    finally:
        await svc.close()


async def test_a_snapshot_file_left_by_a_crash_is_removed_at_open(tmp_path: Path) -> None:
    svc = await BackendService.open(tmp_path, CONFIG)
    await svc.close()
    (tmp_path / SNAPSHOT_FILE_NAME).write_bytes(b"half a snapshot")
    svc = await BackendService.open(tmp_path, CONFIG)
    try:
        assert not (tmp_path / SNAPSHOT_FILE_NAME).exists()
    finally:
        await svc.close()


async def test_a_child_that_cannot_be_watched_is_killed_and_reported(tmp_path: Path, monkeypatch) -> None:
    child = SnapshotChild.fork(lambda: time.sleep(60) or [b""], tmp_path / "snap")

    def no_pidfd(pid: int) -> int:
        raise OSError(24, "Too many open files")
    monkeypatch.setattr(snapshot_child.os, "pidfd_open", no_pidfd)
    with pytest.raises(SnapshotFailed, match="cannot watch"):
        await child.wait()
    assert _gone(child.pid)


class _ManualClock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def wall_ms(self) -> int:
        return self.ms


async def _passes(svc: BackendService, count: int) -> None:
    """Wait (bounded) until the maintenance task has run `count` more passes."""
    target = svc.maintenance_passes + count
    await wait_for(lambda: svc.maintenance_passes >= target, timeout=30)


async def test_failed_checkpoints_back_off_and_never_stop_maintenance(tmp_path: Path) -> None:
    clock = _ManualClock()
    config = BackendConfig(wal=WalConfig(disk_reserve_size=0), maintenance_interval_ms=1,
                           checkpoint_log_size_min=1 << 29)
    svc = await BackendService.open(tmp_path, config, clock=clock)
    try:
        await svc.create_queue("q")
        await svc.send_messages("q", [SendEntry(b"x")])
        assert svc.checkpoints == 0
        svc._log_bytes_since_checkpoint = 1 << 30          # due at every pass
        good_chunks = svc._engine.snapshot_chunks
        svc._engine.snapshot_chunks = lambda: 1 / 0         # every child fails
        await wait_for(lambda: svc.checkpoint_failures >= 1, timeout=30)
        await _passes(svc, 20)
        assert svc.checkpoint_failures == 1                 # no fork per pass: backing off
        for delay_ms, failures in ((1000, 2), (2000, 3), (4000, 4)):
            clock.ms += delay_ms - 1
            await _passes(svc, 10)
            assert svc.checkpoint_failures == failures - 1
            clock.ms += 1
            await wait_for(lambda: svc.checkpoint_failures >= failures, timeout=30)
        svc._engine.snapshot_chunks = good_chunks
        clock.ms += 8000
        await wait_for(lambda: svc.checkpoints >= 1, timeout=30)
        assert svc._wal.checkpoint_lsn > 0 and svc._checkpoint_retry_ms == 0
        assert svc.stats()["backend"]["checkpoint_failures"] == 4
    finally:
        await svc.close()


async def test_a_checkpoint_without_room_on_disk_is_refused_before_forking(tmp_path: Path,
                                                                           monkeypatch) -> None:
    svc = await BackendService.open(tmp_path, CONFIG)
    try:
        await svc.create_queue("q")
        await svc.send_messages("q", [SendEntry(b"x" * 1000) for _ in range(10)])
        svc._log_bytes_since_checkpoint = 12345
        asked: list[int] = []
        monkeypatch.setattr(svc._wal, "has_room_for", lambda size: asked.append(size) or False)
        monkeypatch.setattr(snapshot_child.os, "fork", lambda: pytest.fail("forked"))
        with pytest.raises(CheckpointNotWritten, match="free space"):
            await svc.checkpoint()
        assert asked and asked[0] >= 2 * svc._engine.stats().bytes
        assert svc._wal.checkpoint_lsn == 0
        assert svc._log_bytes_since_checkpoint == 12345     # still due, counted once
        monkeypatch.undo()                                  # room again: the service goes on
        assert len(await svc.receive_messages("q", max_count=10)) == 10
    finally:
        await svc.close()
