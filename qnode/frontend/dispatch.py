"""Maps a binary-protocol request (op + args) onto `QueueApi` calls.

Owns: argument validation (types, ranges, required keys) with typed errors, the request-id
dedup of mutating ops (a retry with the same `rid` gets the first attempt's result, even while
that attempt still runs), and the conversion of API results into wire dicts (via
`qnode.protocol.payloads`).

Never: touches sockets or frames; catches non-Qnode exceptions (the connection shell turns
those into an InternalError reply); holds per-connection state (push subscriptions live on the
`Session` the shell passes in).
"""

from __future__ import annotations

import asyncio
import bisect
import inspect
import time
from typing import Any, Awaitable, Callable, Mapping, Protocol, Sequence

import msgpack

from qnode import limits
from qnode.frontend.api import Consumer, QueueApi
from qnode.frontend.request_cache import RequestCache
from qnode.frontend.validation import validate_queue_name
from qnode.protocol import payloads
from qnode.protocol.errors import (
    EmptyBatchRequest, InvalidParameter, MissingParameter, QnodeError, ResourceNotFound,
    TooManyEntriesInBatch, UnknownOperation,
)
from qnode.protocol.messages import Request
from qnode.protocol.ops import CACHED_OPS

TAG_COUNT_MAX = 50
LIST_PAGE_COUNT_MAX = 1000     # SQS ListQueues: up to 1000 results per call
NAME_LIST_COUNT_MAX = 100


class Session(Protocol):
    """What the dispatcher needs from a connection for push consumers."""

    def attach_consumer(self, consumer: Consumer) -> int: ...
    def settle(self, sid: int, count: int, receipts: Sequence[str] = ()) -> bool: ...
    async def detach_consumer(self, sid: int) -> None: ...


# --- argument helpers (raise typed errors) -----------------------------------------------------
_VALID_NAMES: dict[str, None] = {}     # names validate_queue_name accepted (a per-request regex
_VALID_NAMES_COUNT_MAX = 4096          # match otherwise); cleared when full, so bounded


def _queue(args: Mapping, key: str = "queue") -> str:
    if key not in args:
        raise MissingParameter(f"{key} is required")
    name = args[key]
    if type(name) is str and name in _VALID_NAMES:
        return name
    name = validate_queue_name(name)
    if len(_VALID_NAMES) >= _VALID_NAMES_COUNT_MAX:
        _VALID_NAMES.clear()
    _VALID_NAMES[name] = None
    return name


def _int(args: Mapping, key: str, lo: int, hi: int, default: Any = None, required: bool = False) -> Any:
    v = args.get(key)
    if v is None:
        if required:
            raise MissingParameter(f"{key} is required")
        return default
    if type(v) is not int or not lo <= v <= hi:
        raise InvalidParameter(f"{key} must be an integer in {lo}..{hi}")
    return v


def _str(args: Mapping, key: str, *, required: bool = True, length_max: int = 1024) -> Any:
    v = args.get(key)
    if v is None:
        if required:
            raise MissingParameter(f"{key} is required")
        return None
    if not isinstance(v, str) or len(v) > length_max:
        raise InvalidParameter(f"{key} must be a string of at most {length_max} characters")
    return v


def _bool(args: Mapping, key: str, default: bool = False) -> bool:
    v = args.get(key, default)
    if type(v) is not bool:
        raise InvalidParameter(f"{key} must be a boolean")
    return v


def _str_map(args: Mapping, key: str, *, required: bool = False, count_max: int = 100) -> Any:
    v = args.get(key)
    if v is None:
        if required:
            raise MissingParameter(f"{key} is required")
        return None
    if not isinstance(v, dict) or len(v) > count_max:
        raise InvalidParameter(f"{key} must be a map of at most {count_max} entries")
    for k, val in v.items():
        if not isinstance(k, str) or not isinstance(val, str) or len(k) > 256 or len(val) > 262_144:
            raise InvalidParameter(f"{key} must map strings to strings")
    return v


def _str_list(args: Mapping, key: str, *, required: bool = True, count_max: int = NAME_LIST_COUNT_MAX,
              length_max: int = 1024) -> Any:
    v = args.get(key)
    if v is None:
        if required:
            raise MissingParameter(f"{key} is required")
        return None
    if not isinstance(v, list) or len(v) > count_max:
        raise InvalidParameter(f"{key} must be a list of at most {count_max} strings")
    for s in v:
        if not isinstance(s, str) or len(s) > length_max:
            raise InvalidParameter(f"{key} must be a list of strings")
    return v


def _batch(args: Mapping, key: str) -> list:
    v = args.get(key)
    if v is None:
        raise MissingParameter(f"{key} is required")
    if not isinstance(v, list):
        raise InvalidParameter(f"{key} must be a list")
    if not v:
        raise EmptyBatchRequest()
    if len(v) > limits.batch_entries_count_max:
        raise TooManyEntriesInBatch(f"a batch takes at most {limits.batch_entries_count_max} entries")
    return v


def _page(names: list[str], args: Mapping) -> dict:
    """One page of a sorted name list (as SQS: at most 1000 per reply, which also keeps the
    reply under the peer's msgpack array bound). `next_token` is the last name returned."""
    page_max = _int(args, "max_results", 1, LIST_PAGE_COUNT_MAX, LIST_PAGE_COUNT_MAX)
    token = _str(args, "next_token", required=False, length_max=limits.queue_name_length_max)
    names = sorted(names)
    start = 0 if token is None else bisect.bisect_right(names, token)
    page = names[start:start + page_max]
    out: dict[str, Any] = {"queues": page}
    if start + page_max < len(names):
        out["next_token"] = page[-1]
    return out


def _receipt(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= payloads.SHORT_STRING_LENGTH_MAX:
        raise InvalidParameter("a receipt must be a non-empty string")
    return value


class _Running:
    """A first attempt still running, in the request-id cache. Retries that arrive meanwhile
    each wait on a future of their own (so a cancelled retry cancels nothing else); the first
    attempt creates none, which keeps the common request free of a future and a loop lookup."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future] = []

    def wait(self) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        return fut

    def finish(self, *, result: Any = None, exc: BaseException | None = None,
               cancelled: bool = False) -> None:
        for fut in self._waiters:
            if fut.done():
                continue
            if cancelled:
                fut.cancel()
            elif exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)
        self._waiters.clear()


def _extra_op(fn: Callable[[Mapping], Awaitable[Any]]) -> Callable[[Mapping, Session], Awaitable[Any]]:
    async def handler(args: Mapping, s: Session) -> Any:
        return await fn(args)
    return handler


class Dispatcher:
    """Runs one request against the API. `dispatch()` returns the wire result or raises
    QnodeError; push ops go to the `Session`. One dispatcher (and one request cache) serves all
    connections of a server, because a retry usually arrives on a new connection."""

    def __init__(self, api: QueueApi, *, request_cache: RequestCache,
                 status: Callable[[], dict], clock_ms: Callable[[], int] | None = None,
                 prefetch_max: int = limits.push_prefetch_max,
                 extra_ops: Mapping[str, Callable[[Mapping], Awaitable[Any]]] | None = None) -> None:
        self._api = api
        self._cache = request_cache
        self._packer = msgpack.Packer(use_bin_type=True, datetime=False)   # results remembered
        self._status = status
        self._clock_ms = clock_ms or (lambda: time.monotonic_ns() // 1_000_000)
        self._prefetch_max = prefetch_max
        self._handlers: dict[str, Callable[[Mapping, Session], Awaitable[Any]]] = {
            name[len("_op_"):]: getattr(self, name) for name in dir(self) if name.startswith("_op_")
        }
        # Extra ops registered by the node assembly (cluster peer ops such as `raft`): they take
        # the request args and return a wire result or raise QnodeError; they never shadow an op.
        for name, fn in (extra_ops or {}).items():
            assert name not in self._handlers, f"extra op {name!r} shadows a built-in op"
            self._handlers[name] = _extra_op(fn)

    @property
    def ops(self) -> frozenset[str]:
        return frozenset(self._handlers)

    async def dispatch(self, req: Request, session: Session) -> Any:
        handler = self._handlers.get(req.op)
        if handler is None:
            raise UnknownOperation(f"unknown operation {req.op[:64]!r}")
        if req.rid is None or req.op not in CACHED_OPS:
            return await handler(req.args, session)
        return await self._dispatch_once(req, handler, session)

    async def _dispatch_once(self, req: Request, handler, session: Session) -> Any:
        key = f"{req.op}\x00{req.rid}"
        now_ms = self._clock_ms()
        first = self._cache.get(key, now_ms)
        if first is not None:
            if type(first) is bytes:
                # The first attempt finished: its result, as remembered (see below).
                return msgpack.unpackb(first, raw=False, strict_map_key=False)
            # A retry while the first attempt runs: wait for its result.
            return await first.wait()
        running = _Running()
        self._cache.put(key, running, now_ms)
        try:
            result = await handler(req.args, session)
        except QnodeError as exc:
            # Failures are not remembered: a retry after a NotLeader/Unavailable must run again.
            self._cache.remove(key)
            running.finish(exc=exc)
            raise
        except BaseException:
            self._cache.remove(key)
            running.finish(cancelled=True)
            raise
        running.finish(result=result)
        # Once done, remember the result packed (~430 bytes per entry instead of ~1 KiB for a
        # future holding the wire dicts: 100,000 remembered ids weighed ~100 MB of RSS). A wire
        # result is msgpack data by construction, so a retry gets an equal value back.
        try:
            packed = self._packer.pack(result)
        except (TypeError, ValueError, OverflowError):
            self._packer.reset()
            return result         # not msgpack data (then the reply fails too): keep the entry
        self._cache.replace(key, running, packed, len(packed) + len(key))
        return result

    # --- queues ---------------------------------------------------------------------------
    async def _op_create_queue(self, args: Mapping, s: Session) -> Any:
        info = await self._api.create_queue(_queue(args), _str_map(args, "attributes"),
                                            _str_map(args, "tags", count_max=TAG_COUNT_MAX))
        return payloads.queue_info_to_wire(info)

    async def _op_delete_queue(self, args: Mapping, s: Session) -> Any:
        await self._api.delete_queue(_queue(args))
        return {}

    async def _op_get_queue(self, args: Mapping, s: Session) -> Any:
        return payloads.queue_info_to_wire(await self._api.get_queue(_queue(args)))

    async def _op_list_queues(self, args: Mapping, s: Session) -> Any:
        prefix = _str(args, "prefix", required=False, length_max=limits.queue_name_length_max)
        return _page(await self._api.list_queues(prefix), args)

    async def _op_get_queue_attributes(self, args: Mapping, s: Session) -> Any:
        names = _str_list(args, "names", required=False, length_max=256) or ["All"]
        return {"attributes": dict(await self._api.get_queue_attributes(_queue(args), names))}

    async def _op_set_queue_attributes(self, args: Mapping, s: Session) -> Any:
        await self._api.set_queue_attributes(_queue(args), _str_map(args, "attributes", required=True))
        return {}

    async def _op_purge_queue(self, args: Mapping, s: Session) -> Any:
        await self._api.purge_queue(_queue(args))
        return {}

    async def _op_tag_queue(self, args: Mapping, s: Session) -> Any:
        await self._api.tag_queue(_queue(args), _str_map(args, "tags", required=True, count_max=TAG_COUNT_MAX))
        return {}

    async def _op_untag_queue(self, args: Mapping, s: Session) -> Any:
        await self._api.untag_queue(_queue(args), _str_list(args, "keys", count_max=TAG_COUNT_MAX, length_max=128))
        return {}

    async def _op_list_queue_tags(self, args: Mapping, s: Session) -> Any:
        return {"tags": dict(await self._api.list_queue_tags(_queue(args)))}

    # --- messages -------------------------------------------------------------------------
    async def _op_send(self, args: Mapping, s: Session) -> Any:
        queue = _queue(args)
        entries = [payloads.send_entry_from_wire(e) for e in _batch(args, "entries")]
        results = await self._api.send_messages(queue, entries)
        return {"results": [payloads.send_result_to_wire(r) for r in results]}

    async def _op_receive(self, args: Mapping, s: Session) -> Any:
        queue = _queue(args)
        msgs = await self._api.receive_messages(
            queue,
            max_count=_int(args, "max_count", 1, limits.receive_count_max, 1),
            wait_ms=_int(args, "wait_ms", 0, limits.wait_ms_max),
            visibility_timeout_ms=_int(args, "visibility_timeout_ms", 0, limits.visibility_timeout_ms_max),
            attempt_id=_str(args, "attempt_id", required=False, length_max=128),
            delete=_bool(args, "delete"))
        return {"messages": [payloads.received_to_wire(m) for m in msgs]}

    async def _op_delete(self, args: Mapping, s: Session) -> Any:
        queue = _queue(args)
        receipts = [_receipt(r) for r in _batch(args, "receipts")]
        sid = _int(args, "subscription", 0, 2**63 - 1)
        try:
            results = await self._api.delete_messages(queue, receipts)
        finally:
            if sid is not None:
                s.settle(sid, len(receipts), receipts)
        return {"results": [payloads.outcome_to_wire(r) for r in results]}

    async def _op_change_visibility(self, args: Mapping, s: Session) -> Any:
        queue = _queue(args)
        items = []
        for item in _batch(args, "items"):
            if not isinstance(item, list) or len(item) != 2:
                raise InvalidParameter("items are [receipt, visibility_timeout_ms] pairs")
            ms = item[1]
            if type(ms) is not int or not 0 <= ms <= limits.visibility_timeout_ms_max:
                raise InvalidParameter(
                    f"visibility_timeout_ms must be an integer in 0..{limits.visibility_timeout_ms_max}")
            items.append((_receipt(item[0]), ms))
        results = await self._api.change_visibility(queue, items)
        return {"results": [payloads.outcome_to_wire(r) for r in results]}

    async def _op_nack(self, args: Mapping, s: Session) -> Any:
        queue = _queue(args)
        receipt = _receipt(args.get("receipt"))
        sid = _int(args, "subscription", 0, 2**63 - 1)
        try:
            await self._api.nack(queue, receipt, _int(args, "delay_ms", 0, limits.visibility_timeout_ms_max),
                                 _str(args, "reason", required=False))
        finally:
            if sid is not None:
                s.settle(sid, 1, [receipt])
        return {}

    async def _op_peek(self, args: Mapping, s: Session) -> Any:
        msgs = await self._api.peek(_queue(args), _int(args, "max_count", 1, limits.receive_count_max, 10))
        return {"messages": [payloads.received_to_wire(m) for m in msgs]}

    async def _op_cancel_scheduled(self, args: Mapping, s: Session) -> Any:
        await self._api.cancel_scheduled(_queue(args), _str(args, "message_id", length_max=128))
        return {}

    # --- dead letters ---------------------------------------------------------------------
    async def _op_list_dead_letter_source_queues(self, args: Mapping, s: Session) -> Any:
        return _page(await self._api.list_dead_letter_source_queues(_queue(args)), args)

    async def _op_start_message_move_task(self, args: Mapping, s: Session) -> Any:
        dest = args.get("destination")
        handle = await self._api.start_message_move_task(
            _queue(args, "source"), None if dest is None else _queue(args, "destination"),
            _int(args, "max_per_second", 1, 500))
        return {"task_handle": handle}

    async def _op_cancel_message_move_task(self, args: Mapping, s: Session) -> Any:
        moved = await self._api.cancel_message_move_task(_str(args, "task_handle"))
        return {"moved_count": moved}

    async def _op_list_message_move_tasks(self, args: Mapping, s: Session) -> Any:
        tasks = await self._api.list_message_move_tasks(_queue(args, "source"),
                                                        _int(args, "max_results", 1, 10, 1))
        return {"tasks": [payloads.move_task_to_wire(t) for t in tasks]}

    # --- push consumers -------------------------------------------------------------------
    async def _op_subscribe(self, args: Mapping, s: Session) -> Any:
        queue = _queue(args)
        prefetch = _int(args, "prefetch", 1, self._prefetch_max, required=True)
        vt = _int(args, "visibility_timeout_ms", 0, limits.visibility_timeout_ms_max)
        consumer = await self._api.open_consumer(queue, prefetch, vt)
        try:
            sid = s.attach_consumer(consumer)
        except BaseException:
            await consumer.close()
            raise
        return {"subscription": sid}

    async def _op_credit(self, args: Mapping, s: Session) -> Any:
        sid = _int(args, "subscription", 0, 2**63 - 1, required=True)
        if not s.settle(sid, _int(args, "count", 1, self._prefetch_max, required=True)):
            raise ResourceNotFound(f"no subscription {sid} on this connection")
        return {}

    async def _op_unsubscribe(self, args: Mapping, s: Session) -> Any:
        await s.detach_consumer(_int(args, "subscription", 0, 2**63 - 1, required=True))
        return {}

    # --- node -----------------------------------------------------------------------------
    async def _op_ping(self, args: Mapping, s: Session) -> Any:
        return {}

    async def _op_status(self, args: Mapping, s: Session) -> Any:
        out = dict(self._status())
        backend_status = getattr(self._api, "status", None)
        if backend_status is not None:
            value = backend_status()
            if inspect.isawaitable(value):
                value = await value
            if isinstance(value, dict):
                out.update(value)     # backend figures (waiters, queues, ...) at top level
        return out
