"""Operation names of the binary protocol and their classification.

Owns: the set of op names that may appear in a request, which of them mutate state (the client
sends a request id `rid` with those, so a retry is safe), and which results the server's
request-id cache remembers. `docs/protocol.md` documents the arguments of each op.
"""

from __future__ import annotations

QUEUE_OPS = (
    "create_queue", "delete_queue", "get_queue", "list_queues", "get_queue_attributes",
    "set_queue_attributes", "purge_queue", "tag_queue", "untag_queue", "list_queue_tags",
)
MESSAGE_OPS = (
    "send", "receive", "delete", "change_visibility", "nack", "peek", "cancel_scheduled",
)
DEAD_LETTER_OPS = (
    "list_dead_letter_source_queues", "start_message_move_task", "cancel_message_move_task",
    "list_message_move_tasks",
)
PUSH_OPS = ("subscribe", "credit", "unsubscribe")
NODE_OPS = ("ping", "status")

ALL_OPS: frozenset[str] = frozenset(QUEUE_OPS + MESSAGE_OPS + DEAD_LETTER_OPS + PUSH_OPS + NODE_OPS)

# Ops that change state: the client attaches a request id so that a retry is not applied twice.
MUTATING_OPS: frozenset[str] = frozenset({
    "create_queue", "delete_queue", "set_queue_attributes", "purge_queue", "tag_queue",
    "untag_queue", "send", "receive", "delete", "change_visibility", "nack", "cancel_scheduled",
    "start_message_move_task", "cancel_message_move_task",
})

# Ops whose results the server remembers by request id. `receive` is excluded on purpose: its
# replies can be 10 MiB each (the cache would be unbounded in bytes), and a retried receive only
# costs a visibility timeout (at-least-once); FIFO callers use `attempt_id` instead. `delete` is
# idempotent by itself: a retry finds the message gone, answers success as SQS does, and waits
# for the fsync that covers the first attempt's record, so remembering it only cost CPU and RSS.
CACHED_OPS: frozenset[str] = MUTATING_OPS - {"receive", "delete"}

assert MUTATING_OPS <= ALL_OPS
assert CACHED_OPS <= MUTATING_OPS

OP_NAME_LENGTH_MAX = 64
REQUEST_ID_LENGTH_MAX = 128
