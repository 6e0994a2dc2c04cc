"""Conversions at the client's edge: user values (seconds, Python types) <-> wire values.

Owns: seconds -> ms, snake_case queue kwargs -> SQS attribute names, Python message attribute
values <-> `MessageAttribute`, and `deliver_at` (datetime or epoch seconds) -> epoch ms.
Pure functions; bad input raises `InvalidParameter` (a QnodeError) before anything is sent.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from typing import Any, Mapping

from qnode.frontend.api import MessageAttribute
from qnode.protocol.errors import InvalidParameter

# snake_case keyword -> (SQS attribute name, kind). kind: "s" seconds, "i" int, "b" bool,
# "j" JSON document (dict/list serialised), "t" text.
QUEUE_KWARGS: dict[str, tuple[str, str]] = {
    "visibility_timeout": ("VisibilityTimeout", "s"),
    "delay": ("DelaySeconds", "s"),
    "delay_seconds": ("DelaySeconds", "s"),
    "retention": ("MessageRetentionPeriod", "s"),
    "message_retention_period": ("MessageRetentionPeriod", "s"),
    "receive_wait_time": ("ReceiveMessageWaitTimeSeconds", "s"),
    "receive_message_wait_time": ("ReceiveMessageWaitTimeSeconds", "s"),
    "max_message_size": ("MaximumMessageSize", "i"),
    "maximum_message_size": ("MaximumMessageSize", "i"),
    "fifo": ("FifoQueue", "b"),
    "fifo_queue": ("FifoQueue", "b"),
    "content_based_deduplication": ("ContentBasedDeduplication", "b"),
    "deduplication_scope": ("DeduplicationScope", "t"),
    "fifo_throughput_limit": ("FifoThroughputLimit", "t"),
    "redrive_policy": ("RedrivePolicy", "j"),
    "redrive_allow_policy": ("RedriveAllowPolicy", "j"),
    "policy": ("Policy", "j"),
    "kms_master_key_id": ("KmsMasterKeyId", "t"),
    "kms_data_key_reuse_period": ("KmsDataKeyReusePeriodSeconds", "s"),
    "sqs_managed_sse_enabled": ("SqsManagedSseEnabled", "b"),
}


def seconds_to_ms(value: Any, name: str) -> int:
    """Seconds (int or float) to whole milliseconds; rejects negatives, NaN and non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidParameter(f"{name} must be a number of seconds")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidParameter(f"{name} must be finite")
    if value < 0:
        raise InvalidParameter(f"{name} must not be negative")
    return int(round(value * 1000))


def opt_seconds_to_ms(value: Any, name: str) -> int | None:
    return None if value is None else seconds_to_ms(value, name)


def _camel(snake: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in snake.split("_"))


def _render(value: Any, kind: str, key: str) -> str:
    if kind == "b" or isinstance(value, bool):
        if not isinstance(value, bool):
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower()
            raise InvalidParameter(f"{key} must be a boolean")
        return "true" if value else "false"
    if kind == "j" and not isinstance(value, str):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, str):
        return value
    if kind == "s":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value)
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    raise InvalidParameter(f"{key}: unsupported value type {type(value).__name__}")


def queue_attributes(kwargs: Mapping[str, Any], raw: Mapping[str, str] | None = None) -> dict[str, str]:
    """SQS attribute dict from snake_case kwargs (seconds) merged over `raw` SQS names."""
    out: dict[str, str] = {}
    if raw:
        for k, v in raw.items():
            if not isinstance(k, str):
                raise InvalidParameter("attribute names must be strings")
            out[k] = _render(v, "t", k)
    for key, value in kwargs.items():
        if value is None:
            continue
        name, kind = QUEUE_KWARGS.get(key, (_camel(key), "t"))
        out[name] = _render(value, kind, key)
    return out


# --- message attributes ------------------------------------------------------------------------
def to_message_attribute(name: str, value: Any) -> MessageAttribute:
    if isinstance(value, MessageAttribute):
        return value
    if isinstance(value, bool):
        return MessageAttribute("String", "true" if value else "false")
    if isinstance(value, str):
        return MessageAttribute("String", value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return MessageAttribute("Binary", binary_value=bytes(value))
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidParameter(f"attribute {name!r} must be finite")
        return MessageAttribute("Number", repr(value) if isinstance(value, float) else str(value))
    raise InvalidParameter(f"attribute {name!r}: unsupported type {type(value).__name__}")


def message_attributes(attrs: Mapping[str, Any] | None) -> dict[str, MessageAttribute]:
    if not attrs:
        return {}
    return {k: to_message_attribute(k, v) for k, v in attrs.items()}


def from_message_attribute(attr: MessageAttribute) -> Any:
    """Plain Python value: String* -> str, Number* -> int or float, Binary* -> bytes."""
    base = attr.data_type.split(".", 1)[0]
    if base == "Binary":
        return attr.binary_value
    if base == "Number" and attr.string_value is not None:
        try:
            return int(attr.string_value)
        except ValueError:
            try:
                return float(attr.string_value)
            except ValueError:
                return attr.string_value
    return attr.string_value if attr.string_value is not None else attr.binary_value


def deliver_at_ms(value: Any) -> int | None:
    """Epoch ms from a timezone-aware datetime or epoch seconds; None stays None."""
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            raise InvalidParameter("deliver_at must be timezone-aware")
        return int(value.timestamp() * 1000)
    return seconds_to_ms(value, "deliver_at")


def body_bytes(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytearray, memoryview)):
        return bytes(body)
    raise InvalidParameter(f"a message body must be bytes or str, not {type(body).__name__}")
