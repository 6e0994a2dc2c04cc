"""The service end to end: a real `qnode start` process on ephemeral ports, driven through the
embedded client and the CLI. Covers the front door of issue #3: startup line, durable send/receive/
delete, restart after SIGKILL, graceful shutdown answering parked long polls, the data-dir lock,
protected mode, CLI output and exit codes. Waits are on events and deadlines, never sleeps."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import qnode
from qnode.protocol.errors import QueueAlreadyExists, QueueDoesNotExist
from tests.integration.nodeproc import NodeProcess


async def test_send_receive_delete_through_the_client(node):
    async with qnode.Client([node.binary]) as c:
        q = await c.create_queue("jobs", visibility_timeout=30)
        sent = await q.send(b"hello", attributes={"k": "v"})
        msgs = await q.receive(max_messages=10, wait=5)
        assert [m.body for m in msgs] == [b"hello"]
        assert msgs[0].id == sent.id
        assert msgs[0].system["ApproximateReceiveCount"] == "1"
        await msgs[0].delete()
        assert await q.receive(max_messages=10, wait=0) == []
        attrs = await q.attributes()
        assert attrs["ApproximateNumberOfMessages"] == "0"
        assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
        assert attrs["qnode:Durability"] == "fsync"


async def test_create_queue_is_idempotent_only_for_equal_attributes(node):
    async with qnode.Client([node.binary]) as c:
        await c.create_queue("same", visibility_timeout=10)
        await c.create_queue("same", visibility_timeout=10)
        with pytest.raises(QueueAlreadyExists):
            await c.create_queue("same", visibility_timeout=11)
        assert await c.list_queues(prefix="sa") == ["same"]
        await c.delete_queue("same")
        with pytest.raises(QueueDoesNotExist):
            await c.get_queue("same")


async def test_long_poll_wakes_on_send_and_does_not_block_the_connection(node):
    async with qnode.Client([node.binary]) as c:
        q = await c.create_queue("wake")
        t0 = time.monotonic()
        poll = asyncio.ensure_future(q.receive(wait=10))
        # The same client (one connection) keeps serving other requests during the poll.
        for _ in range(5):
            await c.list_queues()
        assert not poll.done()
        await q.send(b"x")
        msgs = await asyncio.wait_for(poll, 5)
        assert [m.body for m in msgs] == [b"x"]
        assert time.monotonic() - t0 < 5


def test_acknowledged_messages_survive_kill_9(tmp_path):
    node = NodeProcess(tmp_path / "data").start()
    try:
        async def produce():
            async with qnode.Client([node.binary]) as c:
                q = await c.create_queue("durable")
                ids = [(await q.send(f"m{i}".encode())).id for i in range(50)]
                ids += [r.id for r in await q.send_batch([f"b{i}".encode() for i in range(10)])]
                return ids
        ids = asyncio.run(produce())
        node.kill()
        node.start()

        async def consume():
            async with qnode.Client([node.binary]) as c:
                q = await c.get_queue("durable")
                got = []
                while True:
                    msgs = await q.receive(max_messages=10, wait=0)
                    if not msgs:
                        return got
                    got += [m.id for m in msgs]
        assert sorted(asyncio.run(consume())) == sorted(ids)
    finally:
        node.kill()


def test_sigterm_answers_parked_long_polls_and_exits_zero(tmp_path):
    node = NodeProcess(tmp_path / "data").start()
    try:
        async def run():
            async with qnode.Client([node.binary]) as c:
                q = await c.create_queue("parked")
                poll = asyncio.ensure_future(q.receive(wait=20))
                # The poll is parked once the node reports a waiter; then stop the node.
                deadline = time.monotonic() + 10
                while (await c.status()).get("waiters", 0) < 1:
                    assert time.monotonic() < deadline, "long poll never parked"
                    await asyncio.sleep(0.01)
                t0 = time.monotonic()
                node.proc.send_signal(signal.SIGTERM)
                msgs = await asyncio.wait_for(poll, 10)
                return msgs, time.monotonic() - t0
        msgs, elapsed = asyncio.run(run())
        assert msgs == []
        assert elapsed < 5
        assert node.proc.wait(30) == 0
    finally:
        node.kill()


def _close_stdio() -> None:
    for fd in (0, 1, 2):
        os.close(fd)


def test_a_node_started_with_stdio_closed_keeps_its_files_off_fds_0_to_2(tmp_path):
    """A supervisor may start the node with fds 0-2 closed. The node's own files must not take
    those numbers: whatever is written to stderr would then land in a WAL segment or the lock."""
    with socket.socket() as s:        # a free port: the node's startup line cannot be read here
        s.bind(("127.0.0.1", 0))
        address = "127.0.0.1:%d" % s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "qnode.cli", "start", "--listen", address, "--http", "off",
         "--data-dir", str(tmp_path / "data")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=_close_stdio)
    try:
        deadline = time.monotonic() + 30
        while True:                   # polling a condition with a deadline: the node is up
            assert proc.poll() is None, f"the node exited with {proc.returncode}"
            try:
                with qnode.SyncClient([address], attempts_max=1) as c:
                    c.list_queues()
                break
            except qnode.Unavailable:
                assert time.monotonic() < deadline, "the node never answered"
                time.sleep(0.05)
        with qnode.SyncClient([address]) as c:
            q = c.create_queue("stdio")
            q.send(b"x")
            assert [m.body for m in q.receive(wait=5)] == [b"x"]
        for fd in (0, 1, 2):
            assert os.readlink(f"/proc/{proc.pid}/fd/{fd}") == os.devnull
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_client_close_is_bounded_when_the_node_stopped_reading(tmp_path):
    """A node that stops reading (SIGSTOP: hung, or a silent partition) leaves the client's
    unsent bytes in its buffers, and a graceful close waits for them: close() used to wait for
    ever. It now aborts after CLOSE_TIMEOUT_S."""
    node = NodeProcess(tmp_path / "data").start()
    try:
        async def run() -> None:
            c = qnode.Client([node.binary])
            q = await c.create_queue("stopped")
            node.proc.send_signal(signal.SIGSTOP)
            try:
                body = b"x" * (1 << 20)
                for _ in range(40):          # more than the socket buffers take
                    with pytest.raises(qnode.QnodeError):
                        await q.send(body, timeout=0.2)
                async with asyncio.timeout(15):
                    await c.close()
            finally:
                node.proc.send_signal(signal.SIGCONT)
        asyncio.run(run())
    finally:
        node.kill()


def test_a_push_consumer_notices_a_node_that_stopped_answering(tmp_path):
    """`async for msg in q.consume()` used to wait for ever on a hung or cut-off node (no reset
    ever comes). An idle consumer now pings; a ping without an answer ends the subscription,
    and the resubscription fails with a typed error (or, with more addresses, fails over)."""
    node = NodeProcess(tmp_path / "data").start()
    try:
        async def run() -> None:
            async with qnode.Client([node.binary], push_idle_ping=0.5, request_timeout=1,
                                    attempts_max=2) as c:
                q = await c.create_queue("pushed")
                await q.send(b"first")
                stream = q.consume(prefetch=1)
                msg = await stream.__anext__()
                await msg.delete()
                node.proc.send_signal(signal.SIGSTOP)
                try:
                    async with asyncio.timeout(30):
                        with pytest.raises(qnode.QnodeError):
                            await stream.__anext__()
                finally:
                    node.proc.send_signal(signal.SIGCONT)
                await stream.aclose()
        asyncio.run(run())
    finally:
        node.kill()


def test_second_process_on_the_same_data_dir_refuses(node):
    result = subprocess.run(
        [sys.executable, "-m", "qnode.cli", "start", "--listen", "127.0.0.1:0", "--http", "off",
         "--data-dir", str(node.data_dir)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 4
    assert "in use by another qnode process" in result.stderr


def test_protected_mode_refuses_a_public_listener_without_the_flag(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "qnode.cli", "start", "--listen", "0.0.0.0:0", "--http", "off",
         "--data-dir", str(tmp_path / "d")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 4
    assert "--insecure-no-auth" in result.stderr
    node = NodeProcess(tmp_path / "d2", "--insecure-no-auth", listen="0.0.0.0:0").start()
    try:
        assert node.log[0].endswith(f"listening binary={node.binary} http=off")
        node.wait_for_log("WARNING.*without authentication")
    finally:
        node.stop()


def test_cli_round_trip_and_exit_codes(node):
    assert node.cli("queue", "create", "cliq", "--attr", "VisibilityTimeout=15").returncode == 0
    listed = node.cli("--json", "queue", "list")
    assert json.loads(listed.stdout) == ["cliq"]
    assert node.cli("send", "cliq", "from-arg").returncode == 0
    assert node.cli("send", "cliq", "-", input=b"from-stdin").returncode == 0
    got = node.cli("--json", "receive", "cliq", "--max", "10", "--wait", "2", "--delete")
    assert got.returncode == 0
    assert sorted(m["body"] for m in json.loads(got.stdout)) == ["from-arg", "from-stdin"]
    attrs = json.loads(node.cli("--json", "queue", "attributes", "cliq").stdout)
    assert attrs["VisibilityTimeout"] == "15"
    assert attrs["ApproximateNumberOfMessages"] == "0"
    missing = node.cli("send", "nope", "x")
    assert missing.returncode == 1
    assert b"QUEUE_DOES_NOT_EXIST" in missing.stderr
    assert b"Traceback" not in missing.stderr


def test_cli_reports_an_unreachable_node_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "qnode.cli", "--address", "127.0.0.1:1",
                             "queue", "list"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert "no qnode node answered at 127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr


def test_wal_verify_checks_a_node_data_dir_and_repair_refuses_while_it_runs(node):
    asyncio.run(_create(node.binary, "verified"))
    running = subprocess.run([sys.executable, "-m", "qnode.cli", "wal", "verify", "--repair",
                              str(node.data_dir)], capture_output=True, text=True, timeout=60)
    assert running.returncode == 2
    assert "running qnode process" in running.stderr
    node.stop()
    result = subprocess.run([sys.executable, "-m", "qnode.cli", "wal", "verify",
                             str(node.data_dir)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"== {node.data_dir}/queues" in result.stdout
    assert "result: ok" in result.stdout
    empty = node.data_dir.parent / "empty"
    empty.mkdir()
    nothing = subprocess.run([sys.executable, "-m", "qnode.cli", "wal", "verify", str(empty)],
                             capture_output=True, text=True, timeout=60)
    assert nothing.returncode == 2
    assert "no WAL segments" in nothing.stderr


async def _create(address: str, name: str) -> None:
    async with qnode.Client([address]) as c:
        await (await c.create_queue(name)).send(b"x")
