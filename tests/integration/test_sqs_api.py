"""The SQS-compatible API end to end: real boto3 over real HTTP against the gateway over the
real BackendService (tmp data dir), for every action of standard queues, batches with mixed
success, long-poll timing, MD5 digests and error classes. Method: `sqs_endpoint` starts
HttpServer + BackendService in the test's event loop on 127.0.0.1:0 and yields (url, api);
boto3 runs in a thread (`asyncio.to_thread`). Digests are recomputed here independently of the
server (SQS developer guide algorithm). Waits are deadlines on real events, never sleeps."""

from __future__ import annotations

import asyncio
import hashlib
import struct
import threading
import time
import urllib.request

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from qnode.frontend.http import HttpConfig, HttpServer

ACCOUNT = "000000000000"


@pytest.fixture
async def sqs_endpoint(tmp_path):
    """(url, api): the SQS listener over a BackendService on a tmp dir, on 127.0.0.1:0."""
    from qnode.backend.service import BackendConfig, BackendService

    api = await BackendService.open(tmp_path / "queues",
                                    BackendConfig(region="us-east-1", account_id=ACCOUNT))
    server = HttpServer(api, HttpConfig(account_id=ACCOUNT))
    try:
        host, port = await server.start("127.0.0.1", 0)
        yield f"http://{host}:{port}", api
    finally:
        await server.stop()
        await api.close()


def client(url: str):
    return boto3.session.Session().client(
        "sqs", endpoint_url=url, region_name="us-east-1", aws_access_key_id="fake",
        aws_secret_access_key="fake",
        config=Config(retries={"max_attempts": 1}, read_timeout=60))


def _inflight(url: str) -> int:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("qnode_http_inflight_requests "):
                return int(line.split()[1])
    return 0


def md5_attrs(attrs: dict) -> str:
    """SQS's MD5OfMessageAttributes, written from the developer guide, not from qnode."""
    buf = b""
    for name in sorted(attrs):
        a = attrs[name]
        buf += struct.pack(">I", len(name.encode())) + name.encode()
        buf += struct.pack(">I", len(a["DataType"].encode())) + a["DataType"].encode()
        if "BinaryValue" in a:
            buf += b"\x02" + struct.pack(">I", len(a["BinaryValue"])) + a["BinaryValue"]
        else:
            v = a["StringValue"].encode()
            buf += b"\x01" + struct.pack(">I", len(v)) + v
    return hashlib.md5(buf).hexdigest()


async def test_queue_lifecycle_actions(sqs_endpoint):
    url, _ = sqs_endpoint

    def run():
        c = client(url)
        q = c.create_queue(QueueName="life", Attributes={"VisibilityTimeout": "17"},
                           tags={"team": "core"})["QueueUrl"]
        assert q == f"{url}/{ACCOUNT}/life"
        assert c.create_queue(QueueName="life", Attributes={"VisibilityTimeout": "17"})["QueueUrl"] == q
        with pytest.raises(c.exceptions.QueueNameExists):
            c.create_queue(QueueName="life", Attributes={"VisibilityTimeout": "18"})
        assert c.get_queue_url(QueueName="life")["QueueUrl"] == q
        attrs = c.get_queue_attributes(QueueUrl=q, AttributeNames=["All"])["Attributes"]
        assert attrs["VisibilityTimeout"] == "17"
        assert attrs["QueueArn"] == f"arn:aws:sqs:us-east-1:{ACCOUNT}:life"
        c.set_queue_attributes(QueueUrl=q, Attributes={"DelaySeconds": "3"})
        got = c.get_queue_attributes(QueueUrl=q, AttributeNames=["DelaySeconds"])["Attributes"]
        assert got == {"DelaySeconds": "3"}
        with pytest.raises(ClientError) as info:
            c.set_queue_attributes(QueueUrl=q, Attributes={"VisibilityTimeout": "-1"})
        assert info.value.response["Error"]["Code"] == "InvalidAttributeValue"
        assert c.list_queue_tags(QueueUrl=q)["Tags"] == {"team": "core"}
        c.tag_queue(QueueUrl=q, Tags={"env": "test"})
        c.untag_queue(QueueUrl=q, TagKeys=["team"])
        assert c.list_queue_tags(QueueUrl=q)["Tags"] == {"env": "test"}
        c.add_permission(QueueUrl=q, Label="p1", AWSAccountIds=["111122223333"],
                         Actions=["SendMessage"])
        c.remove_permission(QueueUrl=q, Label="p1")
        c.send_message(QueueUrl=q, MessageBody="x", DelaySeconds=0)
        c.purge_queue(QueueUrl=q)
        with pytest.raises(c.exceptions.PurgeQueueInProgress) as info:
            c.purge_queue(QueueUrl=q)
        assert info.value.response["Error"]["Code"] == "AWS.SimpleQueueService.PurgeQueueInProgress"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert c.receive_message(QueueUrl=q, WaitTimeSeconds=0).get("Messages", []) == []
        c.delete_queue(QueueUrl=q)
        with pytest.raises(c.exceptions.QueueDoesNotExist):
            c.get_queue_url(QueueName="life")
        with pytest.raises(c.exceptions.QueueDoesNotExist):
            c.send_message(QueueUrl=q, MessageBody="gone")
    await asyncio.to_thread(run)


async def test_list_queues_paginates_with_next_token(sqs_endpoint):
    url, _ = sqs_endpoint

    def run():
        c = client(url)
        names = [f"lq-{i:02d}" for i in range(12)]
        for n in names:
            c.create_queue(QueueName=n)
        c.create_queue(QueueName="zz-other")
        got, token = [], None
        for _ in range(10):
            r = c.list_queues(QueueNamePrefix="lq-", MaxResults=5,
                              **({"NextToken": token} if token else {}))
            got += [u.rsplit("/", 1)[1] for u in r["QueueUrls"]]
            token = r.get("NextToken")
            if token is None:
                break
        assert got == names
        pages = list(c.get_paginator("list_queues").paginate(
            QueueNamePrefix="lq-", PaginationConfig={"PageSize": 4}))
        assert len(pages) == 3
        assert len(c.list_queues()["QueueUrls"]) == 13
    await asyncio.to_thread(run)


async def test_send_receive_delete_with_attributes_and_md5(sqs_endpoint):
    url, _ = sqs_endpoint

    def run():
        c = client(url)
        q = c.create_queue(QueueName="md5")["QueueUrl"]
        attrs = {"text": {"DataType": "String", "StringValue": "héllo"},
                 "num": {"DataType": "Number.int", "StringValue": "42"},
                 "blob": {"DataType": "Binary", "BinaryValue": bytes(range(256))}}
        body = "tab\tnl\ncr\r emoji \U0001F680 \ue000"
        sent = c.send_message(QueueUrl=q, MessageBody=body, MessageAttributes=attrs,
                              MessageSystemAttributes={"AWSTraceHeader": {
                                  "DataType": "String", "StringValue": "Root=1-abc"}})
        assert sent["MD5OfMessageBody"] == hashlib.md5(body.encode()).hexdigest()
        assert sent["MD5OfMessageAttributes"] == md5_attrs(attrs)
        assert sent["MD5OfMessageSystemAttributes"] == md5_attrs(
            {"AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-abc"}})
        msgs = c.receive_message(QueueUrl=q, MessageAttributeNames=["All"],
                                 AttributeNames=["All"], WaitTimeSeconds=1)["Messages"]
        [m] = msgs
        assert m["MessageId"] == sent["MessageId"]
        assert m["Body"] == body
        assert m["MD5OfBody"] == sent["MD5OfMessageBody"]
        assert m["MessageAttributes"] == attrs
        assert m["MD5OfMessageAttributes"] == md5_attrs(attrs)
        assert m["Attributes"]["ApproximateReceiveCount"] == "1"
        assert m["Attributes"]["AWSTraceHeader"] == "Root=1-abc"
        assert abs(int(m["Attributes"]["SentTimestamp"]) - time.time() * 1000) < 60_000
        only = {"text": attrs["text"]}
        c.change_message_visibility(QueueUrl=q, ReceiptHandle=m["ReceiptHandle"],
                                    VisibilityTimeout=0)
        [again] = c.receive_message(QueueUrl=q, MessageAttributeNames=["te.*", "text"],
                                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                                    WaitTimeSeconds=1)["Messages"]
        assert again["MessageAttributes"] == only
        assert again["MD5OfMessageAttributes"] == md5_attrs(only)
        assert again["Attributes"] == {"ApproximateReceiveCount": "2"}
        c.delete_message(QueueUrl=q, ReceiptHandle=again["ReceiptHandle"])
        assert "Messages" not in c.receive_message(QueueUrl=q, WaitTimeSeconds=0)
        with pytest.raises(c.exceptions.InvalidMessageContents):
            c.send_message(QueueUrl=q, MessageBody="bad \x0b")
    await asyncio.to_thread(run)


async def test_md5_of_body_covers_the_body_returned_for_a_native_non_utf8_body(sqs_endpoint):
    """A native client may send any bytes; SQS returns text. The gateway digests what it
    returns (the body with U+FFFD replacements), so an SDK's MD5OfBody check passes."""
    from qnode.frontend.api import SendEntry
    url, api = sqs_endpoint
    await api.create_queue("raw", {})
    await api.send_messages("raw", [SendEntry(body=b"ok \xff\xfe end")])

    def run():
        c = client(url)
        q = c.get_queue_url(QueueName="raw")["QueueUrl"]
        [m] = c.receive_message(QueueUrl=q, WaitTimeSeconds=1)["Messages"]
        assert m["Body"] == "ok \ufffd\ufffd end"
        assert m["MD5OfBody"] == hashlib.md5(m["Body"].encode()).hexdigest()
    await asyncio.to_thread(run)


async def test_batches_report_mixed_success(sqs_endpoint):
    url, _ = sqs_endpoint

    def run():
        c = client(url)
        q = c.create_queue(QueueName="batch")["QueueUrl"]
        r = c.send_message_batch(QueueUrl=q, Entries=[
            {"Id": "ok1", "MessageBody": "one"},
            {"Id": "bad", "MessageBody": "nul \x00"},
            {"Id": "ok2", "MessageBody": "two", "DelaySeconds": 0,
             "MessageAttributes": {"a": {"DataType": "String", "StringValue": "b"}}},
        ])
        assert sorted(e["Id"] for e in r["Successful"]) == ["ok1", "ok2"]
        [failed] = r["Failed"]
        assert failed["Id"] == "bad"
        assert failed["Code"] == "InvalidMessageContents"
        assert failed["SenderFault"] is True
        ok2 = next(e for e in r["Successful"] if e["Id"] == "ok2")
        assert ok2["MD5OfMessageAttributes"] == md5_attrs(
            {"a": {"DataType": "String", "StringValue": "b"}})
        msgs = []
        deadline = time.monotonic() + 10
        while len(msgs) < 2 and time.monotonic() < deadline:
            msgs += c.receive_message(QueueUrl=q, MaxNumberOfMessages=10,
                                      WaitTimeSeconds=1).get("Messages", [])
        assert sorted(m["Body"] for m in msgs) == ["one", "two"]
        r = c.change_message_visibility_batch(QueueUrl=q, Entries=[
            {"Id": "v1", "ReceiptHandle": msgs[0]["ReceiptHandle"], "VisibilityTimeout": 60},
            {"Id": "v2", "ReceiptHandle": "not-a-receipt", "VisibilityTimeout": 60},
        ])
        assert [e["Id"] for e in r["Successful"]] == ["v1"]
        assert r["Failed"][0]["Id"] == "v2"
        assert r["Failed"][0]["Code"] == "ReceiptHandleIsInvalid"
        r = c.delete_message_batch(QueueUrl=q, Entries=[
            {"Id": "d1", "ReceiptHandle": msgs[0]["ReceiptHandle"]},
            {"Id": "d2", "ReceiptHandle": msgs[1]["ReceiptHandle"]},
            {"Id": "d3", "ReceiptHandle": "garbage"},
        ])
        assert sorted(e["Id"] for e in r["Successful"]) == ["d1", "d2"]
        assert [(f["Id"], f["Code"], f["SenderFault"]) for f in r["Failed"]] == [
            ("d3", "ReceiptHandleIsInvalid", True)]
        attrs = c.get_queue_attributes(QueueUrl=q, AttributeNames=["All"])["Attributes"]
        assert attrs["ApproximateNumberOfMessages"] == "0"
        assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    await asyncio.to_thread(run)


async def test_long_poll_returns_promptly_after_a_send_and_waits_when_empty(sqs_endpoint):
    url, _ = sqs_endpoint

    def run():
        consumer, producer = client(url), client(url)
        q = consumer.create_queue(QueueName="poll")["QueueUrl"]
        consumer.receive_message(QueueUrl=q, WaitTimeSeconds=0)   # warm the connection
        producer.list_queues()
        # Empty: the receive answers after about the wait, with nothing.
        t0 = time.monotonic()
        assert "Messages" not in consumer.receive_message(QueueUrl=q, WaitTimeSeconds=1)
        assert 0.9 <= time.monotonic() - t0 < 2.5
        # A send from another thread wakes the parked receive at once.
        sent_at: list[float] = []

        def produce():
            # Send only once the receive is parked in the server (its in-flight gauge).
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not _inflight(url):
                pass
            sent_at.append(time.monotonic())
            producer.send_message(QueueUrl=q, MessageBody="wake")
            sent_at.append(time.monotonic())

        t = threading.Thread(target=produce)
        t.start()
        t0 = time.monotonic()
        r = consumer.receive_message(QueueUrl=q, WaitTimeSeconds=5)
        got_at = time.monotonic()
        t.join(10)
        assert [m["Body"] for m in r["Messages"]] == ["wake"]
        assert got_at - t0 < 4
        assert got_at - sent_at[1] < 0.25, (got_at - sent_at[0], got_at - sent_at[1])
        with pytest.raises(ClientError) as info:
            consumer.receive_message(QueueUrl=q, WaitTimeSeconds=21)
        assert info.value.response["Error"]["Code"] == "InvalidParameterValue"
    await asyncio.to_thread(run)


async def test_visibility_timeout_and_change_visibility(sqs_endpoint):
    url, _ = sqs_endpoint

    def run():
        c = client(url)
        q = c.create_queue(QueueName="vis", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
        c.send_message(QueueUrl=q, MessageBody="v")
        [m] = c.receive_message(QueueUrl=q, WaitTimeSeconds=1)["Messages"]
        assert "Messages" not in c.receive_message(QueueUrl=q, WaitTimeSeconds=0)
        c.change_message_visibility(QueueUrl=q, ReceiptHandle=m["ReceiptHandle"],
                                    VisibilityTimeout=0)
        [m2] = c.receive_message(QueueUrl=q, WaitTimeSeconds=1, VisibilityTimeout=1,
                                 AttributeNames=["ApproximateReceiveCount"])["Messages"]
        assert m2["Attributes"]["ApproximateReceiveCount"] == "2"
        # VisibilityTimeout=1 on receive: visible again after about a second (long poll wakes).
        t0 = time.monotonic()
        [m3] = c.receive_message(QueueUrl=q, WaitTimeSeconds=5)["Messages"]
        assert m3["MessageId"] == m["MessageId"]
        assert time.monotonic() - t0 < 3
        with pytest.raises(ClientError) as info:
            c.change_message_visibility(QueueUrl=q, ReceiptHandle=m3["ReceiptHandle"],
                                        VisibilityTimeout=43201)
        assert info.value.response["Error"]["Code"] == "InvalidParameterValue"
    await asyncio.to_thread(run)


async def test_delay_seconds_and_queue_default_wait(sqs_endpoint):
    url, _ = sqs_endpoint

    def run():
        c = client(url)
        q = c.create_queue(QueueName="delay", Attributes={
            "ReceiveMessageWaitTimeSeconds": "1"})["QueueUrl"]
        # No WaitTimeSeconds: the queue's ReceiveMessageWaitTimeSeconds (1 s) applies.
        t0 = time.monotonic()
        assert "Messages" not in c.receive_message(QueueUrl=q)
        assert 0.9 <= time.monotonic() - t0 < 2.5
        t0 = time.monotonic()
        c.send_message(QueueUrl=q, MessageBody="later", DelaySeconds=1)
        assert "Messages" not in c.receive_message(QueueUrl=q, WaitTimeSeconds=0)
        [m] = c.receive_message(QueueUrl=q, WaitTimeSeconds=5)["Messages"]
        assert m["Body"] == "later"
        assert 0.9 <= time.monotonic() - t0 < 3
        r = c.send_message_batch(QueueUrl=q, Entries=[
            {"Id": "d", "MessageBody": "batch later", "DelaySeconds": 1}])
        assert [e["Id"] for e in r["Successful"]] == ["d"]
        assert "Messages" not in c.receive_message(QueueUrl=q, WaitTimeSeconds=0)
        [m] = c.receive_message(QueueUrl=q, WaitTimeSeconds=5)["Messages"]
        assert m["Body"] == "batch later"
    await asyncio.to_thread(run)
