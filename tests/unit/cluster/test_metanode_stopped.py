"""A `MetadataNode` whose Raft replica fail-stopped (qnode/cluster/metanode.py). Method: a
three-voter store on a MemFs whose fsync fails, so the Ready that follows n2's heartbeat (a new
term to persist) ends `run()` for real; a fake peer pool stands for the leader and counts what is forwarded.
Checks that a forwarded proposal is sent once (the leader has it; sending it again would commit
it twice) and that neither a proposal nor a barrier retries until its deadline."""

from __future__ import annotations

import asyncio
import errno

import pytest

from qnode.cluster.metanode import MetadataNode
from qnode.metadata import commands
from qnode.metadata.raft.core import RaftConfig
from qnode.metadata.raft.messages import AppendEntries
from qnode.metadata.store import MetadataStore
from qnode.protocol.errors import RequestTimeout, Unavailable
from qnode.wal.fs import MemFs
from qnode.wal.log import SegmentedLog


class _Leader:
    """The peer pool, answering as the leader n2 would: it committed everything at index 5."""

    def __init__(self) -> None:
        self.forwarded: list[str] = []

    async def request(self, node_id: str, op: str, args: dict, timeout_s: float) -> dict:
        assert node_id == "n2"
        self.forwarded.append(op)
        if op == "meta_propose":
            return {"index": 5}
        assert op == "cluster_status", op
        return {"raft": {"commit": 5}}


class _Silent:
    def send(self, to_node_id, msg) -> None:
        pass


@pytest.fixture
async def stopped(tmp_path):
    fs = MemFs()
    store = MetadataStore.build("n1", ["n1", "n2", "n3"],
                                SegmentedLog.open(fs, "/raft", cluster_id=7, node_id=1), _Silent(),
                                config=RaftConfig(election_ticks=2, heartbeat_ticks=1),
                                tick_interval_ms=5)
    fs.fsync_error = OSError(errno.EIO, "Input/output error")
    run = asyncio.get_running_loop().create_task(store.driver.run())
    # n2's heartbeat in a new term: n1 follows n2 and must persist the term, which fails.
    store.receive(AppendEntries(term=2, src="n2", dst="n1", prev_index=0, prev_term=0,
                                entries=(), commit=0))
    await asyncio.wait({run}, timeout=30)
    assert run.done() and isinstance(run.exception(), OSError)
    assert store.driver.core.leader == "n2"
    node = MetadataNode("n1", tmp_path, bootstrap_expect=0, has_seeds=False, pool=_Leader())
    node.store = store
    return node


async def test_a_forwarded_proposal_is_sent_once_and_its_outcome_is_unknown(stopped):
    async with asyncio.timeout(3):                 # far below the 30 s deadline asked for
        with pytest.raises(RequestTimeout, match="outcome unknown"):
            await stopped.propose(commands.delete_queue("q"), timeout_s=30)
    assert stopped.pool.forwarded == ["meta_propose"]


async def test_a_barrier_fails_at_once(stopped):
    async with asyncio.timeout(3):
        with pytest.raises(Unavailable, match="Input/output error"):
            await stopped.barrier(timeout_s=30)
    assert stopped.pool.forwarded == ["cluster_status"]
