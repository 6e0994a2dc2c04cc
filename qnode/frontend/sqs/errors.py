"""How a `QnodeError` is reported by the SQS gateway, on both protocols.

Real SQS speaks two error vocabularies: the legacy query code (`AWS.SimpleQueueService.
NonExistentQueue`, `QueueAlreadyExists`) and the JSON protocol's shape name (`QueueDoesNotExist`,
`QueueNameExists`). `errors.info(code).sqs_name` holds the query code; `shape_name()` derives the
shape name. A JSON error reply carries both: `__type` = `com.amazonaws.sqs#<shape>` and the
header `x-amzn-query-error: <query code>;Sender|Receiver`, which is how botocore (service model
`awsQueryCompatible`) raises `client.exceptions.QueueDoesNotExist` while `Error.Code` reads
`AWS.SimpleQueueService.NonExistentQueue`, exactly as against AWS.

Gateway-only conditions with no wire code (`MissingAuthenticationToken`, `RequestEntityTooLarge`)
are `GatewayError`s, which carry their own SQS name and status.
Never puts a traceback or an internal exception's text on the wire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from xml.sax.saxutils import escape

from qnode.protocol.errors import ErrorCode, QnodeError, info

XMLNS = "http://queue.amazonaws.com/doc/2012-11-05/"
_PREFIX = "AWS.SimpleQueueService."
# Query codes whose JSON shape name is not simply the code without the prefix.
_SHAPES = {
    "AWS.SimpleQueueService.NonExistentQueue": "QueueDoesNotExist",
    "QueueAlreadyExists": "QueueNameExists",
}


def shape_name(query_code: str) -> str:
    """The JSON protocol `__type` shape name for a query error code."""
    if query_code in _SHAPES:
        return _SHAPES[query_code]
    if query_code.startswith(_PREFIX):
        return query_code[len(_PREFIX):]
    return query_code


class GatewayError(QnodeError):
    """An error only the HTTP gateway can hit; it names its SQS code and status itself."""

    def __init__(self, sqs_name: str, http_status: int, message: str, *,
                 code: ErrorCode = ErrorCode.INVALID_PARAMETER, sender_fault: bool = True) -> None:
        super().__init__(message, code=code)
        self.sqs_name = sqs_name
        self.http_status = http_status
        self.sender_fault = sender_fault


@dataclass(frozen=True, slots=True)
class Rendered:
    status: int
    content_type: str
    headers: dict[str, str]
    body: bytes


def describe(err: QnodeError) -> tuple[str, int, bool]:
    """(query code, HTTP status, sender fault) for an error."""
    if isinstance(err, GatewayError):
        return err.sqs_name, err.http_status, err.sender_fault
    i = info(err.code)
    return i.sqs_name, i.http_status, i.sender_fault


def batch_failure(entry_id: str, err: QnodeError) -> dict:
    """A batch `Failed` entry: Id, SenderFault, Code (query code, as SQS), Message."""
    code, _, sender = describe(err)
    return {"Id": entry_id, "SenderFault": sender, "Code": code, "Message": err.message}


def render_json(err: QnodeError, request_id: str) -> Rendered:
    code, status, sender = describe(err)
    body = json.dumps({"__type": f"com.amazonaws.sqs#{shape_name(code)}",
                       "message": err.message}).encode()
    headers = {"x-amzn-query-error": f"{code};{'Sender' if sender else 'Receiver'}",
               "x-amzn-RequestId": request_id}
    return Rendered(status, "application/x-amz-json-1.0", headers, body)


def render_xml(err: QnodeError, request_id: str) -> Rendered:
    code, status, sender = describe(err)
    body = (f'<?xml version="1.0"?><ErrorResponse xmlns="{XMLNS}"><Error>'
            f"<Type>{'Sender' if sender else 'Receiver'}</Type><Code>{escape(code)}</Code>"
            f"<Message>{escape(err.message)}</Message><Detail/></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>").encode()
    return Rendered(status, "text/xml", {"x-amzn-RequestId": request_id}, body)
