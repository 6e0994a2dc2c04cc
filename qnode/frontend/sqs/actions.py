"""The 23 SQS actions over a `QueueApi`: JSON-shaped input dict in, JSON-shaped result dict out.

Both protocols reach here: the JSON protocol as decoded, the query protocol after
`query.parse_params`. Each action validates what SQS validates at its edge (parameter presence
and ranges, batch shape, body characters, message attributes), converts SQS seconds to the
API's milliseconds, does the real work through the `QueueApi`, and shapes the reply as the
JSON protocol's output member names. Errors are raised as `QnodeError`s; batch actions report
per-entry failures in `Failed` and raise only for whole-request errors (empty, too many,
duplicate or invalid ids, too long), as SQS does.
Never sleeps or polls: long polling is the backend's `receive_messages(wait_ms=...)`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import re
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

from qnode import limits
from qnode.backend.md5 import md5_of_attributes, md5_of_body
from qnode.frontend.api import QueueApi, SendEntry
from qnode.frontend.sqs import messages, urls
from qnode.frontend.sqs.errors import batch_failure
from qnode.frontend.validation import validate_queue_name
from qnode.protocol.errors import (BatchEntryIdsNotDistinct, BatchRequestTooLong,
                                   EmptyBatchRequest, InvalidBatchEntryId, InvalidParameter,
                                   MissingParameter, QnodeError, QueueDoesNotExist,
                                   TooManyEntriesInBatch, UnknownOperation)


_BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")
LIST_RESULTS_MAX = 1000
MOVE_TASKS_RESULTS_MAX = 10
PARAM_ITEMS_COUNT_MAX = 1000       # list/map parameters (SQS's own are far smaller: 50 tags)


@dataclass(frozen=True, slots=True)
class Context:
    """Per-request facts an action needs to build URLs and ARNs."""

    scheme: str
    host: str
    account_id: str
    region: str
    stopping: asyncio.Event | None = None    # set when the listener stops: answer long polls


    def url(self, name: str) -> str:
        return urls.queue_url(self.scheme, self.host, self.account_id, name)

    def arn(self, name: str) -> str:
        return urls.queue_arn(self.region, self.account_id, name)


# --- parameter helpers -------------------------------------------------------------------------

def _str(p: Mapping, key: str, *, required: bool = False) -> str | None:
    value = p.get(key)
    if value is None or value == "":
        if required:
            raise MissingParameter(f"The request must contain the parameter {key}.")
        return None
    if not isinstance(value, str):
        raise InvalidParameter(f"Value for parameter {key} must be a string.")
    return value


def _int(p: Mapping, key: str, lo: int, hi: int, *, required: bool = False) -> int | None:
    value = p.get(key)
    if value is None or value == "":
        if required:
            raise MissingParameter(f"The request must contain the parameter {key}.")
        return None
    if isinstance(value, bool):
        raise InvalidParameter(f"Value {value} for parameter {key} is invalid.")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidParameter(f"Value {value} for parameter {key} is invalid. "
                               "Reason: must be an integer.") from None
    if not lo <= number <= hi:
        raise InvalidParameter(f"Value {number} for parameter {key} is invalid. "
                               f"Reason: must be between {lo} and {hi}.")
    return number


def _list(p: Mapping, key: str) -> list[str]:
    value = p.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParameter(f"Value for parameter {key} must be a list of strings.")
    if len(value) > PARAM_ITEMS_COUNT_MAX:
        raise InvalidParameter(f"Parameter {key} has more than {PARAM_ITEMS_COUNT_MAX} items.")
    return value


def _map(p: Mapping, key: str) -> dict[str, str]:
    value = p.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidParameter(f"Value for parameter {key} must be a map.")
    if len(value) > PARAM_ITEMS_COUNT_MAX:
        raise InvalidParameter(f"Parameter {key} has more than {PARAM_ITEMS_COUNT_MAX} entries.")
    if not all(isinstance(v, str) for v in value.values()):
        raise InvalidParameter(f"Values of parameter {key} must be strings.")
    return {str(k): v for k, v in value.items()}


def _queue(p: Mapping, ctx: Context) -> str:
    return urls.name_from_url(_str(p, "QueueUrl"), ctx.account_id)


def _entries(p: Mapping) -> list[Mapping]:
    entries = p.get("Entries")
    if not entries:
        raise EmptyBatchRequest("There should be at least one SendMessageBatchRequestEntry "
                                "in the request.")
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise InvalidParameter("Entries must be a list of structures.")
    if len(entries) > limits.batch_entries_count_max:
        raise TooManyEntriesInBatch(f"Maximum number of entries per request are "
                                    f"{limits.batch_entries_count_max}. You have sent "
                                    f"{len(entries)}.")
    seen: set[str] = set()
    for entry in entries:
        entry_id = entry.get("Id")
        if not isinstance(entry_id, str) or not _BATCH_ID.fullmatch(entry_id):
            raise InvalidBatchEntryId("A batch entry id can only contain alphanumeric "
                                      "characters, hyphens and underscores. It can be at most "
                                      "80 letters long.")
        if entry_id in seen:
            raise BatchEntryIdsNotDistinct(f"Id {entry_id} repeated.")
        seen.add(entry_id)
    return entries


def _token_encode(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def _page(names: list[str], p: Mapping) -> tuple[list[str], str | None]:
    """SQS pagination: without MaxResults up to 1000 and no token; with it, a NextToken
    (the last name returned) while more remain."""
    max_results = _int(p, "MaxResults", 1, LIST_RESULTS_MAX)
    token = _str(p, "NextToken")
    start = 0
    if token is not None:
        try:
            after = base64.urlsafe_b64decode(token.encode()).decode()
        except (binascii.Error, ValueError):
            raise InvalidParameter("Invalid NextToken value.") from None
        start = bisect.bisect_right(names, after)
    end = min(len(names), start + (max_results or LIST_RESULTS_MAX))
    page = names[start:end]
    next_token = _token_encode(page[-1]) if max_results and end < len(names) and page else None
    return page, next_token


# --- queues ------------------------------------------------------------------------------------

async def create_queue(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    name = _str(p, "QueueName", required=True)
    assert name is not None
    attributes = _map(p, "Attributes")
    # SQS: a FIFO queue is asked for with FifoQueue=true and its name must end in .fifo;
    # a standard queue's name may not.
    validate_queue_name(name, fifo=attributes.get("FifoQueue", "false").lower() == "true")
    tags = _map(p, "tags") or _map(p, "Tags")
    await api.create_queue(name, attributes, tags)
    return {"QueueUrl": ctx.url(name)}


async def get_queue_url(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    name = _str(p, "QueueName", required=True)
    assert name is not None
    owner = _str(p, "QueueOwnerAWSAccountId")
    if owner is not None and owner != ctx.account_id:
        raise QueueDoesNotExist("The specified queue does not exist.")
    info = await api.get_queue(name)
    return {"QueueUrl": ctx.url(info.name)}


async def delete_queue(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    await api.delete_queue(_queue(p, ctx))
    return {}


async def list_queues(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    names = sorted(await api.list_queues(_str(p, "QueueNamePrefix")))
    page, token = _page(names, p)
    out: dict[str, Any] = {}
    if page:
        out["QueueUrls"] = [ctx.url(n) for n in page]
    if token:
        out["NextToken"] = token
    return out


async def get_queue_attributes(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    name = _queue(p, ctx)
    wanted = _list(p, "AttributeNames")
    if not wanted:
        await api.get_queue(name)   # SQS still answers QueueDoesNotExist
        return {}
    attrs = await api.get_queue_attributes(name, wanted)
    return {"Attributes": dict(attrs)} if attrs else {}


async def set_queue_attributes(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    attrs = _map(p, "Attributes")
    await api.set_queue_attributes(_queue(p, ctx), attrs)
    return {}


async def purge_queue(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    await api.purge_queue(_queue(p, ctx))
    return {}


async def tag_queue(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    tags = _map(p, "Tags")
    if not tags:
        raise MissingParameter("The request must contain the parameter Tags.")
    await api.tag_queue(_queue(p, ctx), tags)
    return {}


async def untag_queue(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    keys = _list(p, "TagKeys")
    if not keys:
        raise MissingParameter("The request must contain the parameter TagKeys.")
    await api.untag_queue(_queue(p, ctx), keys)
    return {}


async def list_queue_tags(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    tags = await api.list_queue_tags(_queue(p, ctx))
    return {"Tags": dict(tags)} if tags else {}


async def add_permission(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    name = _queue(p, ctx)
    label = _str(p, "Label", required=True)
    accounts = _list(p, "AWSAccountIds")
    actions = _list(p, "Actions")
    if not accounts:
        raise MissingParameter("The request must contain the parameter AWSAccountIds.")
    if not actions:
        raise MissingParameter("The request must contain the parameter Actions.")
    assert label is not None
    await api.add_permission(name, label, accounts, actions)
    return {}


async def remove_permission(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    name = _queue(p, ctx)
    label = _str(p, "Label", required=True)
    assert label is not None
    await api.remove_permission(name, label)
    return {}


# --- messages ----------------------------------------------------------------------------------

def _send_entry(p: Mapping, entry_id: str | None) -> SendEntry:
    body = messages.encode_body(p.get("MessageBody"))
    attrs = messages.parse_attributes(p.get("MessageAttributes"))
    system = messages.parse_attributes(p.get("MessageSystemAttributes"), system=True)
    if len(body) + messages.attributes_size(attrs) > limits.message_size_max:
        raise InvalidParameter(f"One or more parameters are invalid. Reason: Message must be "
                               f"shorter than {limits.message_size_max} bytes.")
    delay_s = _int(p, "DelaySeconds", 0, limits.delay_ms_max // 1000)
    return SendEntry(body=body, delay_ms=None if delay_s is None else delay_s * 1000,
                     attributes=attrs, group_id=_str(p, "MessageGroupId"),
                     dedup_id=_str(p, "MessageDeduplicationId"), entry_id=entry_id,
                     system_attributes=system)


def _send_reply(result: Any, body: bytes) -> dict:
    out: dict[str, Any] = {"MessageId": result.message_id, "MD5OfMessageBody": md5_of_body(body)}
    if result.md5_attributes:
        out["MD5OfMessageAttributes"] = result.md5_attributes
    if result.md5_system_attributes:
        out["MD5OfMessageSystemAttributes"] = result.md5_system_attributes
    if result.sequence_number:
        out["SequenceNumber"] = result.sequence_number
    return out


async def send_message(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    name = _queue(p, ctx)
    if p.get("MessageBody") is None:
        raise MissingParameter("The request must contain the parameter MessageBody.")
    entry = _send_entry(p, None)
    [result] = await api.send_messages(name, [entry])
    if isinstance(result, QnodeError):
        raise result
    return _send_reply(result, entry.body)


async def send_message_batch(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    name = _queue(p, ctx)
    entries = _entries(p)
    failed: list[dict] = []
    good: list[SendEntry] = []
    size = 0
    for e in entries:
        try:
            entry = _send_entry(e, e["Id"])
        except QnodeError as err:
            failed.append(batch_failure(e["Id"], err))
            continue
        size += len(entry.body) + messages.attributes_size(entry.attributes)
        good.append(entry)
    if size > limits.batch_size_max:
        raise BatchRequestTooLong(f"Batch requests cannot be longer than "
                                  f"{limits.batch_size_max} bytes. You have sent {size} bytes.")
    successful: list[dict] = []
    if good:
        results = await api.send_messages(name, good)
        assert len(results) == len(good)
        for entry, result in zip(good, results):
            assert entry.entry_id is not None
            if isinstance(result, QnodeError):
                failed.append(batch_failure(entry.entry_id, result))
            else:
                successful.append({"Id": entry.entry_id, **_send_reply(result, entry.body)})
    return {"Successful": successful, "Failed": failed}


async def receive_message(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    name = _queue(p, ctx)
    count = _int(p, "MaxNumberOfMessages", 1, limits.receive_count_max) or 1
    wait_s = _int(p, "WaitTimeSeconds", 0, limits.wait_ms_max // 1000)
    vis_s = _int(p, "VisibilityTimeout", 0, limits.visibility_timeout_ms_max // 1000)
    system_sel = _list(p, "AttributeNames") + _list(p, "MessageSystemAttributeNames")
    attr_sel = _list(p, "MessageAttributeNames")
    messages.select_system_attributes({}, system_sel)  # unknown names fail before waiting
    call = api.receive_messages(
        name, max_count=count, wait_ms=None if wait_s is None else wait_s * 1000,
        visibility_timeout_ms=None if vis_s is None else vis_s * 1000,
        attempt_id=_str(p, "ReceiveRequestAttemptId"))
    got = await (call if ctx.stopping is None or wait_s == 0
                 else _unless_stopping(call, ctx.stopping))
    out = []
    for m in got:
        try:
            body = m.body.decode("utf-8")
            md5 = md5_of_body(m.body)
        except UnicodeDecodeError:      # sent as bytes by a native client: digest what is returned
            body = m.body.decode("utf-8", errors="replace")
            md5 = md5_of_body(body.encode("utf-8"))
        msg: dict[str, Any] = {"MessageId": m.message_id, "ReceiptHandle": m.receipt,
                               "MD5OfBody": md5, "Body": body}
        system = messages.select_system_attributes(m.system, system_sel)
        if system:
            msg["Attributes"] = system
        attrs = messages.select_message_attributes(m.attributes, attr_sel)
        if attrs:
            # The digest covers what is returned (SDKs check it against these attributes).
            msg["MD5OfMessageAttributes"] = (m.md5_attributes if len(attrs) == len(m.attributes)
                                             else md5_of_attributes(attrs))
            msg["MessageAttributes"] = messages.render_attributes(attrs)
        out.append(msg)
    return {"Messages": out} if out else {}


async def _unless_stopping(call: Awaitable[list], stopping: asyncio.Event) -> list:
    """Await a long poll, but answer it empty once the listener stops, so that a parked
    receive never holds up shutdown (what it had taken, if anything, is still returned)."""
    task = asyncio.ensure_future(call)
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait((task, stop), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        if not task.done():
            task.cancel()
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
        return []


async def delete_message(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    name = _queue(p, ctx)
    receipt = _str(p, "ReceiptHandle", required=True)
    assert receipt is not None
    [result] = await api.delete_messages(name, [receipt])
    if isinstance(result, QnodeError):
        raise result
    return {}


def _batch_outcome(entries: list[Mapping], results: list[None | QnodeError]) -> dict:
    assert len(results) == len(entries)
    successful, failed = [], []
    for e, r in zip(entries, results):
        if r is None:
            successful.append({"Id": e["Id"]})
        else:
            failed.append(batch_failure(e["Id"], r))
    return {"Successful": successful, "Failed": failed}


async def delete_message_batch(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    name = _queue(p, ctx)
    entries = _entries(p)
    receipts = [_str(e, "ReceiptHandle", required=True) or "" for e in entries]
    return _batch_outcome(entries, await api.delete_messages(name, receipts))


async def change_message_visibility(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    name = _queue(p, ctx)
    receipt = _str(p, "ReceiptHandle", required=True)
    vis_s = _int(p, "VisibilityTimeout", 0, limits.visibility_timeout_ms_max // 1000,
                 required=True)
    assert receipt is not None and vis_s is not None
    [result] = await api.change_visibility(name, [(receipt, vis_s * 1000)])
    if isinstance(result, QnodeError):
        raise result
    return {}


async def change_message_visibility_batch(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    name = _queue(p, ctx)
    entries = _entries(p)
    items: list[tuple[str, int]] = []
    pre: list[QnodeError | None] = []
    for e in entries:
        try:
            receipt = _str(e, "ReceiptHandle", required=True)
            vis_s = _int(e, "VisibilityTimeout", 0, limits.visibility_timeout_ms_max // 1000,
                         required=True)
            assert receipt is not None and vis_s is not None
            items.append((receipt, vis_s * 1000))
            pre.append(None)
        except QnodeError as err:
            pre.append(err)
    done = iter(await api.change_visibility(name, items) if items else [])
    results = [err if err is not None else next(done) for err in pre]
    return _batch_outcome(entries, results)


# --- dead letters ------------------------------------------------------------------------------

async def list_dead_letter_source_queues(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    names = sorted(await api.list_dead_letter_source_queues(_queue(p, ctx)))
    page, token = _page(names, p)
    out: dict[str, Any] = {"queueUrls": [ctx.url(n) for n in page]}
    if token:
        out["NextToken"] = token
    return out


async def start_message_move_task(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    source = urls.name_from_arn(_str(p, "SourceArn", required=True) or "", ctx.account_id)
    dest_arn = _str(p, "DestinationArn")
    dest = urls.name_from_arn(dest_arn, ctx.account_id) if dest_arn else None
    rate = _int(p, "MaxNumberOfMessagesPerSecond", 1, 500)
    handle = await api.start_message_move_task(source, dest, rate)
    return {"TaskHandle": handle}


async def cancel_message_move_task(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    handle = _str(p, "TaskHandle", required=True)
    assert handle is not None
    moved = await api.cancel_message_move_task(handle)
    return {"ApproximateNumberOfMessagesMoved": moved}


async def list_message_move_tasks(api: QueueApi, p: Mapping, ctx: Context) -> dict:
    source = urls.name_from_arn(_str(p, "SourceArn", required=True) or "", ctx.account_id)
    count = _int(p, "MaxResults", 1, MOVE_TASKS_RESULTS_MAX) or 1
    tasks = await api.list_message_move_tasks(source, count)
    results = []
    for t in tasks:
        r: dict[str, Any] = {"Status": t.status, "SourceArn": t.source_arn,
                             "ApproximateNumberOfMessagesMoved": t.moved_count,
                             "ApproximateNumberOfMessagesToMove": t.to_move_count,
                             "StartedTimestamp": t.started_timestamp_ms}
        if t.status == "RUNNING":
            r["TaskHandle"] = t.task_handle
        if t.destination_arn:
            r["DestinationArn"] = t.destination_arn
        if t.max_per_second is not None:
            r["MaxNumberOfMessagesPerSecond"] = t.max_per_second
        if t.failure_reason:
            r["FailureReason"] = t.failure_reason
        results.append(r)
    return {"Results": results}


Action = Callable[[QueueApi, Mapping, Context], Awaitable[dict]]

ACTIONS: dict[str, Action] = {
    "SendMessage": send_message,
    "SendMessageBatch": send_message_batch,
    "ReceiveMessage": receive_message,
    "DeleteMessage": delete_message,
    "DeleteMessageBatch": delete_message_batch,
    "ChangeMessageVisibility": change_message_visibility,
    "ChangeMessageVisibilityBatch": change_message_visibility_batch,
    "CreateQueue": create_queue,
    "DeleteQueue": delete_queue,
    "GetQueueUrl": get_queue_url,
    "ListQueues": list_queues,
    "GetQueueAttributes": get_queue_attributes,
    "SetQueueAttributes": set_queue_attributes,
    "PurgeQueue": purge_queue,
    "TagQueue": tag_queue,
    "UntagQueue": untag_queue,
    "ListQueueTags": list_queue_tags,
    "ListDeadLetterSourceQueues": list_dead_letter_source_queues,
    "StartMessageMoveTask": start_message_move_task,
    "CancelMessageMoveTask": cancel_message_move_task,
    "ListMessageMoveTasks": list_message_move_tasks,
    "AddPermission": add_permission,
    "RemovePermission": remove_permission,
}
assert len(ACTIONS) == 23


async def dispatch(api: QueueApi, action: str, params: Mapping, ctx: Context) -> dict:
    """Run one SQS action. Raises UnknownOperation for an action SQS does not have."""
    handler = ACTIONS.get(action)
    if handler is None:
        raise UnknownOperation(f"The action {action} is not valid for this endpoint.")
    return await handler(api, params, ctx)
