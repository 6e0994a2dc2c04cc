"""Wire shapes of the queue API's values (frontend/api.py dataclasses) inside request args and
results. Both the server (dispatch) and the client use these, so the two never drift.

Owns: dict <-> dataclass conversion for MessageAttribute, SendEntry, SendResult,
ReceivedMessage, QueueInfo and MoveTask. `*_from_wire` validates types and raises a typed
QnodeError (InvalidParameter, InvalidAttributeValue, ...) for bad input; it never crashes on any
msgpack-decodable value. Optional fields that are None are left out of the wire dict.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

from qnode import limits
from qnode.frontend.api import MessageAttribute, MoveTask, QueueInfo, ReceivedMessage, SendEntry, SendResult
from qnode.protocol.errors import (
    InvalidAttributeName, InvalidAttributeValue, InvalidParameter, MissingParameter, QnodeError,
    error_from_wire,
)

_NO_ATTRIBUTES: Mapping = MappingProxyType({})   # shared by entries without attributes
ATTRIBUTE_NAME_LENGTH_MAX = 256
ATTRIBUTE_TYPE_LENGTH_MAX = 256
SHORT_STRING_LENGTH_MAX = 1024     # ids, receipts, group ids, reasons


def _opt_str(d: Mapping, key: str, length_max: int = SHORT_STRING_LENGTH_MAX) -> str | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, str) or len(v) > length_max:
        raise InvalidParameter(f"{key} must be a string of at most {length_max} characters")
    return v


def _opt_int(d: Mapping, key: str, lo: int, hi: int) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    if type(v) is not int or not lo <= v <= hi:
        raise InvalidParameter(f"{key} must be an integer in {lo}..{hi}")
    return v


# --- message attributes ------------------------------------------------------------------------
def attribute_to_wire(attr: MessageAttribute) -> dict:
    d: dict[str, Any] = {"data_type": attr.data_type}
    if attr.string_value is not None:
        d["string_value"] = attr.string_value
    if attr.binary_value is not None:
        d["binary_value"] = attr.binary_value
    return d


def attribute_from_wire(name: Any, d: Any) -> MessageAttribute:
    if not isinstance(name, str) or not 0 < len(name) <= ATTRIBUTE_NAME_LENGTH_MAX:
        raise InvalidAttributeName("attribute names are 1..256 characters")
    if not isinstance(d, dict):
        raise InvalidAttributeValue(f"attribute {name!r} must be a map")
    data_type = d.get("data_type")
    if not isinstance(data_type, str) or not 0 < len(data_type) <= ATTRIBUTE_TYPE_LENGTH_MAX:
        raise InvalidAttributeValue(f"attribute {name!r} needs a data_type")
    s = d.get("string_value")
    b = d.get("binary_value")
    if s is not None and not isinstance(s, str):
        raise InvalidAttributeValue(f"attribute {name!r}: string_value must be a string")
    if b is not None and not isinstance(b, bytes):
        raise InvalidAttributeValue(f"attribute {name!r}: binary_value must be bytes")
    if (s is None) == (b is None):
        raise InvalidAttributeValue(f"attribute {name!r} needs exactly one of string_value, binary_value")
    return MessageAttribute(data_type, s, b)


def attributes_to_wire(attrs: Mapping[str, MessageAttribute]) -> dict:
    return {k: attribute_to_wire(v) for k, v in attrs.items()}


def attributes_from_wire(d: Any, count_max: int = limits.message_attributes_count_max
                         ) -> dict[str, MessageAttribute]:
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise InvalidParameter("attributes must be a map")
    if len(d) > count_max:
        raise InvalidParameter(f"at most {count_max} message attributes are allowed")
    return {k: attribute_from_wire(k, v) for k, v in d.items()}


# --- send --------------------------------------------------------------------------------------
def send_entry_to_wire(e: SendEntry) -> dict:
    d: dict[str, Any] = {"body": e.body}
    if e.delay_ms is not None:
        d["delay_ms"] = e.delay_ms
    if e.attributes:
        d["attributes"] = attributes_to_wire(e.attributes)
    if e.system_attributes:
        d["system_attributes"] = attributes_to_wire(e.system_attributes)
    for key in ("group_id", "dedup_id", "deliver_at_ms", "entry_id"):
        v = getattr(e, key)
        if v is not None:
            d[key] = v
    return d


def send_entry_from_wire(d: Any) -> SendEntry:
    if type(d) is dict and len(d) == 2:
        # What clients send for a plain body: {"body": bytes, "entry_id": str}. The same
        # checks as below, without the lookups of the absent options.
        body = d.get("body")
        entry_id = d.get("entry_id")
        if type(body) is bytes and type(entry_id) is str and len(entry_id) <= 80:
            return SendEntry(body, None, _NO_ATTRIBUTES, None, None, None, entry_id, _NO_ATTRIBUTES)
    if not isinstance(d, dict):
        raise InvalidParameter("a send entry must be a map")
    body = d.get("body")
    if body is None:
        raise MissingParameter("a send entry needs a body")
    if isinstance(body, str):
        body = body.encode()
    if not isinstance(body, bytes):
        raise InvalidParameter("body must be bytes")
    return SendEntry(
        body=body,
        delay_ms=_opt_int(d, "delay_ms", 0, limits.retention_ms_max),   # native: up to retention
        attributes=attributes_from_wire(d.get("attributes")),
        group_id=_opt_str(d, "group_id", 128),
        dedup_id=_opt_str(d, "dedup_id", 128),
        deliver_at_ms=_opt_int(d, "deliver_at_ms", 0, 2**62),
        entry_id=_opt_str(d, "entry_id", 80),
        system_attributes=attributes_from_wire(d.get("system_attributes")),
    )


def send_result_to_wire(r: SendResult | QnodeError) -> dict:
    if isinstance(r, QnodeError):
        return {"error": r.to_wire()}
    d: dict[str, Any] = {"message_id": r.message_id}
    if r.md5_attributes is not None:
        d["md5_attributes"] = r.md5_attributes
    if r.md5_system_attributes is not None:
        d["md5_system_attributes"] = r.md5_system_attributes
    if r.sequence_number is not None:
        d["sequence_number"] = r.sequence_number
    if r.entry_id is not None:
        d["entry_id"] = r.entry_id
    if r.duplicate:
        d["duplicate"] = True
    return d


def send_result_from_wire(d: Mapping) -> SendResult | QnodeError:
    if "error" in d:
        return error_from_wire(d["error"])
    return SendResult(
        message_id=d["message_id"], md5_attributes=d.get("md5_attributes"),
        md5_system_attributes=d.get("md5_system_attributes"),
        sequence_number=d.get("sequence_number"), entry_id=d.get("entry_id"),
        duplicate=bool(d.get("duplicate", False)))


def outcome_to_wire(r: None | QnodeError) -> dict | None:
    """One slot of a delete / change_visibility batch: None (ok) or {"error": ...}."""
    return None if r is None else {"error": r.to_wire()}


def outcome_from_wire(d: Any) -> None | QnodeError:
    return None if d is None else error_from_wire(d["error"])


# --- receive -----------------------------------------------------------------------------------
def received_to_wire(m: ReceivedMessage) -> dict:
    # `system` goes out as it is: msgpack only reads it (the engine builds one per message).
    return {
        "message_id": m.message_id, "receipt": m.receipt, "body": m.body,
        "md5_attributes": m.md5_attributes,
        "attributes": attributes_to_wire(m.attributes) if m.attributes else {},
        "system": m.system,
    }


def received_from_wire(d: Mapping) -> ReceivedMessage:
    return ReceivedMessage(
        message_id=d["message_id"], receipt=d.get("receipt"), body=d["body"],
        md5_attributes=d.get("md5_attributes"),
        attributes={k: attribute_from_wire(k, v) for k, v in (d.get("attributes") or {}).items()},
        system=dict(d.get("system") or {}))


# --- queues and move tasks ---------------------------------------------------------------------
def queue_info_to_wire(q: QueueInfo) -> dict:
    return {"queue": q.name, "attributes": dict(q.attributes), "tags": dict(q.tags)}


def queue_info_from_wire(d: Mapping) -> QueueInfo:
    return QueueInfo(d["queue"], dict(d.get("attributes") or {}), dict(d.get("tags") or {}))


_MOVE_TASK_FIELDS = ("task_handle", "status", "source_arn", "destination_arn", "max_per_second",
                     "moved_count", "to_move_count", "started_timestamp_ms", "failure_reason")


def move_task_to_wire(t: MoveTask) -> dict:
    return {k: getattr(t, k) for k in _MOVE_TASK_FIELDS}


def move_task_from_wire(d: Mapping) -> MoveTask:
    return MoveTask(**{k: d.get(k) for k in _MOVE_TASK_FIELDS})
