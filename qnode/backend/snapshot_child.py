"""Checkpoint snapshots encoded in a forked child, so the event loop never stalls on them.

Encoding the engine state takes seconds of CPU with a million live messages (3.4–9 s measured,
docs/benchmarks.md); on the loop that would stop every request, long poll, SWIM probe and Raft
heartbeat of the node for as long. `os.fork()` gives a child a copy-on-write image of the whole
process at the instant of the call: the caller forks right after logging the engine's outbox, so
the image is the state at the WAL's last LSN, whatever the loop does afterwards. The child
encodes the snapshot piece by piece into a file (never holding all of it) and exits; the loop only watches a pidfd. The fork
itself copies page tables: ~6 ms for a 500 MB process here.

The child never returns into the parent's code: it runs `snapshot()`, writes the file and leaves
with `os._exit` (no atexit handlers, no buffered output, no event loop). It first closes every
inherited descriptor but stdio and asks the kernel to SIGKILL it when the node dies: a node
killed mid-checkpoint must not leave a child holding its port, its data-directory lock or its
sockets while a restarted node wants them. SIGINT and SIGTERM are
blocked across the fork so that a signal meant for the node is never handled by the child's
copy of the node's handlers, whose wake-up fd is shared with the parent's loop. Memory: the
child's writes to shared pages (reference counts, mostly) copy them; at worst the node's memory
doubles while a checkpoint is encoded, as with Redis's background saves; the child adds no
second copy of the payload on top.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from qnode import limits

_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)     # loaded here: the child should import nothing
READ_CHUNK_SIZE = 1 << 20


class SnapshotFailed(Exception):
    """The child did not write the snapshot (it raised, was killed, or overran its time)."""


class SnapshotChild:
    """A forked child writing the pieces `snapshot()` yields to `path`. Build with `SnapshotChild.fork`."""

    def __init__(self, pid: int, path: Path) -> None:
        self.pid = pid
        self.path = path

    @classmethod
    def fork(cls, snapshot: Callable[[], Iterable[bytes]], path: Path) -> "SnapshotChild":
        """Fork now: the child sees the process exactly as it is at this call.

        Raises OSError when the fork fails (EAGAIN, ENOMEM): the caller still holds the state
        at the same instant and may snapshot it in-process instead.
        """
        parent = os.getpid()
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                _run_child(snapshot, path, parent)      # never returns
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        return cls(pid, path)

    async def wait(self, time_max_s: float = limits.checkpoint_child_time_max_s) -> None:
        """Wait until the child exits; SnapshotFailed unless it wrote the file.

        Cancelled or past `time_max_s`, the child is killed and reaped: no child outlives
        this call.
        """
        loop = asyncio.get_running_loop()
        try:
            pidfd = os.pidfd_open(self.pid)
        except OSError as exc:          # EMFILE, ENOSYS: no way to watch it; do not leak it
            os.kill(self.pid, signal.SIGKILL)
            _reap(self.pid)
            raise SnapshotFailed(f"cannot watch the snapshot child: {exc!r}") from exc
        exited = loop.create_future()
        loop.add_reader(pidfd, lambda: exited.done() or exited.set_result(None))
        overran = False
        try:
            async with asyncio.timeout(time_max_s):
                await exited
        except TimeoutError:
            overran = True
            os.kill(self.pid, signal.SIGKILL)
        except BaseException:
            os.kill(self.pid, signal.SIGKILL)
            raise
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            code = _reap(self.pid)
        if overran:
            raise SnapshotFailed(f"the snapshot child ran over {time_max_s} s and was killed")
        if code != 0:
            raise SnapshotFailed(f"the snapshot child exited with {code}")

    def chunks(self) -> Iterator[bytes]:
        """The written snapshot in pieces of 1 MiB (for the WAL thread to stream). The file is
        opened now, so unlinking it before the thread reads it cannot fail the WAL."""
        f = open(self.path, "rb")

        def read() -> Iterator[bytes]:
            with f:
                while chunk := f.read(READ_CHUNK_SIZE):
                    yield chunk
        return read()


def _reap(pid: int) -> int | None:
    """Wait for `pid` and return its exit code (negative: killed by that signal)."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None        # reaped by someone else: its outcome is unknown
    return os.waitstatus_to_exitcode(status)


def _run_child(snapshot: Callable[[], Iterable[bytes]], path: Path, parent: int) -> None:
    code = 1
    try:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            return              # the node died before the line above: nobody wants the file
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        for signum in _SIGNALS:
            signal.signal(signum, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
        gc.disable()          # a collection would touch (and so copy) every shared page
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with open(fd, "wb", buffering=READ_CHUNK_SIZE) as out:
            for chunk in snapshot():      # pieces as they are encoded: never the whole payload
                out.write(chunk)
        code = 0
    except BaseException as exc:
        os.write(2, f"qnode: checkpoint snapshot child failed: {exc!r}\n".encode())
    finally:
        os._exit(code)
