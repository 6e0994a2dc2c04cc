"""Engine bugs found by the property tests (tests/property/test_engine_stateful.py), one per test.

Method: the shrunk failing example replayed through `Harness` (virtual clock), asserting the rule
the state machine found broken, so the bug stays fixed even when hypothesis draws differently."""

from __future__ import annotations

import json

from qnode.frontend.api import SendEntry

from .harness import Harness


def _redrive(h: Harness, dlq: str) -> str:
    handle = h.call("start_move_task", dlq, None, None, h.now)
    while h.call("move_step", handle, 1, h.now):
        pass
    return handle


def test_list_move_tasks_puts_the_newest_first_when_two_start_in_the_same_ms() -> None:
    """StandardQueueMachine: two redrives at one virtual instant; ListMessageMoveTasks with
    MaxResults=1 returned the older task (ties on StartedTimestamp kept creation order)."""
    h = Harness()
    h.create("dlq")
    policy = json.dumps({"deadLetterTargetArn": h.engine.queue_arn("dlq"), "maxReceiveCount": 1})
    h.create("q", {"RedrivePolicy": policy})
    h.send("q", *[SendEntry(b"m%d" % i, entry_id=str(i)) for i in range(2)])
    assert len(h.recv("q", 2, vis_ms=0)) == 2          # received once (the maximum) ...
    assert h.recv("q", 2, vis_ms=0) == []              # ... so the next receive dead-letters both
    assert h.counts("dlq")[0] == 2
    first = _redrive(h, "dlq")
    assert len(h.recv("q", 1, vis_ms=0)) == 1
    assert h.recv("q", 2, vis_ms=0) != []              # one dies again, the other is delivered
    assert h.counts("dlq")[0] == 1
    second = _redrive(h, "dlq")
    newest, older = h.engine.list_move_tasks("dlq", 2)
    assert (newest.task_handle, older.task_handle) == (second, first)
    assert newest.moved_count == 1 and older.moved_count == 2
    [only] = h.engine.list_move_tasks("dlq", 1)
    assert only.task_handle == second
