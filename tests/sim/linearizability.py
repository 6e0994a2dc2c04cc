"""A small linearizability checker (Wing & Gong search with memoisation, as in Knossos/Porcupine).

Owns: checking one key's history of create/delete/get operations against a sequential model of
one queue's metadata. An operation is (invoke_ns, complete_ns | None, f, arg, ret): complete None
means the outcome is unknown (the op may have taken effect at any time after its invocation, or
never). Histories are kept small per key (the workload caps them), so the exponential worst case
stays cheap; `search_steps_max` bounds it anyway (exceeding it is reported, not passed).

Model (SQS CreateQueue/DeleteQueue/GetQueueAttributes on one name), state = attributes or None:
  create(a): None -> a, "ok"; a -> a, "ok" (idempotent); b != a -> b, "exists"
  delete():  a -> None, "ok"; None -> None, "missing"
  get():     s -> s, returns s
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

search_steps_max = 2_000_000


@dataclass(frozen=True, slots=True)
class Op:
    client: int
    invoke_ns: int
    complete_ns: int | None
    f: str
    arg: Any
    ret: Any


def model_step(state: Any, f: str, arg: Any) -> tuple[Any, Any]:
    """Returns (new_state, expected_ret)."""
    if f == "create":
        if state is None:
            return arg, "ok"
        return state, ("ok" if state == arg else "exists")
    if f == "delete":
        return None, ("ok" if state is not None else "missing")
    if f == "get":
        return state, state
    assert False, f


def check(ops: list[Op]) -> tuple[bool, str]:
    """True if the history is linearizable from the initial state None."""
    n = len(ops)
    assert n <= 62
    inf = float("inf")
    resp = [op.complete_ns if op.complete_ns is not None else inf for op in ops]
    must = 0
    for i, op in enumerate(ops):
        if op.complete_ns is not None:
            must |= 1 << i
    seen: set[tuple[int, Any]] = set()
    steps = 0
    stack: list[tuple[int, Any]] = [(0, None)]
    while stack:
        mask, state = stack.pop()
        if mask & must == must:
            return True, ""
        if (mask, state) in seen:
            continue
        seen.add((mask, state))
        steps += 1
        if steps > search_steps_max:
            return False, "search budget exceeded"
        # The earliest completion among ops not yet linearized bounds which op can go next.
        horizon = min((resp[i] for i in range(n) if not mask >> i & 1 and resp[i] != inf), default=inf)
        for i in range(n):
            if mask >> i & 1:
                continue
            op = ops[i]
            if op.invoke_ns > horizon:
                continue
            new_state, expected = model_step(state, op.f, op.arg)
            if op.complete_ns is not None and expected != op.ret:
                continue
            stack.append((mask | 1 << i, new_state))
    return False, "no linearization"
