"""`RemoteMetadata.propose` (qnode/cluster/remote.py), a node without the metadata role. Method:
a fake membership lists one metadata member and a fake pool plays it: it commits the command,
then never answers the cache pull. Checks that the caller's deadline holds and that the outcome
is reported as committed, not as "not done" (a retry would apply it twice)."""

from __future__ import annotations

import asyncio

import pytest

from qnode.cluster.remote import RemoteMetadata
from qnode.membership.types import Member, Meta, State
from qnode.metadata import commands
from qnode.protocol.errors import RequestTimeout


class _Membership:
    def members(self) -> list[Member]:
        return [Member("m1", "127.0.0.1:1", 1, State.ALIVE, Meta.build(roles=("metadata",)))]


class _Member:
    """The pool, playing a metadata member that commits at index 7 and then goes silent."""

    def __init__(self) -> None:
        self.ops: list[str] = []

    def address_of(self, node_id: str) -> str:
        return "127.0.0.1:2"

    async def request(self, node_id: str, op: str, args: dict, timeout_s: float) -> dict:
        self.ops.append(op)
        if op == "meta_submit":
            return {"index": 7}
        await asyncio.sleep(timeout_s)                 # the pull: no answer within its timeout
        raise AssertionError("the caller's deadline should have ended the wait")


async def test_a_committed_proposal_whose_cache_pull_stalls_keeps_the_deadline():
    remote = RemoteMetadata("f1", pool=_Member(), membership=_Membership())
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RequestTimeout, match="committed at index 7"):
        await remote.propose(commands.create_queue("q"), timeout_s=0.5)
    assert loop.time() - started < 3        # pulls used to add up to 3 x 3 s beyond it
    assert remote.pool.ops[0] == "meta_submit" and remote.pool.ops.count("meta_submit") == 1
