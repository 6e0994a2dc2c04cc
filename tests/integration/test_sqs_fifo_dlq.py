"""FIFO queues, dead-letter queues and message move tasks through the SQS API: boto3 over real
HTTP against the gateway over BackendService (fixture `sqs_endpoint` from test_sqs_api).
Covers FIFO ordering per group, group blocking while in flight, deduplication (content-based and
explicit ids), the FIFO system attributes; redrive after maxReceiveCount with
DeadLetterQueueSourceArn, ListDeadLetterSourceQueues with pagination, and
Start/List/CancelMessageMoveTask. Waits are deadlines on observed state, never sleeps."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from botocore.exceptions import ClientError

from tests.integration.test_sqs_api import ACCOUNT, client, sqs_endpoint  # noqa: F401

ARN = f"arn:aws:sqs:us-east-1:{ACCOUNT}:"


def receive_all(c, q: str, want: int, deadline_s: float = 10, **kw) -> list[dict]:
    got: list[dict] = []
    deadline = time.monotonic() + deadline_s
    while len(got) < want and time.monotonic() < deadline:
        got += c.receive_message(QueueUrl=q, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                 **kw).get("Messages", [])
    return got


async def test_fifo_order_groups_and_deduplication(sqs_endpoint):
    url, _ = sqs_endpoint

    def run():
        c = client(url)
        q = c.create_queue(QueueName="jobs.fifo", Attributes={
            "FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
        attrs = c.get_queue_attributes(QueueUrl=q, AttributeNames=["All"])["Attributes"]
        assert attrs["FifoQueue"] == "true"
        with pytest.raises(ClientError) as info:
            c.send_message(QueueUrl=q, MessageBody="no group")
        assert info.value.response["Error"]["Code"] == "MissingParameter"
        seqs = []
        for i in range(3):
            r = c.send_message(QueueUrl=q, MessageBody=f"a{i}", MessageGroupId="A")
            seqs.append(int(r["SequenceNumber"]))
        assert seqs == sorted(seqs)
        first = c.send_message(QueueUrl=q, MessageBody="b0", MessageGroupId="B",
                               MessageDeduplicationId="dedup-b0")
        dup = c.send_message(QueueUrl=q, MessageBody="b0 again", MessageGroupId="B",
                             MessageDeduplicationId="dedup-b0")
        assert dup["MessageId"] == first["MessageId"]
        dup2 = c.send_message(QueueUrl=q, MessageBody="a0", MessageGroupId="A")
        assert "SequenceNumber" in dup2
        got = receive_all(c, q, 4, AttributeNames=["All"])
        bodies = [m["Body"] for m in got]
        assert sorted(bodies) == ["a0", "a1", "a2", "b0"]
        a_bodies = [b for b in bodies if b.startswith("a")]
        assert a_bodies == ["a0", "a1", "a2"]
        by_body = {m["Body"]: m for m in got}
        assert by_body["b0"]["Attributes"]["MessageGroupId"] == "B"
        assert by_body["b0"]["Attributes"]["MessageDeduplicationId"] == "dedup-b0"
        assert "SequenceNumber" in by_body["a1"]["Attributes"]
        # Group A is in flight: a new A message is held back; group C is not.
        c.send_message(QueueUrl=q, MessageBody="a3", MessageGroupId="A")
        c.send_message(QueueUrl=q, MessageBody="c0", MessageGroupId="C")
        more = receive_all(c, q, 1)
        assert [m["Body"] for m in more] == ["c0"]
        for m in got + more:
            c.delete_message(QueueUrl=q, ReceiptHandle=m["ReceiptHandle"])
        assert [m["Body"] for m in receive_all(c, q, 1)] == ["a3"]
    await asyncio.to_thread(run)


async def test_fifo_batch_send_keeps_order(sqs_endpoint):
    url, _ = sqs_endpoint

    def run():
        c = client(url)
        q = c.create_queue(QueueName="batch.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        r = c.send_message_batch(QueueUrl=q, Entries=[
            {"Id": f"e{i}", "MessageBody": f"m{i}", "MessageGroupId": "g",
             "MessageDeduplicationId": f"d{i}"} for i in range(5)])
        assert len(r["Successful"]) == 5
        assert all("SequenceNumber" in e for e in r["Successful"])
        got = receive_all(c, q, 5)
        assert [m["Body"] for m in got] == [f"m{i}" for i in range(5)]
    await asyncio.to_thread(run)


async def test_dead_letter_redrive_and_source_listing(sqs_endpoint):
    url, _ = sqs_endpoint

    def run():
        c = client(url)
        dlq = c.create_queue(QueueName="dead")["QueueUrl"]
        policy = json.dumps({"deadLetterTargetArn": ARN + "dead", "maxReceiveCount": "1"})
        srcs = [c.create_queue(QueueName=f"src-{i}", Attributes={"RedrivePolicy": policy})["QueueUrl"]
                for i in range(3)]
        src = srcs[0]
        got = c.get_queue_attributes(QueueUrl=src, AttributeNames=["RedrivePolicy"])["Attributes"]
        assert json.loads(got["RedrivePolicy"])["deadLetterTargetArn"] == ARN + "dead"
        c.send_message(QueueUrl=src, MessageBody="poison")
        [m] = c.receive_message(QueueUrl=src, WaitTimeSeconds=1, VisibilityTimeout=0)["Messages"]
        # The second receive exceeds maxReceiveCount=1: the message moves to the DLQ.
        assert "Messages" not in c.receive_message(QueueUrl=src, WaitTimeSeconds=1)
        [d] = receive_all(c, dlq, 1, AttributeNames=["All"])
        assert d["Body"] == "poison"
        assert d["MessageId"] == m["MessageId"]
        assert d["Attributes"]["DeadLetterQueueSourceArn"] == ARN + "src-0"
        r = c.list_dead_letter_source_queues(QueueUrl=dlq)
        assert sorted(r["queueUrls"]) == sorted(srcs)
        page = c.list_dead_letter_source_queues(QueueUrl=dlq, MaxResults=2)
        assert len(page["queueUrls"]) == 2
        rest = c.list_dead_letter_source_queues(QueueUrl=dlq, MaxResults=2,
                                                NextToken=page["NextToken"])
        assert len(rest["queueUrls"]) == 1
        assert "NextToken" not in rest
        assert sorted(page["queueUrls"] + rest["queueUrls"]) == sorted(srcs)
    await asyncio.to_thread(run)


async def test_message_move_task_redrives_back_to_the_source(sqs_endpoint):
    url, _ = sqs_endpoint

    def run():
        c = client(url)
        dlq = c.create_queue(QueueName="dlq2")["QueueUrl"]
        policy = json.dumps({"deadLetterTargetArn": ARN + "dlq2", "maxReceiveCount": 1})
        src = c.create_queue(QueueName="src2", Attributes={"RedrivePolicy": policy})["QueueUrl"]
        for i in range(3):
            c.send_message(QueueUrl=src, MessageBody=f"p{i}")
        for _ in range(2):   # two receives each: all three exceed maxReceiveCount
            receive_all(c, src, 3, deadline_s=3, VisibilityTimeout=0)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            n = c.get_queue_attributes(QueueUrl=dlq, AttributeNames=[
                "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"]
            if n == "3":
                break
        assert n == "3"
        handle = c.start_message_move_task(SourceArn=ARN + "dlq2")["TaskHandle"]
        assert handle
        deadline = time.monotonic() + 15
        status = None
        while time.monotonic() < deadline:
            [task] = c.list_message_move_tasks(SourceArn=ARN + "dlq2")["Results"]
            status = task["Status"]
            if status == "COMPLETED":
                break
        assert status == "COMPLETED"
        assert task["ApproximateNumberOfMessagesMoved"] == 3
        assert task["SourceArn"] == ARN + "dlq2"
        back = receive_all(c, src, 3)
        assert sorted(m["Body"] for m in back) == ["p0", "p1", "p2"]
    await asyncio.to_thread(run)


async def test_cancel_message_move_task(sqs_endpoint):
    url, _ = sqs_endpoint

    def run():
        c = client(url)
        dlq = c.create_queue(QueueName="dlq3")["QueueUrl"]
        policy = json.dumps({"deadLetterTargetArn": ARN + "dlq3", "maxReceiveCount": 1})
        c.create_queue(QueueName="src3", Attributes={"RedrivePolicy": policy})
        dest = c.create_queue(QueueName="elsewhere")["QueueUrl"]
        for i in range(0, 40, 10):
            c.send_message_batch(QueueUrl=dlq, Entries=[
                {"Id": str(j), "MessageBody": f"x{j}"} for j in range(i, i + 10)])
        handle = c.start_message_move_task(SourceArn=ARN + "dlq3", DestinationArn=ARN + "elsewhere",
                                           MaxNumberOfMessagesPerSecond=1)["TaskHandle"]
        with pytest.raises(ClientError):
            c.start_message_move_task(SourceArn=ARN + "dlq3")   # one running task per source
        moved = c.cancel_message_move_task(TaskHandle=handle)["ApproximateNumberOfMessagesMoved"]
        assert 0 <= moved < 40
        [task] = c.list_message_move_tasks(SourceArn=ARN + "dlq3", MaxResults=10)["Results"]
        assert task["Status"] in ("CANCELLING", "CANCELLED")
        assert task["DestinationArn"] == ARN + "elsewhere"
        with pytest.raises(c.exceptions.ResourceNotFoundException):
            c.cancel_message_move_task(TaskHandle="no-such-task")
        in_dest = int(c.get_queue_attributes(QueueUrl=dest, AttributeNames=[
            "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"])
        assert moved <= in_dest < 40
    await asyncio.to_thread(run)
