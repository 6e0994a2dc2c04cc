"""qnode: a distributed, durable message queue with Amazon SQS semantics.

The package exports the embedded client (`qnode.Client`, `qnode.SyncClient`) and the typed
errors every call may raise (`qnode.QueueDoesNotExist`, `qnode.Unavailable`, ...; all are
`qnode.QnodeError` subclasses and carry a stable `.code`). Error classes are re-exported from
`qnode.protocol.errors` by scanning it, so a code appended there is exported here too.
"""

import qnode.protocol.errors as _errors
from qnode.client import Client, Message, Queue, Sent, SyncClient
from qnode.protocol.errors import ErrorCode, QnodeError, error_for_code, error_from_wire

_ERROR_CLASSES = {name: value for name, value in vars(_errors).items()
                  if isinstance(value, type) and issubclass(value, QnodeError)}
globals().update(_ERROR_CLASSES)

__all__ = ["Client", "SyncClient", "Message", "Queue", "Sent", "ErrorCode", "error_for_code",
           "error_from_wire", *sorted(_ERROR_CLASSES)]
