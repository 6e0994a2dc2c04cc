"""An abandoned long poll must not swallow a message. A client parks a 20 s receive and dies
(its process is SIGKILLed, so the node sees the connection close); a message sent afterwards must
go to the next receiver at once, not hide for a visibility timeout inside the dead poll.
Method: a real node, the parked poll in a child process (binary protocol) or an HTTP request that
the client abandons (SQS API); the waiter count from `status` says when the poll is parked."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import boto3
from botocore.config import Config

import qnode

PARK = """
import asyncio, sys, qnode
async def main():
    async with qnode.Client([sys.argv[1]]) as c:
        q = await c.get_queue("abandon")
        print("parking", flush=True)
        await q.receive(wait=20)
asyncio.run(main())
"""


async def waiters(address: str) -> int:
    async with qnode.Client([address]) as c:
        return (await c.status()).get("waiters", 0)


async def wait_waiters(address: str, count: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while await waiters(address) != count:
        assert time.monotonic() < deadline, f"waiters never reached {count}"
        await asyncio.sleep(0.02)


async def test_killed_binary_long_poll_does_not_take_the_next_message(node):
    async with qnode.Client([node.binary]) as c:
        q = await c.create_queue("abandon", visibility_timeout=60)
    child = subprocess.Popen([sys.executable, "-c", PARK, node.binary], stdout=subprocess.PIPE)
    try:
        await wait_waiters(node.binary, 1)
    finally:
        child.kill()
        child.wait(10)
    await wait_waiters(node.binary, 0)
    async with qnode.Client([node.binary]) as c:
        q = await c.get_queue("abandon")
        await q.send(b"after")
        msgs = await q.receive(wait=2)
        assert [m.body for m in msgs] == [b"after"]


async def test_abandoned_http_long_poll_does_not_take_the_next_message(http_node):
    url = f"http://{http_node.http_address}"
    make = lambda timeout: boto3.client(
        "sqs", endpoint_url=url, region_name="us-east-1", aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(read_timeout=timeout, retries={"max_attempts": 0}))
    sqs = make(30)
    queue_url = sqs.create_queue(QueueName="abandon-http",
                                 Attributes={"VisibilityTimeout": "60"})["QueueUrl"]

    def abandoned_poll() -> None:
        try:
            make(0.5).receive_message(QueueUrl=queue_url, WaitTimeSeconds=20)
        except Exception as exc:   # the client gives up after 0.5 s by design
            assert "timeout" in type(exc).__name__.lower() or "Timeout" in str(exc), exc

    await asyncio.to_thread(abandoned_poll)
    await wait_waiters(http_node.binary, 0)
    sqs.send_message(QueueUrl=queue_url, MessageBody="after")
    got = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=2).get("Messages", [])
    assert [m["Body"] for m in got] == ["after"]
