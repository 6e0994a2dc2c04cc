"""Other clients on the SQS API: the AWS CLI (a real `aws sqs ...` subprocess with
--endpoint-url and fake credentials) against the in-process listener over BackendService, and
one queue used from both boto3 (SQS HTTP) and the native `qnode.Client` (binary protocol)
against a real `qnode start` process with both listeners. Method: subprocesses are awaited
with asyncio so the in-process server keeps serving; boto3 runs in a thread."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

import qnode
from tests.integration.test_sqs_api import client, sqs_endpoint  # noqa: F401

AWS = shutil.which("aws") or str(Path(sys.executable).with_name("aws"))


async def aws(url: str, *args: str) -> dict:
    env = dict(os.environ, AWS_ACCESS_KEY_ID="fake", AWS_SECRET_ACCESS_KEY="fake",
               AWS_DEFAULT_REGION="us-east-1", AWS_CONFIG_FILE=os.devnull,
               AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_PAGER="")
    proc = await asyncio.create_subprocess_exec(
        AWS, "sqs", *args, "--endpoint-url", url, "--output", "json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return json.loads(out) if out.strip() else {}


async def test_aws_cli_drives_the_sqs_api(sqs_endpoint):
    url, api = sqs_endpoint
    # Each `aws` start costs ~2 s of CPU (botocore loads its models): four calls, checked
    # against the backend directly.
    q = (await aws(url, "create-queue", "--queue-name", "cli-q"))["QueueUrl"]
    assert q.endswith("/000000000000/cli-q")
    assert await api.list_queues() == ["cli-q"]
    sent = await aws(url, "send-message", "--queue-url", q, "--message-body", "from the cli",
                     "--message-attributes",
                     '{"k": {"DataType": "String", "StringValue": "v"}}')
    assert len(sent["MD5OfMessageBody"]) == 32
    got = await aws(url, "receive-message", "--queue-url", q, "--wait-time-seconds", "2",
                    "--message-attribute-names", "All", "--attribute-names", "All")
    [m] = got["Messages"]
    assert m["Body"] == "from the cli"
    assert m["MessageAttributes"]["k"]["StringValue"] == "v"
    assert m["MessageId"] == sent["MessageId"]
    assert m["Attributes"]["ApproximateReceiveCount"] == "1"
    await aws(url, "delete-message", "--queue-url", q, "--receipt-handle", m["ReceiptHandle"])
    attrs = await api.get_queue_attributes("cli-q", ["ApproximateNumberOfMessages",
                                                     "ApproximateNumberOfMessagesNotVisible"])
    assert attrs == {"ApproximateNumberOfMessages": "0",
                     "ApproximateNumberOfMessagesNotVisible": "0"}


async def test_one_queue_from_boto3_and_the_native_client(http_node):
    url = f"http://{http_node.http_address}"
    async with qnode.Client([http_node.binary]) as native:
        q = await native.create_queue("shared")

        def boto_send_and_receive():
            c = client(url)
            qurl = c.get_queue_url(QueueName="shared")["QueueUrl"]
            sent = c.send_message(QueueUrl=qurl, MessageBody="from boto3", MessageAttributes={
                "origin": {"DataType": "String", "StringValue": "boto3"}})
            return c, qurl, sent

        c, qurl, sent = await asyncio.to_thread(boto_send_and_receive)
        [m] = await q.receive(max_messages=10, wait=5)
        assert m.body == b"from boto3"
        assert m.id == sent["MessageId"]
        assert m.attributes["origin"] == "boto3"
        await m.delete()
        native_sent = await q.send("from native", attributes={"origin": "native"})

        def boto_receive():
            r = c.receive_message(QueueUrl=qurl, WaitTimeSeconds=5, MessageAttributeNames=["All"])
            [msg] = r["Messages"]
            c.delete_message(QueueUrl=qurl, ReceiptHandle=msg["ReceiptHandle"])
            return msg

        msg = await asyncio.to_thread(boto_receive)
        assert msg["Body"] == "from native"
        assert msg["MessageId"] == native_sent.id
        assert msg["MessageAttributes"]["origin"] == {"DataType": "String", "StringValue": "native"}
        assert await q.receive(max_messages=10, wait=0) == []
