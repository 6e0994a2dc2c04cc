"""Message-level rules of the SQS gateway: the body character set, message attributes
(parse + validate, JSON shape <-> `MessageAttribute`), and attribute-name selection on receive.

SQS bodies and string attribute values are text limited to
#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF; anything else is
InvalidMessageContents. Attribute rules follow the SQS developer guide ("Amazon SQS message
attributes"): at most 10, names 1..256 of [A-Za-z0-9_.-] without a leading/trailing/double '.'
and not starting with `AWS.`/`Amazon.`, types String|Number|Binary with an optional `.label`.
Pure functions; bad input raises a typed QnodeError, never anything else.
"""

from __future__ import annotations

import base64
import binascii
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping

from qnode import limits
from qnode.frontend.api import MessageAttribute
from qnode.protocol.errors import (InvalidAttributeName, InvalidMessageContents,
                                   InvalidParameter, MissingParameter)

_BAD_CHARS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ATTR_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,256}")
_TYPE = re.compile(r"(String|Number|Binary)(\.[^\s]{1,255})?")
ATTR_NAME_LENGTH_MAX = 256
NUMBER_DIGITS_MAX = 38

SYSTEM_ATTRIBUTE_NAMES = (
    "SenderId", "SentTimestamp", "ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp",
    "SequenceNumber", "MessageDeduplicationId", "MessageGroupId", "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)
# ReceiveMessage's AttributeNames is modelled as the queue-attribute enum: SQS accepts those
# names there and returns nothing for them.
_IGNORED_NAMES = frozenset((
    "Policy", "VisibilityTimeout", "MaximumMessageSize", "MessageRetentionPeriod",
    "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "CreatedTimestamp",
    "LastModifiedTimestamp", "QueueArn", "ApproximateNumberOfMessagesDelayed", "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds", "RedrivePolicy", "FifoQueue", "ContentBasedDeduplication",
    "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "DeduplicationScope",
    "FifoThroughputLimit", "RedriveAllowPolicy", "SqsManagedSseEnabled",
))


def check_text(text: str, what: str = "message body") -> None:
    """Raise InvalidMessageContents if `text` has a character SQS refuses."""
    bad = _BAD_CHARS.search(text)
    if bad is not None:
        raise InvalidMessageContents(
            f"Invalid characters found in the {what}. Character #x{ord(bad.group()):X} is not "
            "allowed (allowed: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | "
            "#x10000 to #x10FFFF).")


def encode_body(body: Any) -> bytes:
    """Validate an SQS MessageBody and return its UTF-8 bytes."""
    if body is None or body == "":
        raise MissingParameter("The request must contain the parameter MessageBody.")
    if not isinstance(body, str):
        raise InvalidParameter("MessageBody must be a string.")
    check_text(body)
    return body.encode("utf-8")


def _check_attr_name(name: str, system: bool) -> None:
    if not isinstance(name, str) or not _ATTR_NAME.fullmatch(name):
        raise InvalidParameter(f"Message attribute name '{name}' is invalid: use 1 to 256 of "
                               "A-Z, a-z, 0-9, underscore, hyphen and period.")
    if name.startswith(".") or name.endswith(".") or ".." in name:
        raise InvalidParameter(f"Message attribute name '{name}' is invalid: a period may not "
                               "start or end a name, nor follow another period.")
    if not system and name.lower().startswith(("aws.", "amazon.")):
        raise InvalidParameter(f"Message attribute name '{name}' is invalid: the prefixes "
                               "'AWS.' and 'Amazon.' are reserved.")


def _decode_b64(value: Any, name: str) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameter(f"The binary value of message attribute '{name}' is not "
                               "valid base64.") from None


def parse_attributes(raw: Any, *, system: bool = False) -> dict[str, MessageAttribute]:
    """JSON-shaped `MessageAttributes` (name -> {DataType, StringValue|BinaryValue}) to
    `MessageAttribute`s. Raises InvalidParameter / InvalidMessageContents."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidParameter("MessageAttributes must be a map.")
    if len(raw) > limits.message_attributes_count_max:
        raise InvalidParameter(f"Number of message attributes [{len(raw)}] exceeds the allowed "
                               f"maximum [{limits.message_attributes_count_max}].")
    out: dict[str, MessageAttribute] = {}
    for name, value in raw.items():
        _check_attr_name(name, system)
        if system and name != "AWSTraceHeader":
            raise InvalidParameter(f"Message system attribute name '{name}' is invalid.")
        if not isinstance(value, Mapping):
            raise InvalidParameter(f"The message attribute '{name}' must be a map.")
        data_type = value.get("DataType")
        if not data_type:
            raise InvalidParameter(f"The message attribute '{name}' must contain non-empty "
                                   "message attribute type.")
        if not _TYPE.fullmatch(str(data_type)):
            raise InvalidParameter(f"The type of message (user) attribute '{name}' is invalid. "
                                   "You must use only the following supported type prefixes: "
                                   "Binary, Number, String.")
        if value.get("StringListValues") or value.get("BinaryListValues"):
            raise InvalidParameter(f"Message attribute '{name}': list values are not supported.")
        if data_type.startswith("Binary"):
            blob = value.get("BinaryValue")
            if blob is None or blob == "":
                raise InvalidParameter(f"The message attribute '{name}' with type 'Binary' must "
                                       "use field 'Binary'.")
            out[name] = MessageAttribute(data_type, binary_value=_decode_b64(blob, name))
            continue
        text = value.get("StringValue")
        if text is None or text == "" or not isinstance(text, str):
            raise InvalidParameter(f"The message attribute '{name}' must contain non-empty "
                                   f"message attribute value for message attribute type "
                                   f"'{data_type.split('.')[0]}'.")
        check_text(text, f"message attribute '{name}'")
        if data_type.startswith("Number"):
            _check_number(name, text)
        if system and data_type != "String":
            raise InvalidParameter("The message system attribute 'AWSTraceHeader' must be of "
                                   "type String.")
        out[name] = MessageAttribute(data_type, string_value=text)
    return out


def _check_number(name: str, text: str) -> None:
    try:
        number = Decimal(text.strip())
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise InvalidParameter(f"Can't cast the value of message (user) attribute '{name}' "
                               "to a number.")
    digits = number.as_tuple().digits
    if len(digits) > NUMBER_DIGITS_MAX or not (Decimal("-1e128") <= number <= Decimal("1e126")):
        raise InvalidParameter(f"Value of message (user) attribute '{name}' is out of range "
                               "(up to 38 digits, -10^128 to 10^126).")


def attributes_size(attrs: Mapping[str, MessageAttribute]) -> int:
    """Bytes SQS counts toward the message size: name + type + value of each attribute."""
    total = 0
    for name, attr in attrs.items():
        total += len(name.encode()) + len(attr.data_type.encode())
        if attr.binary_value is not None:
            total += len(attr.binary_value)
        else:
            total += len((attr.string_value or "").encode())
    return total


def render_attributes(attrs: Mapping[str, MessageAttribute]) -> dict[str, dict]:
    """`MessageAttribute`s to the JSON shape (BinaryValue base64)."""
    out: dict[str, dict] = {}
    for name, attr in attrs.items():
        if attr.binary_value is not None:
            out[name] = {"DataType": attr.data_type,
                         "BinaryValue": base64.b64encode(attr.binary_value).decode()}
        else:
            out[name] = {"DataType": attr.data_type, "StringValue": attr.string_value or ""}
    return out


def select_message_attributes(attrs: Mapping[str, MessageAttribute],
                              selectors: Iterable[str]) -> dict[str, MessageAttribute]:
    """SQS MessageAttributeNames: `All` or `.*` selects all, `prefix.*` names starting with
    `prefix.`, anything else an exact name. No selectors: none."""
    sel = list(selectors)
    if not sel or not attrs:
        return {}
    if "All" in sel or ".*" in sel:
        return dict(attrs)
    prefixes = tuple(s[:-1] for s in sel if s.endswith(".*"))
    exact = {s for s in sel if not s.endswith(".*")}
    return {n: a for n, a in attrs.items() if n in exact or (prefixes and n.startswith(prefixes))}


def select_system_attributes(system: Mapping[str, str], selectors: Iterable[str]) -> dict[str, str]:
    """SQS AttributeNames / MessageSystemAttributeNames. Unknown names: InvalidAttributeName."""
    sel = list(selectors)
    for name in sel:
        if name != "All" and name not in SYSTEM_ATTRIBUTE_NAMES and name not in _IGNORED_NAMES:
            raise InvalidAttributeName(f"Unknown Attribute {name}.")
    if not sel:
        return {}
    if "All" in sel:
        return {k: v for k, v in system.items() if k in SYSTEM_ATTRIBUTE_NAMES}
    return {k: system[k] for k in sel if k in system}
