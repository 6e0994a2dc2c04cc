"""The request-path benchmark still drives a real in-process node end to end (it is the tool
that says where the node's CPU goes, so it must not rot). Method: a short run with a few virtual
clients, single and batched; every client completes full send/receive/delete cycles and the
WAL groups records."""

from __future__ import annotations

import pytest

from benchmarks.bench_request_path import run


@pytest.mark.parametrize("batch", [1, 10])
async def test_virtual_clients_complete_cycles_through_a_real_node(batch: int) -> None:
    result = await run(clients=4, seconds=0.3, batch=batch)
    assert result["requests"] >= 4 * 3                 # each client: send, receive, delete
    assert result["messages_per_s"] > 0
    assert result["records_per_fsync"] >= 1.0
    assert 0 < result["main_cpu_us_per_request"] < 1_000_000
