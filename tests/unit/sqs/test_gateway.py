"""The SQS gateway's translation layer over HTTP: request parsing, reply shapes and error
mapping for both protocols, SigV4 enforcement, bounds and protected mode. Method: the real
aiohttp listener on 127.0.0.1:0 over an in-memory FakeApi, driven by boto3 (JSON protocol) and
by raw query-protocol requests signed with botocore's SigV4Auth; the queue engine itself is
tested in tests/integration/test_sqs_*.py against BackendService."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from qnode.backend.md5 import md5_of_attributes
from qnode.frontend.api import MessageAttribute
from qnode.frontend.http import HttpConfig, HttpServer, ProtectedModeError
from tests.unit.sqs.conftest import ACCESS_KEY, SECRET_KEY, make_client
from tests.unit.sqs.fake_api import FakeApi

NS = {"sqs": "http://queue.amazonaws.com/doc/2012-11-05/"}


def _raw(url: str, params: dict, *, key: str = "fake", secret: str = "fake",
         path: str = "/", json_target: str | None = None, body: bytes | None = None):
    """POST a request (query form or JSON), signed with botocore's SigV4Auth; (status, body,
    headers)."""
    if json_target:
        data = body if body is not None else json.dumps(params).encode()
        headers = {"Content-Type": "application/x-amz-json-1.0",
                   "X-Amz-Target": f"AmazonSQS.{json_target}"}
    else:
        data = body if body is not None else urlencode(params).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    req = AWSRequest(method="POST", url=url + path, data=data, headers=headers)
    SigV4Auth(Credentials(key, secret), "sqs", "us-east-1").add_auth(req)
    prepared = req.prepare()
    http_req = urllib.request.Request(prepared.url, data=data, method="POST",
                                      headers=dict(prepared.headers))
    try:
        with urllib.request.urlopen(http_req, timeout=30) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read(), dict(err.headers)


async def test_json_protocol_round_trip_and_md5s(gateway):
    url, api, _ = gateway

    def run():
        c = make_client(url)
        q = c.create_queue(QueueName="orders")["QueueUrl"]
        assert q == f"{url}/000000000000/orders"
        attrs = {"s": {"DataType": "String.custom", "StringValue": "é ünï"},
                 "n": {"DataType": "Number", "StringValue": "-1.5e3"},
                 "b": {"DataType": "Binary", "BinaryValue": b"\x00\xff\x10"}}
        body = "line1\r\nline2\t\U0001F600"
        sent = c.send_message(QueueUrl=q, MessageBody=body, MessageAttributes=attrs)
        assert sent["MD5OfMessageBody"] == hashlib.md5(body.encode()).hexdigest()
        expected = md5_of_attributes({
            "s": MessageAttribute("String.custom", string_value="é ünï"),
            "n": MessageAttribute("Number", string_value="-1.5e3"),
            "b": MessageAttribute("Binary", binary_value=b"\x00\xff\x10")})
        assert sent["MD5OfMessageAttributes"] == expected
        got = c.receive_message(QueueUrl=q, MessageAttributeNames=["All"],
                                MessageSystemAttributeNames=["SentTimestamp"])["Messages"][0]
        assert got["Body"] == body
        assert got["MessageAttributes"]["b"]["BinaryValue"] == b"\x00\xff\x10"
        assert got["MD5OfMessageAttributes"] == expected
        assert set(got["Attributes"]) == {"SentTimestamp"}
    await asyncio.to_thread(run)


async def test_attribute_name_filters_select_and_rehash(gateway):
    url, api, _ = gateway

    def run():
        c = make_client(url)
        q = c.create_queue(QueueName="filters")["QueueUrl"]
        attrs = {name: {"DataType": "String", "StringValue": name}
                 for name in ("a.x", "a.y", "b", "c")}
        for selectors, names in ((["All"], {"a.x", "a.y", "b", "c"}), ([".*"], {"a.x", "a.y", "b", "c"}),
                                 (["a.*"], {"a.x", "a.y"}), (["b", "a.y"], {"a.y", "b"}),
                                 ([], set())):
            c.send_message(QueueUrl=q, MessageBody="m", MessageAttributes=attrs)
            kwargs = {"MessageAttributeNames": selectors} if selectors else {}
            m = c.receive_message(QueueUrl=q, **kwargs)["Messages"][0]
            assert set(m.get("MessageAttributes", {})) == names
            if names:
                subset = {n: MessageAttribute("String", string_value=n) for n in names}
                assert m["MD5OfMessageAttributes"] == md5_of_attributes(subset)
            c.delete_message(QueueUrl=q, ReceiptHandle=m["ReceiptHandle"])
        with pytest.raises(ClientError) as info:
            c.receive_message(QueueUrl=q, AttributeNames=["NoSuchAttribute"])
        assert info.value.response["Error"]["Code"] == "InvalidAttributeName"
    await asyncio.to_thread(run)


async def test_invalid_body_characters_and_parameters_are_typed_errors(gateway):
    url, _, _ = gateway

    def run():
        c = make_client(url)
        q = c.create_queue(QueueName="strict")["QueueUrl"]
        for bad in ("\x00", "ok\x1f", "\ufffe"):
            with pytest.raises(c.exceptions.InvalidMessageContents):
                c.send_message(QueueUrl=q, MessageBody=bad)
        cases = [
            (lambda: c.receive_message(QueueUrl=q, WaitTimeSeconds=21), "InvalidParameterValue"),
            (lambda: c.receive_message(QueueUrl=q, MaxNumberOfMessages=11), "InvalidParameterValue"),
            (lambda: c.send_message(QueueUrl=q, MessageBody="x", DelaySeconds=901), "InvalidParameterValue"),
            (lambda: c.send_message(QueueUrl=q, MessageBody="x", MessageAttributes={
                "AWS.reserved": {"DataType": "String", "StringValue": "v"}}), "InvalidParameterValue"),
            (lambda: c.send_message(QueueUrl=q, MessageBody="x", MessageAttributes={
                "a": {"DataType": "Number", "StringValue": "abc"}}), "InvalidParameterValue"),
            (lambda: c.send_message(QueueUrl=q, MessageBody="x", MessageAttributes={
                "a": {"DataType": "Blob", "StringValue": "abc"}}), "InvalidParameterValue"),
            (lambda: c.list_queues(MaxResults=1001), "InvalidParameterValue"),
            (lambda: c.send_message(QueueUrl=q, MessageBody=""), "MissingParameter"),
            (lambda: c.create_queue(QueueName="bad name"), "InvalidParameterValue"),
            (lambda: c.create_queue(QueueName="x" * 81), "InvalidParameterValue"),
            (lambda: c.create_queue(QueueName="nofifo.fifo"), "InvalidParameterValue"),
            (lambda: c.create_queue(QueueName="plain", Attributes={"FifoQueue": "true"}),
             "InvalidParameterValue"),
        ]
        for call, code in cases:
            with pytest.raises(ClientError) as info:
                call()
            assert info.value.response["Error"]["Code"] == code
            assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    await asyncio.to_thread(run)


async def test_error_classes_and_query_codes_match_sqs(gateway):
    url, _, _ = gateway

    def run():
        c = make_client(url)
        with pytest.raises(c.exceptions.QueueDoesNotExist) as info:
            c.get_queue_url(QueueName="missing")
        assert info.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
        q = c.create_queue(QueueName="exists", Attributes={"VisibilityTimeout": "10"})["QueueUrl"]
        with pytest.raises(c.exceptions.QueueNameExists) as info:
            c.create_queue(QueueName="exists", Attributes={"VisibilityTimeout": "20"})
        assert info.value.response["Error"]["Code"] == "QueueAlreadyExists"
        with pytest.raises(c.exceptions.EmptyBatchRequest):
            c.send_message_batch(QueueUrl=q, Entries=[])
        with pytest.raises(c.exceptions.TooManyEntriesInBatchRequest):
            c.send_message_batch(QueueUrl=q, Entries=[{"Id": str(i), "MessageBody": "x"}
                                                      for i in range(11)])
        with pytest.raises(c.exceptions.BatchEntryIdsNotDistinct):
            c.delete_message_batch(QueueUrl=q, Entries=[{"Id": "a", "ReceiptHandle": "r"},
                                                        {"Id": "a", "ReceiptHandle": "r"}])
        with pytest.raises(c.exceptions.InvalidBatchEntryId):
            c.send_message_batch(QueueUrl=q, Entries=[{"Id": "bad id!", "MessageBody": "x"}])
        with pytest.raises(c.exceptions.BatchRequestTooLong):
            c.send_message_batch(QueueUrl=q, Entries=[
                {"Id": str(i), "MessageBody": "x" * (200 * 1024)} for i in range(6)])
        with pytest.raises(c.exceptions.ReceiptHandleIsInvalid):
            c.delete_message(QueueUrl=q, ReceiptHandle="garbage")
        with pytest.raises(c.exceptions.QueueDoesNotExist):
            c.send_message(QueueUrl=url + "/123456789012/exists", MessageBody="other account")
    await asyncio.to_thread(run)


async def test_list_queues_pagination_and_prefix(gateway):
    url, _, _ = gateway

    def run():
        c = make_client(url)
        for i in range(7):
            c.create_queue(QueueName=f"page-{i}")
        c.create_queue(QueueName="other")
        seen, token, pages = [], None, 0
        while True:
            kw = {"QueueNamePrefix": "page-", "MaxResults": 3}
            if token:
                kw["NextToken"] = token
            r = c.list_queues(**kw)
            seen += r["QueueUrls"]
            pages += 1
            token = r.get("NextToken")
            if not token:
                break
        assert pages == 3
        assert [u.rsplit("/", 1)[1] for u in seen] == [f"page-{i}" for i in range(7)]
        everything = c.list_queues()
        assert "NextToken" not in everything
        assert len(everything["QueueUrls"]) == 8
        assert "QueueUrls" not in c.list_queues(QueueNamePrefix="zzz")
    await asyncio.to_thread(run)


async def test_query_protocol_xml_replies_and_errors(gateway):
    url, _, _ = gateway

    def run():
        status, body, _ = _raw(url, {"Action": "CreateQueue", "Version": "2012-11-05",
                                     "QueueName": "xmlq", "Attribute.1.Name": "DelaySeconds",
                                     "Attribute.1.Value": "0", "Tag.1.Key": "team",
                                     "Tag.1.Value": "core"})
        assert status == 200
        root = ET.fromstring(body)
        assert root.tag == "{%s}CreateQueueResponse" % NS["sqs"]
        qurl = root.find("sqs:CreateQueueResult/sqs:QueueUrl", NS).text
        assert qurl.endswith("/000000000000/xmlq")
        status, body, _ = _raw(url, {"Action": "SendMessage", "MessageBody": "a&b<c>\r\n",
                                     "MessageAttribute.1.Name": "k",
                                     "MessageAttribute.1.Value.DataType": "String",
                                     "MessageAttribute.1.Value.StringValue": "v"},
                               path="/000000000000/xmlq")
        assert status == 200
        md5 = ET.fromstring(body).find("sqs:SendMessageResult/sqs:MD5OfMessageBody", NS).text
        assert md5 == hashlib.md5("a&b<c>\r\n".encode()).hexdigest()
        status, body, _ = _raw(url, {"Action": "ReceiveMessage", "QueueUrl": qurl,
                                     "AttributeName.1": "All", "MessageAttributeName.1": "All"})
        msg = ET.fromstring(body).find("sqs:ReceiveMessageResult/sqs:Message", NS)
        assert msg.find("sqs:Body", NS).text == "a&b<c>\r\n"
        assert msg.find("sqs:MessageAttribute/sqs:Name", NS).text == "k"
        names = {a.find("sqs:Name", NS).text for a in msg.findall("sqs:Attribute", NS)}
        assert "SentTimestamp" in names
        status, body, _ = _raw(url, {"Action": "ListQueueTags", "QueueUrl": qurl})
        tag = ET.fromstring(body).find("sqs:ListQueueTagsResult/sqs:Tag", NS)
        assert (tag.find("sqs:Key", NS).text, tag.find("sqs:Value", NS).text) == ("team", "core")
        status, body, _ = _raw(url, {"Action": "GetQueueUrl", "QueueName": "nope"})
        assert status == 400
        err = ET.fromstring(body).find("sqs:Error", NS)
        assert err.find("sqs:Code", NS).text == "AWS.SimpleQueueService.NonExistentQueue"
        assert err.find("sqs:Type", NS).text == "Sender"
        status, body, _ = _raw(url, {"Action": "NoSuchAction"})
        assert status == 400
        assert ET.fromstring(body).find("sqs:Error/sqs:Code", NS).text == "InvalidAction"
        status, body, _ = _raw(url, {"Action": "DeleteQueue"}, path="/000000000000/xmlq")
        assert status == 200
        assert ET.fromstring(body).tag == "{%s}DeleteQueueResponse" % NS["sqs"]
    await asyncio.to_thread(run)


async def test_sigv4_enforced_when_credentials_are_configured(signed_gateway):
    url, _, _ = signed_gateway

    def run():
        good = make_client(url, key=ACCESS_KEY, secret=SECRET_KEY, region="eu-central-1")
        assert good.create_queue(QueueName="auth")["QueueUrl"].endswith("/auth")
        with pytest.raises(ClientError) as info:
            make_client(url, key=ACCESS_KEY, secret="wrong").list_queues()
        assert info.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        with pytest.raises(ClientError) as info:
            make_client(url, key="AKIDUNKNOWN", secret=SECRET_KEY).list_queues()
        assert info.value.response["Error"]["Code"] == "InvalidClientTokenId"
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        # query protocol, signed by botocore's signer, raw HTTP
        status, body, _ = _raw(url, {"Action": "ListQueues"}, key=ACCESS_KEY, secret=SECRET_KEY)
        assert status == 200
        assert b"/auth</QueueUrl>" in body
        status, body, _ = _raw(url, {"Action": "ListQueues"}, key=ACCESS_KEY, secret="nope")
        assert status == 403
        assert b"<Code>SignatureDoesNotMatch</Code>" in body
        unsigned = urllib.request.Request(url + "/", data=b"Action=ListQueues", method="POST",
                                          headers={"Content-Type": "application/x-www-form-urlencoded"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(unsigned, timeout=10)
        assert info.value.code == 403
        assert b"MissingAuthenticationToken" in info.value.read()
    await asyncio.to_thread(run)


async def test_presigned_get_request_is_accepted(signed_gateway):
    url, api, _ = signed_gateway
    await api.create_queue("presigned")

    def run():
        from botocore.auth import SigV4QueryAuth
        req = AWSRequest(method="GET", url=url + "/000000000000/presigned",
                         params={"Action": "GetQueueAttributes", "AttributeName.1": "All"})
        SigV4QueryAuth(Credentials(ACCESS_KEY, SECRET_KEY), "sqs", "us-west-2",
                       expires=60).add_auth(req)
        signed_url = req.prepare().url
        assert "X-Amz-Signature=" in signed_url
        with urllib.request.urlopen(signed_url, timeout=10) as r:
            body = r.read()
        assert b"<Name>QueueArn</Name>" in body
        tampered = signed_url.replace("AttributeName.1=All", "AttributeName.1=QueueArn")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(tampered, timeout=10)
        assert info.value.code == 403
        assert b"SignatureDoesNotMatch" in info.value.read()
    await asyncio.to_thread(run)


async def test_body_over_the_bound_is_413_in_the_request_protocol(gateway):
    url, _, server = gateway
    limit = server.gateway._settings.body_size_max

    def run():
        big = b'{"QueueUrl": "x", "MessageBody": "' + b"a" * limit + b'"}'
        status, body, headers = _raw(url, {}, json_target="SendMessage", body=big)
        assert status == 413
        assert json.loads(body)["__type"].endswith("#RequestEntityTooLarge")
        # A 10 x 1 MiB batch still fits the body bound; SQS then refuses it as too long.
        c = make_client(url)
        q = c.create_queue(QueueName="big")["QueueUrl"]
        with pytest.raises(c.exceptions.BatchRequestTooLong):
            c.send_message_batch(QueueUrl=q, Entries=[
                {"Id": str(i), "MessageBody": "y" * (1024 * 1024 - 64)} for i in range(10)])
        # Worst case for JSON escaping: 2-byte UTF-8 characters become 6-byte \u00e9 escapes.
        with pytest.raises(c.exceptions.BatchRequestTooLong):
            c.send_message_batch(QueueUrl=q, Entries=[
                {"Id": str(i), "MessageBody": "\u00e9" * (512 * 1024 - 64)} for i in range(10)])
    await asyncio.to_thread(run)


async def test_protected_mode_refuses_non_loopback_without_credentials():
    server = HttpServer(FakeApi(), HttpConfig())
    with pytest.raises(ProtectedModeError):
        await server.start("0.0.0.0", 0)
    insecure = HttpServer(FakeApi(), HttpConfig(insecure_no_auth=True))
    host, port = await insecure.start("0.0.0.0", 0)
    try:
        assert port > 0
    finally:
        await insecure.stop()
    keyed = HttpServer(FakeApi(), HttpConfig(credentials={ACCESS_KEY: SECRET_KEY}))
    await keyed.start("0.0.0.0", 0)
    await keyed.stop()


async def test_healthz_and_metrics(gateway):
    url, _, _ = gateway

    def run():
        with urllib.request.urlopen(url + "/healthz", timeout=10) as r:
            assert json.loads(r.read())["status"] == "ok"
        with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
            assert b"qnode_http_inflight_requests" in r.read()
    await asyncio.to_thread(run)


async def test_inflight_bound_answers_503_service_unavailable():
    api = FakeApi()
    server = HttpServer(api, HttpConfig(inflight_requests_max=1))
    host, port = await server.start("127.0.0.1", 0)
    url = f"http://{host}:{port}"
    try:
        await api.create_queue("slow")
        parked = asyncio.to_thread(_raw, url, {"QueueUrl": f"{url}/000000000000/slow",
                                               "WaitTimeSeconds": 2},
                                   json_target="ReceiveMessage")
        task = asyncio.ensure_future(parked)
        deadline = asyncio.get_running_loop().time() + 5
        while server.gateway.inflight == 0:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.005)
        status, body, headers = await asyncio.to_thread(
            _raw, url, {}, json_target="ListQueues")
        assert status == 503
        assert headers["x-amzn-query-error"] == "ServiceUnavailable;Receiver"
        status, _, _ = await task
        assert status == 200
    finally:
        await server.stop()


async def test_malformed_requests_get_typed_4xx_never_500(gateway):
    url, api, _ = gateway
    await api.create_queue("robust")
    qurl = f"{url}/000000000000/robust"
    rng = random.Random(5)

    def run():
        cases = [
            ("SendMessage", b"{not json"),
            ("SendMessage", b"[" * 100_000),
            ("SendMessage", b'"a string"'),
            ("SendMessage", b"\xff\xfe"),
            ("SendMessage", json.dumps({"QueueUrl": qurl, "MessageBody": 5}).encode()),
            ("SendMessageBatch", json.dumps({"QueueUrl": qurl, "Entries": "x"}).encode()),
            ("SendMessageBatch", json.dumps({"QueueUrl": qurl, "Entries": [{"Id": 1}]}).encode()),
            ("ReceiveMessage", json.dumps({"QueueUrl": qurl, "MaxNumberOfMessages": "ten"}).encode()),
            ("ReceiveMessage", json.dumps({"QueueUrl": qurl, "WaitTimeSeconds": True}).encode()),
            ("TagQueue", json.dumps({"QueueUrl": qurl, "Tags": {"k": 1}}).encode()),
            ("UntagQueue", json.dumps({"QueueUrl": qurl, "TagKeys": ["k"] * 1001}).encode()),
            ("SetQueueAttributes", json.dumps({"QueueUrl": qurl, "Attributes": []}).encode()),
            ("NoSuchAction", b"{}"),
        ]
        for _ in range(40):
            blob = {"QueueUrl": qurl, "MessageBody": "".join(
                chr(rng.randrange(0, 0x110000)) for _ in range(rng.randrange(1, 20))),
                "MessageAttributes": {"".join(chr(rng.randrange(32, 127)) for _ in range(3)): {
                    "DataType": rng.choice(["String", "Number", "Binary", "X", ""]),
                    "StringValue": rng.choice(["1", "x", ""]), "BinaryValue": "AA=="}}}
            cases.append(("SendMessage", json.dumps(blob).encode()))
        for action, body in cases:
            status, reply, headers = _raw(url, {}, json_target=action, body=body)
            assert 200 <= status < 500, (action, body[:80], status, reply)
            if status >= 400:
                assert "x-amzn-query-error" in headers
                assert json.loads(reply)["__type"].startswith("com.amazonaws.sqs#")
        too_many = "&".join(f"K{i}=v" for i in range(3000)).encode()
        status, reply, _ = _raw(url, {}, body=b"Action=ListQueues&" + too_many)
        assert status == 400
        assert b"<Code>InvalidParameterValue</Code>" in reply
        status, reply, _ = _raw(url, {}, body=b"Version=2012-11-05")
        assert status == 400
        assert b"<Code>MissingAction</Code>" in reply
    await asyncio.to_thread(run)


async def test_stop_answers_parked_long_polls_promptly():
    api = FakeApi()
    server = HttpServer(api, HttpConfig())
    host, port = await server.start("127.0.0.1", 0)
    url = f"http://{host}:{port}"
    await api.create_queue("parked")
    loop = asyncio.get_running_loop()
    poll = asyncio.ensure_future(asyncio.to_thread(
        _raw, url, {"QueueUrl": f"{url}/000000000000/parked", "WaitTimeSeconds": 20},
        json_target="ReceiveMessage"))
    deadline = loop.time() + 5
    while server.gateway.inflight == 0:
        assert loop.time() < deadline
        await asyncio.sleep(0.005)
    t0 = loop.time()
    await server.stop()
    status, body, _ = await asyncio.wait_for(poll, 5)
    assert loop.time() - t0 < 2
    assert status == 200
    assert json.loads(body) == {}


async def test_buffered_body_budget_answers_503():
    api = FakeApi()
    size = 3 * 1024 * 1024
    server = HttpServer(api, HttpConfig(body_size_max=size, inflight_body_size_max=size))
    host, port = await server.start("127.0.0.1", 0)
    url = f"http://{host}:{port}"
    try:
        await api.create_queue("budget")
        padded = json.dumps({"QueueUrl": f"{url}/000000000000/budget", "WaitTimeSeconds": 2})
        padded = padded[:-1] + " " * (size - len(padded)) + "}"
        parked = asyncio.ensure_future(asyncio.to_thread(
            _raw, url, {}, json_target="ReceiveMessage", body=padded.encode()))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while server.gateway.inflight_body_size < size:      # its whole body is buffered
            assert loop.time() < deadline
            await asyncio.sleep(0.005)
        status, _, headers = await asyncio.to_thread(_raw, url, {}, json_target="ListQueues")
        assert status == 503
        assert headers["x-amzn-query-error"] == "ServiceUnavailable;Receiver"
        status, _, _ = await parked
        assert status == 200
        status, _, _ = await asyncio.to_thread(_raw, url, {}, json_target="ListQueues")
        assert status == 200
    finally:
        await server.stop()


async def test_a_body_that_never_arrives_holds_no_budget_and_times_out():
    """Body bytes count against the budget as they arrive, not as declared: a client that
    announces a large body and sends nothing used to hold its whole declared size (eight such
    connections answered every other request 503) for as long as it liked."""
    api = FakeApi()
    size = 3 * 1024 * 1024
    server = HttpServer(api, HttpConfig(body_size_max=size, inflight_body_size_max=size,
                                        body_read_timeout_s=1.0))
    host, port = await server.start("127.0.0.1", 0)
    url = f"http://{host}:{port}"
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write((f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {size}\r\n"
                      "Content-Type: application/x-amz-json-1.0\r\n"
                      "X-Amz-Target: AmazonSQS.ListQueues\r\n\r\n").encode())
        await writer.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while server.gateway.inflight == 0:                 # the stalled request is in
            assert loop.time() < deadline
            await asyncio.sleep(0.005)
        status, _, _ = await asyncio.to_thread(_raw, url, {}, json_target="ListQueues")
        assert status == 200
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:")))
            reply = json.loads(await reader.readexactly(length))
        assert head.startswith(b"HTTP/1.1 5")
        assert reply["__type"].endswith("RequestTimeout"), reply
        assert server.gateway.inflight_body_size == 0
    finally:
        writer.close()
        await server.stop()


async def test_connections_over_the_bound_are_closed_at_once_and_counted():
    """aiohttp accepts without limit: 2,000 connections holding half-sent headers stayed open.
    The listener now closes a connection over `connections_max` as soon as it is accepted."""
    server = HttpServer(FakeApi(), HttpConfig(connections_max=2))
    host, port = await server.start("127.0.0.1", 0)
    url = f"http://{host}:{port}"
    held = [await asyncio.open_connection(host, port) for _ in range(2)]
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while server.connection_count < 2:                    # both accepted
            assert loop.time() < deadline
            await asyncio.sleep(0.005)
        reader, writer = await asyncio.open_connection(host, port)
        async with asyncio.timeout(5):
            assert await reader.read() == b""                 # closed at once, nothing sent
        writer.close()
        for _, w in held:
            w.close()
        deadline = loop.time() + 5
        while server.connection_count > 0:                    # the held ones are gone
            assert loop.time() < deadline
            await asyncio.sleep(0.005)

        def metrics() -> bytes:
            with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
                return r.read()
        assert b'qnode_limit_rejections_total{limit="http_connections"} 1' in await asyncio.to_thread(metrics)
    finally:
        for _, w in held:
            w.close()
        await server.stop()


async def test_a_connection_that_dribbles_its_first_request_head_is_closed():
    """aiohttp has no timer for a request head: a client sending a few header bytes and then
    nothing held its connection for ever. Served connections are left alone."""
    server = HttpServer(FakeApi(), HttpConfig(first_request_timeout_s=0.5))
    host, port = await server.start("127.0.0.1", 0)
    url = f"http://{host}:{port}"
    try:
        get = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        # Opened first, so its check runs before the dribbler's (same delay, timers in order).
        served_reader, served_writer = await asyncio.open_connection(host, port)
        served_writer.write(get)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"POST / HTTP/1.1\r\nHost: {host}\r\n".encode())   # and no more
        async with asyncio.timeout(10):
            assert (await served_reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            assert await reader.read() == b""                       # closed by the server
            served_writer.write(get)                                # kept: it sent a request
            await served_reader.readuntil(b"}")                     # the first reply's body
            assert (await served_reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        assert not server._site.unstarted           # both checks ran; nothing is kept for later

        def metrics() -> bytes:
            with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
                return r.read()
        text = await asyncio.to_thread(metrics)
        assert b'qnode_limit_rejections_total{limit="http_first_request_timeout"} 1' in text
        writer.close()
        served_writer.close()
    finally:
        await server.stop()
