"""qnode: a distributed, durable message queue with Amazon SQS semantics.

The package exports the embedded client (`qnode.Client`, `qnode.SyncClient`) and the typed
errors every call may raise (`qnode.QueueDoesNotExist`, `qnode.Unavailable`, ...; all are
`qnode.QnodeError` and carry a stable `.code`).
"""

import qnode.protocol.errors as _errors
from qnode.client import Client, Message, Queue, Sent, SyncClient
from qnode.protocol.errors import *  # noqa: F401,F403  (every error class, ErrorCode)
from qnode.protocol.errors import ErrorCode, QnodeError, error_for_code

__all__ = ["Client", "SyncClient", "Message", "Queue", "Sent", "ErrorCode", "QnodeError",
           "error_for_code"] + sorted(
    name for name, value in vars(_errors).items()
    if isinstance(value, type) and issubclass(value, QnodeError) and value is not QnodeError)
