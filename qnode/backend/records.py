"""WAL record kinds 16..127 owned by the queue engine, and their msgpack bodies.

Every body is a msgpack array; the first element is the queue id where there is one. A record is
self-contained: replaying the log in order from an empty engine (or from a checkpoint) rebuilds
exactly the persistent state (queues, messages with their receive counts and visibility, dedup
entries, move tasks). Kinds are stable and never renumbered.

| kind | name            | body                                                   |
|------|-----------------|--------------------------------------------------------|
| 16   | SECRET          | [secret bytes]                                         |
| 17   | QUEUE_CREATE    | [qid, name, fifo, attrs, tags, created_ms]             |
| 18   | QUEUE_ATTRS     | [qid, attrs, modified_ms]                              |
| 19   | QUEUE_DELETE    | [qid]                                                  |
| 20   | QUEUE_TAGS      | [qid, tags]                                            |
| 21   | PURGE           | [qid, now_ms]                                          |
| 22   | SEND            | [qid, [message...], [[dedup_key, expiry_ms], ...]]     |
| 23   | RECEIVE         | [qid, [[seq, count, visible_at_ms, first_ms], ...]]    |
| 24   | DELETE          | [qid, [seq, ...]]                                      |
| 25   | VISIBILITY      | [qid, [[seq, visible_at_ms, reason|None], ...]]        |
| 26   | MOVE            | [src_qid, dst_qid, [[src_seq, message], ...]]          |
| 27   | MOVE_TASK       | [task fields...] (upsert by handle)                    |

A `message` is the 18-slot array of `encode_message`. Its fifth slot held the body's MD5 until
the engine stopped computing it (the SQS gateway digests what it returns); it is now written as
None and ignored when read, so logs and checkpoints from either side of that change replay alike.
"""

from __future__ import annotations

from typing import Any, Mapping

import msgpack

from qnode.backend.message import Message
from qnode.frontend.api import MessageAttribute

SECRET = 16
QUEUE_CREATE = 17
QUEUE_ATTRS = 18
QUEUE_DELETE = 19
QUEUE_TAGS = 20
PURGE = 21
SEND = 22
RECEIVE = 23
DELETE = 24
VISIBILITY = 25
MOVE = 26
MOVE_TASK = 27

KINDS = frozenset(range(SECRET, MOVE_TASK + 1))
assert all(16 <= k <= 127 for k in KINDS)

_packer = msgpack.Packer(use_bin_type=True)


def pack(obj: Any) -> bytes:
    return _packer.pack(obj)


def unpack(body: bytes) -> Any:
    return msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=False)


def encode_attrs(attrs: Mapping[str, MessageAttribute]) -> list | None:
    if not attrs:
        return None
    return [[k, a.data_type, a.string_value, a.binary_value] for k, a in attrs.items()]


def decode_attrs(raw: list | None) -> dict[str, MessageAttribute]:
    if not raw:
        return {}
    return {k: MessageAttribute(t, s, b) for k, t, s, b in raw}


def encode_message(m: Message) -> list:
    return [m.seq, m.message_id, m.body, encode_attrs(m.attrs), None, m.md5_attrs,
            encode_attrs(m.sys_attrs), m.md5_sys, m.sent_ms, m.visible_at_ms, m.receive_count,
            m.first_receive_ms, m.group_id, m.dedup_id, m.sequence_number, m.dlq_source_arn,
            m.reason, m.size]


def decode_message(raw: list) -> Message:
    (seq, mid, body, attrs, _md5_body, md5_attrs, sys_attrs, md5_sys, sent_ms, visible_at_ms,
     receive_count, first_ms, group_id, dedup_id, seqno, dlq_src, reason, size) = raw
    return Message(seq, mid, body, decode_attrs(attrs), md5_attrs,
                   decode_attrs(sys_attrs), md5_sys, sent_ms, visible_at_ms, receive_count,
                   first_ms, group_id, dedup_id, seqno, dlq_src, reason, size)
