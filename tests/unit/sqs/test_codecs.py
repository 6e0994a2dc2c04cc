"""Pure parts of the SQS gateway: query-protocol parameters to the JSON shape, XML rendering,
message-attribute parsing and selection, the body character set, queue URLs/ARNs and error
rendering. Method: direct calls with table-driven inputs; no sockets."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from qnode.frontend.api import MessageAttribute
from qnode.frontend.sqs import messages, query, urls
from qnode.frontend.sqs.errors import render_json, render_xml, shape_name
from qnode.protocol.errors import (ErrorCode, InvalidMessageContents, InvalidParameter,
                                   MissingParameter, PurgeQueueInProgress, QnodeError,
                                   QueueDoesNotExist)

NS = "{http://queue.amazonaws.com/doc/2012-11-05/}"


def test_query_params_map_onto_json_shapes():
    p = query.parse_params([
        ("Action", "SendMessageBatch"), ("QueueUrl", "u"),
        ("SendMessageBatchRequestEntry.2.Id", "b"),
        ("SendMessageBatchRequestEntry.2.MessageBody", "two"),
        ("SendMessageBatchRequestEntry.1.Id", "a"),
        ("SendMessageBatchRequestEntry.1.MessageBody", "one"),
        ("SendMessageBatchRequestEntry.1.DelaySeconds", "5"),
        ("SendMessageBatchRequestEntry.1.MessageAttribute.1.Name", "k"),
        ("SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType", "Binary"),
        ("SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.BinaryValue", "AAE="),
    ])
    assert p["Entries"] == [
        {"Id": "a", "MessageBody": "one", "DelaySeconds": "5",
         "MessageAttributes": {"k": {"DataType": "Binary", "BinaryValue": "AAE="}}},
        {"Id": "b", "MessageBody": "two"}]
    p = query.parse_params([("Attribute.1.Name", "A"), ("Attribute.1.Value", "1"),
                            ("Tag.1.Key", "t"), ("Tag.1.Value", "v"), ("TagKey.1", "x"),
                            ("AttributeName.2", "B"), ("AttributeName.1", "A"),
                            ("AWSAccountId.1", "111122223333"), ("ActionName.1", "SendMessage")])
    assert p == {"Attributes": {"A": "1"}, "Tags": {"t": "v"}, "TagKeys": ["x"],
                 "AttributeNames": ["A", "B"], "AWSAccountIds": ["111122223333"],
                 "Actions": ["SendMessage"]}


def test_query_params_are_bounded():
    with pytest.raises(InvalidParameter):
        query.parse_params([("AttributeName.0", "x")])
    with pytest.raises(InvalidParameter):
        query.parse_params([("AttributeName.1001", "x")])
    with pytest.raises(InvalidParameter):
        query.parse_params([(f"K{i}", "v") for i in range(query.PARAMS_COUNT_MAX + 1)])
    with pytest.raises(InvalidParameter):
        query.parse_params([("A", "x"), ("A.B", "y")])


def test_xml_rendering_of_results():
    xml = query.render_xml("ReceiveMessage", {"Messages": [{
        "MessageId": "m", "Body": "a<b>&\r\n", "Attributes": {"SentTimestamp": "1"},
        "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}}]}, "rid")
    root = ET.fromstring(xml)
    msg = root.find(f"{NS}ReceiveMessageResult/{NS}Message")
    assert msg.find(f"{NS}Body").text == "a<b>&\r\n"
    assert msg.find(f"{NS}Attribute/{NS}Name").text == "SentTimestamp"
    assert msg.find(f"{NS}MessageAttribute/{NS}Value/{NS}StringValue").text == "v"
    assert root.find(f"{NS}ResponseMetadata/{NS}RequestId").text == "rid"
    batch = ET.fromstring(query.render_xml("DeleteMessageBatch", {
        "Successful": [{"Id": "a"}],
        "Failed": [{"Id": "b", "SenderFault": True, "Code": "C", "Message": "M"}]}, "r"))
    res = batch.find(f"{NS}DeleteMessageBatchResult")
    assert res.find(f"{NS}DeleteMessageBatchResultEntry/{NS}Id").text == "a"
    assert res.find(f"{NS}BatchResultErrorEntry/{NS}SenderFault").text == "true"
    empty = ET.fromstring(query.render_xml("DeleteQueue", {}, "r"))
    assert empty.find(f"{NS}DeleteQueueResult") is None


@pytest.mark.parametrize("text,ok", [
    ("plain", True), ("\t\n\r", True), ("\ud7ff\ue000\ufffd\U0010ffff", True),
    ("\x00", False), ("\x08", False), ("\x1f", False), ("\ufffe", False), ("\uffff", False),
    ("\ud800", False),
])
def test_body_character_set(text, ok):
    if ok:
        messages.check_text(text)
    else:
        with pytest.raises(InvalidMessageContents):
            messages.check_text(text)


def test_message_attribute_rules():
    got = messages.parse_attributes({
        "s": {"DataType": "String.json", "StringValue": "{}"},
        "n": {"DataType": "Number", "StringValue": "1e5"},
        "b": {"DataType": "Binary", "BinaryValue": "AAH/"}})
    assert got["b"] == MessageAttribute("Binary", binary_value=b"\x00\x01\xff")
    assert got["s"] == MessageAttribute("String.json", string_value="{}")
    bad = [
        {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)},
        {"bad name": {"DataType": "String", "StringValue": "v"}},
        {".lead": {"DataType": "String", "StringValue": "v"}},
        {"a..b": {"DataType": "String", "StringValue": "v"}},
        {"amazon.x": {"DataType": "String", "StringValue": "v"}},
        {"a": {"DataType": "Text", "StringValue": "v"}},
        {"a": {"StringValue": "v"}},
        {"a": {"DataType": "String"}},
        {"a": {"DataType": "Number", "StringValue": "NaN"}},
        {"a": {"DataType": "Number", "StringValue": "1" * 39}},
        {"a": {"DataType": "Binary", "BinaryValue": "not base64!"}},
    ]
    for raw in bad:
        with pytest.raises(InvalidParameter):
            messages.parse_attributes(raw)
    with pytest.raises(InvalidMessageContents):
        messages.parse_attributes({"a": {"DataType": "String", "StringValue": "\x00"}})


def test_attribute_selection():
    attrs = {n: MessageAttribute("String", string_value=n) for n in ("a.x", "a.y", "ab", "b")}
    assert set(messages.select_message_attributes(attrs, ["All"])) == set(attrs)
    assert set(messages.select_message_attributes(attrs, ["a.*"])) == {"a.x", "a.y"}
    assert set(messages.select_message_attributes(attrs, ["b", "zz"])) == {"b"}
    assert messages.select_message_attributes(attrs, []) == {}
    system = {"SentTimestamp": "1", "ApproximateReceiveCount": "2", "SenderId": "s"}
    assert messages.select_system_attributes(system, ["All"]) == system
    assert messages.select_system_attributes(system, ["SenderId"]) == {"SenderId": "s"}
    with pytest.raises(QnodeError) as info:
        messages.select_system_attributes(system, ["Nope"])
    assert info.value.code is ErrorCode.INVALID_ATTRIBUTE_NAME


def test_queue_urls_and_arns():
    assert urls.queue_url("http", "h:1", "000000000000", "q") == "http://h:1/000000000000/q"
    assert urls.name_from_url("http://other:9/000000000000/q", "000000000000") == "q"
    assert urls.name_from_url("/000000000000/q", "000000000000") == "q"
    with pytest.raises(QueueDoesNotExist):
        urls.name_from_url("http://h/123456789012/q", "000000000000")
    with pytest.raises(MissingParameter):
        urls.name_from_url("", "000000000000")
    assert urls.name_from_arn("arn:aws:sqs:eu-west-1:000000000000:q", "000000000000") == "q"
    with pytest.raises(InvalidParameter):
        urls.name_from_arn("arn:aws:sns:eu-west-1:000000000000:q", "000000000000")


def test_error_rendering_carries_both_sqs_vocabularies():
    assert shape_name("AWS.SimpleQueueService.NonExistentQueue") == "QueueDoesNotExist"
    assert shape_name("QueueAlreadyExists") == "QueueNameExists"
    assert shape_name("AWS.SimpleQueueService.PurgeQueueInProgress") == "PurgeQueueInProgress"
    r = render_json(QueueDoesNotExist("gone"), "rid")
    assert r.status == 400
    assert json.loads(r.body) == {"__type": "com.amazonaws.sqs#QueueDoesNotExist",
                                  "message": "gone"}
    assert r.headers["x-amzn-query-error"] == "AWS.SimpleQueueService.NonExistentQueue;Sender"
    x = render_xml(PurgeQueueInProgress("soon"), "rid")
    assert x.status == 403
    root = ET.fromstring(x.body)
    assert root.find(f"{NS}Error/{NS}Code").text == "AWS.SimpleQueueService.PurgeQueueInProgress"
