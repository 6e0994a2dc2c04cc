"""MD5 digests exactly as Amazon SQS computes them (MD5OfMessageBody, MD5OfMessageAttributes,
MD5OfMessageSystemAttributes), so that SDKs which verify them (the Java/Go SDKs, older botocore)
accept our replies.

Attribute digest (AWS SQS developer guide, "Calculating the MD5 message digest for message
attributes"): for each attribute in ascending name order, append
`len(name) u32be | name utf-8 | len(type) u32be | type utf-8 | transport u8 | len(value) u32be | value`
where transport is 1 for String/Number (value utf-8) and 2 for Binary (raw bytes); MD5 of the
whole buffer, lowercase hex. No attributes -> None (SQS omits the field).
Pure functions; never raises on valid `MessageAttribute`s.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Mapping

from qnode.frontend.api import MessageAttribute

_U32 = struct.Struct(">I")


def md5_of_body(body: bytes) -> str:
    return hashlib.md5(body, usedforsecurity=False).hexdigest()


def _lp(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


def md5_of_attributes(attributes: Mapping[str, MessageAttribute]) -> str | None:
    if not attributes:
        return None
    parts: list[bytes] = []
    for name in sorted(attributes):
        attr = attributes[name]
        parts.append(_lp(name.encode()))
        parts.append(_lp(attr.data_type.encode()))
        if attr.data_type.startswith("Binary"):
            parts.append(b"\x02")
            parts.append(_lp(attr.binary_value or b""))
        else:
            parts.append(b"\x01")
            parts.append(_lp((attr.string_value or "").encode()))
    return hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest()
