"""SQS queue attributes: names, defaults, ranges and validation, plus message-attribute rules.

Owns: which attribute names exist, which are settable, their defaults and ranges, and the
normalised string form we store. Queue attributes are stored as SQS sends them (a str -> str
map); `effective()` merges the defaults in. Everything here is pure: bad input raises a typed
`QnodeError` (InvalidAttributeName / InvalidAttributeValue / InvalidParameter), never crashes.
"""

from __future__ import annotations

import json
import re
from typing import Mapping, Sequence

from qnode import limits
from qnode.frontend.api import MessageAttribute
from qnode.protocol.errors import (
    InvalidAttributeName,
    InvalidAttributeValue,
    InvalidParameter,
    InvalidQueueName,
    MissingParameter,
)

DURABILITY = "qnode:Durability"
DURABILITY_VALUES = ("fsync", "interval", "memory")
REDELIVERY_BACKOFF = "qnode:RedeliveryBackoff"

# name -> (min, max) for integer attributes, in the unit SQS uses (seconds or bytes)
_INT_RANGES: dict[str, tuple[int, int]] = {
    "DelaySeconds": (0, limits.delay_ms_max // 1000),
    "MaximumMessageSize": (1024, limits.message_size_max),
    "MessageRetentionPeriod": (limits.retention_ms_min // 1000, limits.retention_ms_max // 1000),
    "ReceiveMessageWaitTimeSeconds": (0, limits.wait_ms_max // 1000),
    "VisibilityTimeout": (0, limits.visibility_timeout_ms_max // 1000),
    "KmsDataKeyReusePeriodSeconds": (60, 86400),
}
_BOOL = ("true", "false")
_ENUMS: dict[str, tuple[str, ...]] = {
    "FifoQueue": _BOOL,
    "ContentBasedDeduplication": _BOOL,
    "SqsManagedSseEnabled": _BOOL,
    "DeduplicationScope": ("messageGroup", "queue"),
    "FifoThroughputLimit": ("perQueue", "perMessageGroupId"),
    DURABILITY: DURABILITY_VALUES,
}
_FREE = ("Policy", "RedrivePolicy", "RedriveAllowPolicy", "KmsMasterKeyId", REDELIVERY_BACKOFF)
FIFO_ONLY = ("ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit")
SETTABLE = frozenset(_INT_RANGES) | frozenset(_ENUMS) | frozenset(_FREE)
READ_ONLY = frozenset({
    "QueueArn", "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed", "CreatedTimestamp", "LastModifiedTimestamp",
})
ALL_NAMES = SETTABLE | READ_ONLY

DEFAULTS: dict[str, str] = {
    "DelaySeconds": "0",
    "MaximumMessageSize": str(limits.message_size_max),
    "MessageRetentionPeriod": str(limits.retention_ms_default // 1000),
    "ReceiveMessageWaitTimeSeconds": "0",
    "VisibilityTimeout": str(limits.visibility_timeout_ms_default // 1000),
    "SqsManagedSseEnabled": "false",
    DURABILITY: "fsync",
}
FIFO_DEFAULTS: dict[str, str] = {
    "FifoQueue": "true",
    "ContentBasedDeduplication": "false",
    "DeduplicationScope": "queue",
    "FifoThroughputLimit": "perQueue",
}

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_MSG_ATTR_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,256}$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_BATCH_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_DEDUP_ID = re.compile(r"^[\x21-\x7e]{1,128}$")


def validate_queue_name(name: str, fifo: bool) -> None:
    base = name[:-5] if name.endswith(".fifo") else name
    if not isinstance(name, str) or len(name) > limits.queue_name_length_max or not _QUEUE_NAME.match(base):
        raise InvalidQueueName(f"invalid queue name {name!r}")
    if fifo != name.endswith(".fifo"):
        raise InvalidParameter("FIFO queue names must end in .fifo and need FifoQueue=true")


def validate_batch_entry_id(entry_id: str) -> bool:
    return bool(_BATCH_ID.match(entry_id))


def validate_group_or_dedup_id(value: str, what: str) -> None:
    if not _DEDUP_ID.match(value):
        raise InvalidParameter(f"{what} must be 1..128 printable ASCII characters")


def parse_backoff(value: str) -> tuple[int, ...]:
    """`qnode:RedeliveryBackoff` "1,5,30" (seconds) -> delays in ms, one per receive count."""
    try:
        steps = tuple(int(float(part) * 1000) for part in value.split(",") if part.strip())
    except ValueError:
        raise InvalidAttributeValue(f"{REDELIVERY_BACKOFF} must be comma-separated seconds") from None
    if not steps or len(steps) > 32 or any(s < 0 or s > limits.visibility_timeout_ms_max for s in steps):
        raise InvalidAttributeValue(f"{REDELIVERY_BACKOFF} needs 1..32 steps of 0..43200 s")
    return steps


def parse_redrive_policy(value: str) -> tuple[str, int]:
    """RedrivePolicy JSON -> (deadLetterTargetArn, maxReceiveCount)."""
    try:
        doc = json.loads(value)
        arn = doc["deadLetterTargetArn"]
        count = int(doc["maxReceiveCount"])
    except (ValueError, TypeError, KeyError):
        raise InvalidAttributeValue("RedrivePolicy needs deadLetterTargetArn and maxReceiveCount") from None
    if not isinstance(arn, str) or not 1 <= count <= 1000:
        raise InvalidAttributeValue("RedrivePolicy maxReceiveCount must be 1..1000")
    return arn, count


def parse_redrive_allow_policy(value: str) -> tuple[str, tuple[str, ...]]:
    """RedriveAllowPolicy JSON -> (permission, sourceQueueArns)."""
    try:
        doc = json.loads(value)
        permission = doc["redrivePermission"]
        arns = tuple(doc.get("sourceQueueArns", ()))
    except (ValueError, TypeError, KeyError, AttributeError):
        raise InvalidAttributeValue("RedriveAllowPolicy needs redrivePermission") from None
    if permission not in ("allowAll", "denyAll", "byQueue"):
        raise InvalidAttributeValue("redrivePermission must be allowAll, denyAll or byQueue")
    if permission == "byQueue" and not 1 <= len(arns) <= 10:
        raise InvalidAttributeValue("byQueue needs 1..10 sourceQueueArns")
    if permission != "byQueue" and arns:
        raise InvalidAttributeValue("sourceQueueArns is only allowed with byQueue")
    return permission, arns


def normalise(attributes: Mapping[str, str], fifo: bool, creating: bool) -> dict[str, str]:
    """Validate settable attributes; returns the normalised map to store. Raises on any bad one."""
    out: dict[str, str] = {}
    for name, raw in attributes.items():
        if name in READ_ONLY or name not in SETTABLE:
            raise InvalidAttributeName(f"unknown or read-only attribute {name!r}")
        value = str(raw)
        if name in _INT_RANGES:
            lo, hi = _INT_RANGES[name]
            try:
                number = int(value)
            except ValueError:
                raise InvalidAttributeValue(f"{name} must be an integer") from None
            if not lo <= number <= hi:
                raise InvalidAttributeValue(f"{name} must be {lo}..{hi}")
            value = str(number)
        elif name in _ENUMS:
            if value not in _ENUMS[name]:
                raise InvalidAttributeValue(f"{name} must be one of {', '.join(_ENUMS[name])}")
        elif name in ("Policy",) and value:
            try:
                json.loads(value)
            except ValueError:
                raise InvalidAttributeValue("Policy must be a JSON document") from None
        elif name == "RedrivePolicy" and value:
            parse_redrive_policy(value)
        elif name == "RedriveAllowPolicy" and value:
            parse_redrive_allow_policy(value)
        elif name == REDELIVERY_BACKOFF and value:
            parse_backoff(value)
        if name in FIFO_ONLY and not fifo:
            raise InvalidAttributeName(f"{name} is only valid on FIFO queues")
        if name == "FifoQueue":
            if not creating:
                raise InvalidAttributeName("FifoQueue can only be set when the queue is created")
            if (value == "true") != fifo:
                raise InvalidParameter("FifoQueue=true needs a .fifo name and vice versa")
            if not fifo:
                continue  # FifoQueue=false on a standard queue: accepted, not stored (as SQS)
        out[name] = value
    return out


def effective(stored: Mapping[str, str], fifo: bool) -> dict[str, str]:
    merged = dict(DEFAULTS)
    if fifo:
        merged.update(FIFO_DEFAULTS)
    merged.update(stored)
    return merged


def validate_message_attributes(attributes: Mapping[str, MessageAttribute]) -> int:
    """Validate user message attributes as SQS does; returns their size in bytes (counts toward
    MaximumMessageSize). Raises InvalidParameter."""
    if len(attributes) > limits.message_attributes_count_max:
        raise InvalidParameter(f"at most {limits.message_attributes_count_max} message attributes")
    size = 0
    for name, attr in attributes.items():
        if not isinstance(name, str) or not _MSG_ATTR_NAME.match(name):
            raise InvalidParameter(f"invalid message attribute name {name!r}")
        lower = name.lower()
        if lower.startswith("aws.") or lower.startswith("amazon."):
            raise InvalidParameter("message attribute names may not start with AWS. or Amazon.")
        if name.startswith(".") or name.endswith(".") or ".." in name:
            raise InvalidParameter("message attribute names may not start/end with or repeat a period")
        size += len(name.encode()) + validate_attribute_value(name, attr)
    return size


def validate_attribute_value(name: str, attr: MessageAttribute) -> int:
    data_type = attr.data_type
    base, _, label = data_type.partition(".")
    if base not in ("String", "Number", "Binary") or len(data_type) > 256 or (_ and not label):
        raise InvalidParameter(f"message attribute {name!r} has invalid DataType {data_type!r}")
    if base == "Binary":
        if not attr.binary_value or attr.string_value is not None:
            raise InvalidParameter(f"message attribute {name!r} needs a non-empty BinaryValue")
        return len(data_type) + len(attr.binary_value)
    if not attr.string_value or attr.binary_value is not None:
        raise InvalidParameter(f"message attribute {name!r} needs a non-empty StringValue")
    if base == "Number":
        digits = attr.string_value.strip()
        if not _NUMBER.match(digits) or sum(c.isdigit() for c in digits) > 38 + 5:
            raise InvalidParameter(f"message attribute {name!r} is not a valid Number")
    return len(data_type) + len(attr.string_value.encode())


# --- Policy (AddPermission / RemovePermission) ------------------------------------------------

def policy_with_permission(policy_json: str | None, arn: str, label: str,
                           account_ids: Sequence[str], actions: Sequence[str]) -> str:
    """The queue's `Policy` attribute after SQS AddPermission: one statement per label.

    Raises MissingParameter when a field is empty, InvalidParameter when the label exists."""
    if not label or not account_ids or not actions:
        raise MissingParameter("Label, AWSAccountIds and Actions are required")
    policy = json.loads(policy_json or "null") or {
        "Version": "2012-10-17", "Id": f"{arn}/SQSDefaultPolicy", "Statement": []}
    if any(s.get("Sid") == label for s in policy.get("Statement", [])):
        raise InvalidParameter(f"permission label {label!r} already exists")
    principals = [f"arn:aws:iam::{a}:root" for a in account_ids]
    policy["Statement"].append({
        "Sid": label, "Effect": "Allow",
        "Principal": {"AWS": principals[0] if len(principals) == 1 else principals},
        "Action": [f"SQS:{a}" for a in actions] if len(actions) > 1 else f"SQS:{actions[0]}",
        "Resource": arn})
    return json.dumps(policy, separators=(",", ":"))


def policy_without_permission(policy_json: str | None, label: str) -> str:
    """The `Policy` attribute after SQS RemovePermission; "" when no statement is left.

    Raises InvalidParameter when the label does not exist."""
    policy = json.loads(policy_json or "null")
    if not policy or not any(s.get("Sid") == label for s in policy.get("Statement", [])):
        raise InvalidParameter(f"permission label {label!r} does not exist")
    policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != label]
    return json.dumps(policy, separators=(",", ":")) if policy["Statement"] else ""
