"""The client's edge conversions: seconds -> ms, snake_case queue kwargs -> SQS attribute
names, Python attribute values <-> MessageAttribute. Method: tables of inputs and outputs."""

from __future__ import annotations

import datetime as dt

import pytest

from qnode.client import values
from qnode.frontend.api import MessageAttribute
from qnode.protocol.errors import InvalidParameter


def test_seconds_to_ms():
    assert values.seconds_to_ms(20, "wait") == 20_000
    assert values.seconds_to_ms(0.25, "wait") == 250
    for bad in (-1, float("nan"), float("inf"), "5", True, None):
        with pytest.raises(InvalidParameter):
            values.seconds_to_ms(bad, "wait")


def test_queue_kwargs_map_to_sqs_names_and_strings():
    attrs = values.queue_attributes(
        {"visibility_timeout": 30, "delay": 5.0, "retention": 3600, "fifo": True,
         "content_based_deduplication": False, "redrive_policy": {"maxReceiveCount": 3, "deadLetterTargetArn": "a"},
         "durability": "interval", "max_message_size": 1024},
        {"ReceiveMessageWaitTimeSeconds": "10"})
    assert attrs == {
        "VisibilityTimeout": "30", "DelaySeconds": "5", "MessageRetentionPeriod": "3600",
        "FifoQueue": "true", "ContentBasedDeduplication": "false",
        "RedrivePolicy": '{"deadLetterTargetArn":"a","maxReceiveCount":3}',
        "Durability": "interval", "MaximumMessageSize": "1024", "ReceiveMessageWaitTimeSeconds": "10",
    }


def test_message_attribute_values_round_trip():
    cases = {"s": "text", "i": 42, "f": 1.5, "b": b"\x00\x01", "t": True}
    attrs = values.message_attributes(cases)
    assert attrs["s"] == MessageAttribute("String", "text")
    assert attrs["i"] == MessageAttribute("Number", "42")
    assert attrs["b"] == MessageAttribute("Binary", binary_value=b"\x00\x01")
    back = {k: values.from_message_attribute(v) for k, v in attrs.items()}
    assert back == {"s": "text", "i": 42, "f": 1.5, "b": b"\x00\x01", "t": "true"}
    assert values.from_message_attribute(MessageAttribute("Number.float", "2.5e3")) == 2500.0
    assert values.from_message_attribute(MessageAttribute("String.json", "{}")) == "{}"
    with pytest.raises(InvalidParameter):
        values.message_attributes({"x": object()})


def test_deliver_at_and_body():
    when = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    assert values.deliver_at_ms(when) == int(when.timestamp()) * 1000
    assert values.deliver_at_ms(1.5) == 1500
    with pytest.raises(InvalidParameter):
        values.deliver_at_ms(dt.datetime(2030, 1, 1))
    assert values.body_bytes("é") == "é".encode()
    with pytest.raises(InvalidParameter):
        values.body_bytes(5)
