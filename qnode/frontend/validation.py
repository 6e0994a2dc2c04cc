"""Validation of user-supplied names and values shared by the listeners (binary, SQS HTTP).

Owns: the queue-name rule (SQS: 1..80 characters of `[A-Za-z0-9_-]`, and a FIFO queue's name ends
in `.fifo`, the suffix counted in the 80). Every function either returns the validated value or
raises a typed QnodeError; none has side effects.
"""

from __future__ import annotations

import re

from qnode import limits
from qnode.protocol.errors import InvalidQueueName

FIFO_SUFFIX = ".fifo"
_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")


def validate_queue_name(name: object, *, fifo: bool | None = None) -> str:
    """Return `name` if it is a valid queue name, else raise InvalidQueueName.

    `fifo=True` requires the `.fifo` suffix, `fifo=False` forbids it, None accepts either.
    """
    if not isinstance(name, str):
        raise InvalidQueueName("queue name must be a string")
    if not 1 <= len(name) <= limits.queue_name_length_max:
        raise InvalidQueueName(
            f"queue name must be 1 to {limits.queue_name_length_max} characters long")
    is_fifo = name.endswith(FIFO_SUFFIX)
    stem = name[: -len(FIFO_SUFFIX)] if is_fifo else name
    if not stem or _NAME_RE.fullmatch(stem) is None:
        raise InvalidQueueName(
            "queue names may contain only alphanumeric characters, hyphens (-) and underscores (_)"
            ", and a FIFO queue name ends with .fifo")
    if fifo is True and not is_fifo:
        raise InvalidQueueName("a FIFO queue name must end with .fifo")
    if fifo is False and is_fifo:
        raise InvalidQueueName("only a FIFO queue name may end with .fifo")
    return name


def is_fifo_name(name: str) -> bool:
    return name.endswith(FIFO_SUFFIX)
