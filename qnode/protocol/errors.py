"""Stable error codes of the qnode wire protocol, and the exceptions that carry them.

Rules (STYLE.md §2.5):
- A code's number and name never change and are never reused; `tests/unit/protocol/test_errors.py`
  freezes the table. Add new codes at the end of their range.
- Ranges: 1xxx bad request, 2xxx limits and throttling, 3xxx routing, 4xxx not found or conflict,
  5xxx internal.
- Callers test `err.code`, never message text. An error frame is
  `{code, message, retry_after_ms?, leader_hint?}`; never a traceback.
- `sqs_name` / `http_status` / `sender_fault` say how the SQS gateway reports the code, so that
  botocore raises the exception class real SQS would.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ErrorCode(IntEnum):
    # 1xxx: bad request (the caller must change the request)
    INVALID_PARAMETER = 1000
    MISSING_PARAMETER = 1001
    INVALID_QUEUE_NAME = 1002
    MESSAGE_TOO_LARGE = 1003
    INVALID_MESSAGE_CONTENTS = 1004
    INVALID_ATTRIBUTE_NAME = 1005
    INVALID_ATTRIBUTE_VALUE = 1006
    RECEIPT_HANDLE_IS_INVALID = 1007
    MESSAGE_NOT_INFLIGHT = 1008
    EMPTY_BATCH_REQUEST = 1009
    TOO_MANY_ENTRIES_IN_BATCH = 1010
    BATCH_ENTRY_IDS_NOT_DISTINCT = 1011
    INVALID_BATCH_ENTRY_ID = 1012
    BATCH_REQUEST_TOO_LONG = 1013
    UNSUPPORTED_VERSION = 1014
    PROTOCOL_ERROR = 1015
    UNSUPPORTED_OPERATION = 1016
    INVALID_SIGNATURE = 1017
    ACCESS_DENIED = 1018
    INVALID_CLIENT_TOKEN_ID = 1019
    REQUEST_EXPIRED = 1020
    UNKNOWN_OPERATION = 1021
    # 2xxx: limits and throttling (retriable unless noted)
    THROTTLED = 2000
    QUEUE_FULL = 2001
    OVER_LIMIT = 2002
    TOO_MANY_WAITERS = 2003
    FRAME_TOO_LARGE = 2004
    DISK_FULL = 2005
    PURGE_QUEUE_IN_PROGRESS = 2006
    BUSY = 2007
    # 3xxx: routing
    NOT_LEADER = 3000
    UNAVAILABLE = 3001
    SHUTTING_DOWN = 3002
    # 4xxx: not found or conflict
    QUEUE_DOES_NOT_EXIST = 4000
    QUEUE_ALREADY_EXISTS = 4001
    QUEUE_DELETED_RECENTLY = 4002
    RESOURCE_NOT_FOUND = 4003
    MESSAGE_NOT_FOUND = 4004
    # 5xxx: internal
    INTERNAL = 5000
    WAL_CORRUPTION = 5001
    TIMEOUT = 5002


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    retriable: bool
    description: str
    sqs_name: str
    http_status: int
    sender_fault: bool


_INFO: dict[ErrorCode, ErrorInfo] = {
    ErrorCode.INVALID_PARAMETER: ErrorInfo(False, "a parameter is invalid", "InvalidParameterValue", 400, True),
    ErrorCode.MISSING_PARAMETER: ErrorInfo(False, "a required parameter is missing", "MissingParameter", 400, True),
    ErrorCode.INVALID_QUEUE_NAME: ErrorInfo(False, "the queue name is invalid", "InvalidParameterValue", 400, True),
    ErrorCode.MESSAGE_TOO_LARGE: ErrorInfo(False, "the message is too large", "InvalidParameterValue", 400, True),
    ErrorCode.INVALID_MESSAGE_CONTENTS: ErrorInfo(False, "the message contains characters outside the allowed set", "InvalidMessageContents", 400, True),
    ErrorCode.INVALID_ATTRIBUTE_NAME: ErrorInfo(False, "an attribute name is invalid", "InvalidAttributeName", 400, True),
    ErrorCode.INVALID_ATTRIBUTE_VALUE: ErrorInfo(False, "an attribute value is invalid", "InvalidAttributeValue", 400, True),
    ErrorCode.RECEIPT_HANDLE_IS_INVALID: ErrorInfo(False, "the receipt handle is invalid", "ReceiptHandleIsInvalid", 404, True),
    ErrorCode.MESSAGE_NOT_INFLIGHT: ErrorInfo(False, "the message is not in flight", "AWS.SimpleQueueService.MessageNotInflight", 400, True),
    ErrorCode.EMPTY_BATCH_REQUEST: ErrorInfo(False, "the batch request has no entries", "AWS.SimpleQueueService.EmptyBatchRequest", 400, True),
    ErrorCode.TOO_MANY_ENTRIES_IN_BATCH: ErrorInfo(False, "the batch has more than 10 entries", "AWS.SimpleQueueService.TooManyEntriesInBatchRequest", 400, True),
    ErrorCode.BATCH_ENTRY_IDS_NOT_DISTINCT: ErrorInfo(False, "two batch entries share an id", "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", 400, True),
    ErrorCode.INVALID_BATCH_ENTRY_ID: ErrorInfo(False, "a batch entry id is invalid", "AWS.SimpleQueueService.InvalidBatchEntryId", 400, True),
    ErrorCode.BATCH_REQUEST_TOO_LONG: ErrorInfo(False, "the batch is larger than allowed", "AWS.SimpleQueueService.BatchRequestTooLong", 400, True),
    ErrorCode.UNSUPPORTED_VERSION: ErrorInfo(False, "the protocol version is not supported", "UnsupportedVersion", 400, True),
    ErrorCode.PROTOCOL_ERROR: ErrorInfo(False, "the peer violated the protocol", "MalformedRequest", 400, True),
    ErrorCode.UNSUPPORTED_OPERATION: ErrorInfo(False, "the operation is not supported", "AWS.SimpleQueueService.UnsupportedOperation", 400, True),
    ErrorCode.INVALID_SIGNATURE: ErrorInfo(False, "the request signature does not match", "SignatureDoesNotMatch", 403, True),
    ErrorCode.ACCESS_DENIED: ErrorInfo(False, "access denied", "AccessDenied", 403, True),
    ErrorCode.INVALID_CLIENT_TOKEN_ID: ErrorInfo(False, "the access key is unknown", "InvalidClientTokenId", 403, True),
    ErrorCode.REQUEST_EXPIRED: ErrorInfo(False, "the request has expired", "RequestExpired", 400, True),
    ErrorCode.UNKNOWN_OPERATION: ErrorInfo(False, "the operation is unknown", "InvalidAction", 400, True),
    ErrorCode.THROTTLED: ErrorInfo(True, "the request was throttled", "RequestThrottled", 403, True),
    ErrorCode.QUEUE_FULL: ErrorInfo(True, "the queue is full", "OverLimit", 403, True),
    ErrorCode.OVER_LIMIT: ErrorInfo(True, "a limit was reached", "OverLimit", 403, True),
    ErrorCode.TOO_MANY_WAITERS: ErrorInfo(True, "too many long polls are waiting", "OverLimit", 403, True),
    ErrorCode.FRAME_TOO_LARGE: ErrorInfo(False, "the frame is larger than frame_size_max", "MalformedRequest", 400, True),
    ErrorCode.DISK_FULL: ErrorInfo(True, "the disk is below its free-space reserve", "ServiceUnavailable", 503, False),
    ErrorCode.PURGE_QUEUE_IN_PROGRESS: ErrorInfo(False, "a purge ran less than 60 s ago", "AWS.SimpleQueueService.PurgeQueueInProgress", 403, True),
    ErrorCode.BUSY: ErrorInfo(True, "the server is busy", "ServiceUnavailable", 503, False),
    ErrorCode.NOT_LEADER: ErrorInfo(True, "this node is not the leader", "ServiceUnavailable", 503, False),
    ErrorCode.UNAVAILABLE: ErrorInfo(True, "the service is unavailable", "ServiceUnavailable", 503, False),
    ErrorCode.SHUTTING_DOWN: ErrorInfo(True, "the node is shutting down", "ServiceUnavailable", 503, False),
    ErrorCode.QUEUE_DOES_NOT_EXIST: ErrorInfo(False, "the queue does not exist", "AWS.SimpleQueueService.NonExistentQueue", 400, True),
    ErrorCode.QUEUE_ALREADY_EXISTS: ErrorInfo(False, "a queue with this name and other attributes exists", "QueueAlreadyExists", 400, True),
    ErrorCode.QUEUE_DELETED_RECENTLY: ErrorInfo(True, "the queue was deleted recently", "AWS.SimpleQueueService.QueueDeletedRecently", 400, True),
    ErrorCode.RESOURCE_NOT_FOUND: ErrorInfo(False, "the resource does not exist", "ResourceNotFoundException", 404, True),
    ErrorCode.MESSAGE_NOT_FOUND: ErrorInfo(False, "the message does not exist", "ResourceNotFoundException", 404, True),
    ErrorCode.INTERNAL: ErrorInfo(True, "internal error", "InternalFailure", 500, False),
    ErrorCode.WAL_CORRUPTION: ErrorInfo(False, "the write-ahead log is corrupt", "InternalFailure", 500, False),
    ErrorCode.TIMEOUT: ErrorInfo(True, "the request timed out", "RequestTimeout", 500, False),
}
assert set(_INFO) == set(ErrorCode), "every code needs an ErrorInfo"


def info(code: ErrorCode) -> ErrorInfo:
    return _INFO[code]


class QnodeError(Exception):
    """An expected operating error with a stable code; safe to send to a peer.

    `message` is for humans; callers branch on `code`.
    """

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str = "", *, code: ErrorCode | None = None,
                 retry_after_ms: int | None = None, leader_hint: str | None = None) -> None:
        if code is not None:
            self.code = code
        self.message = message or info(self.code).description
        self.retry_after_ms = retry_after_ms
        self.leader_hint = leader_hint
        super().__init__(f"{self.code.name}: {self.message}")

    @property
    def retriable(self) -> bool:
        return info(self.code).retriable

    def to_wire(self) -> dict:
        frame: dict = {"code": int(self.code), "message": self.message}
        if self.retry_after_ms is not None:
            frame["retry_after_ms"] = self.retry_after_ms
        if self.leader_hint is not None:
            frame["leader_hint"] = self.leader_hint
        return frame


def _subclass(name: str, code: ErrorCode) -> type[QnodeError]:
    return type(name, (QnodeError,), {"code": code, "__doc__": info(code).description})


# One exception class per code, named after the code (`QueueDoesNotExist`, ...).
InvalidParameter = _subclass("InvalidParameter", ErrorCode.INVALID_PARAMETER)
MissingParameter = _subclass("MissingParameter", ErrorCode.MISSING_PARAMETER)
InvalidQueueName = _subclass("InvalidQueueName", ErrorCode.INVALID_QUEUE_NAME)
MessageTooLarge = _subclass("MessageTooLarge", ErrorCode.MESSAGE_TOO_LARGE)
InvalidMessageContents = _subclass("InvalidMessageContents", ErrorCode.INVALID_MESSAGE_CONTENTS)
InvalidAttributeName = _subclass("InvalidAttributeName", ErrorCode.INVALID_ATTRIBUTE_NAME)
InvalidAttributeValue = _subclass("InvalidAttributeValue", ErrorCode.INVALID_ATTRIBUTE_VALUE)
ReceiptHandleIsInvalid = _subclass("ReceiptHandleIsInvalid", ErrorCode.RECEIPT_HANDLE_IS_INVALID)
MessageNotInflight = _subclass("MessageNotInflight", ErrorCode.MESSAGE_NOT_INFLIGHT)
EmptyBatchRequest = _subclass("EmptyBatchRequest", ErrorCode.EMPTY_BATCH_REQUEST)
TooManyEntriesInBatch = _subclass("TooManyEntriesInBatch", ErrorCode.TOO_MANY_ENTRIES_IN_BATCH)
BatchEntryIdsNotDistinct = _subclass("BatchEntryIdsNotDistinct", ErrorCode.BATCH_ENTRY_IDS_NOT_DISTINCT)
InvalidBatchEntryId = _subclass("InvalidBatchEntryId", ErrorCode.INVALID_BATCH_ENTRY_ID)
BatchRequestTooLong = _subclass("BatchRequestTooLong", ErrorCode.BATCH_REQUEST_TOO_LONG)
UnsupportedVersion = _subclass("UnsupportedVersion", ErrorCode.UNSUPPORTED_VERSION)
ProtocolViolation = _subclass("ProtocolViolation", ErrorCode.PROTOCOL_ERROR)
UnsupportedOperation = _subclass("UnsupportedOperation", ErrorCode.UNSUPPORTED_OPERATION)
InvalidSignature = _subclass("InvalidSignature", ErrorCode.INVALID_SIGNATURE)
AccessDenied = _subclass("AccessDenied", ErrorCode.ACCESS_DENIED)
InvalidClientTokenId = _subclass("InvalidClientTokenId", ErrorCode.INVALID_CLIENT_TOKEN_ID)
RequestExpired = _subclass("RequestExpired", ErrorCode.REQUEST_EXPIRED)
UnknownOperation = _subclass("UnknownOperation", ErrorCode.UNKNOWN_OPERATION)
Throttled = _subclass("Throttled", ErrorCode.THROTTLED)
QueueFull = _subclass("QueueFull", ErrorCode.QUEUE_FULL)
OverLimit = _subclass("OverLimit", ErrorCode.OVER_LIMIT)
TooManyWaiters = _subclass("TooManyWaiters", ErrorCode.TOO_MANY_WAITERS)
FrameTooLarge = _subclass("FrameTooLarge", ErrorCode.FRAME_TOO_LARGE)
DiskFull = _subclass("DiskFull", ErrorCode.DISK_FULL)
PurgeQueueInProgress = _subclass("PurgeQueueInProgress", ErrorCode.PURGE_QUEUE_IN_PROGRESS)
Busy = _subclass("Busy", ErrorCode.BUSY)
NotLeader = _subclass("NotLeader", ErrorCode.NOT_LEADER)
Unavailable = _subclass("Unavailable", ErrorCode.UNAVAILABLE)
ShuttingDown = _subclass("ShuttingDown", ErrorCode.SHUTTING_DOWN)
QueueDoesNotExist = _subclass("QueueDoesNotExist", ErrorCode.QUEUE_DOES_NOT_EXIST)
QueueAlreadyExists = _subclass("QueueAlreadyExists", ErrorCode.QUEUE_ALREADY_EXISTS)
QueueDeletedRecently = _subclass("QueueDeletedRecently", ErrorCode.QUEUE_DELETED_RECENTLY)
ResourceNotFound = _subclass("ResourceNotFound", ErrorCode.RESOURCE_NOT_FOUND)
MessageNotFound = _subclass("MessageNotFound", ErrorCode.MESSAGE_NOT_FOUND)
InternalError = _subclass("InternalError", ErrorCode.INTERNAL)
WalCorruptionError = _subclass("WalCorruptionError", ErrorCode.WAL_CORRUPTION)
RequestTimeout = _subclass("RequestTimeout", ErrorCode.TIMEOUT)

_BY_CODE: dict[ErrorCode, type[QnodeError]] = {
    cls.code: cls for cls in QnodeError.__subclasses__()
}
assert set(_BY_CODE) == set(ErrorCode), "every code needs an exception class"


def error_for_code(code: int) -> type[QnodeError]:
    """Map a wire code to its exception class; unknown codes map to InternalError."""
    try:
        return _BY_CODE[ErrorCode(code)]
    except ValueError:
        return InternalError


def error_from_wire(frame: dict) -> QnodeError:
    """Build the typed exception for an error frame `{code, message, ...}` from a peer."""
    cls = error_for_code(int(frame.get("code", ErrorCode.INTERNAL)))
    return cls(str(frame.get("message", "")), retry_after_ms=frame.get("retry_after_ms"),
               leader_hint=frame.get("leader_hint"))
