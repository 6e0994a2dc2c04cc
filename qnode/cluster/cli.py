"""`qnode cluster ...`: look at the cluster from outside.

`qnode cluster status [--json] [--seeds HOST:PORT,...]` asks the first of the given nodes that
answers (default: the global `--address`) for its members (SWIM) and then every metadata member
for its Raft position; prints a table, or one JSON object with `--json` (shape in
qnode/cluster/status.py). Exit codes as the rest of the CLI: 3 when no node answered.
"""

from __future__ import annotations

import asyncio
import json

import click


@click.group()
def cluster() -> None:
    """Cluster membership and the metadata Raft group."""


@cluster.command("status")
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
@click.option("--seeds", default=None, help="comma-separated HOST:PORT of nodes to ask (default: --address)")
@click.option("--timeout", default=2.0, show_default=True, help="seconds per node")
@click.pass_context
def cluster_status(ctx: click.Context, as_json: bool, seeds: str | None, timeout: float) -> None:
    """Members with roles and state, the Raft leader and term, each member's log position."""
    from qnode.cli import EXIT_UNREACHABLE, _fail
    from qnode.cluster.status import gather, render_table
    from qnode.protocol.errors import Unavailable

    addresses = [a.strip() for a in (seeds or ctx.obj["address"]).split(",") if a.strip()]
    try:
        status = asyncio.run(gather(addresses, timeout))
    except Unavailable as exc:
        _fail(exc.message, EXIT_UNREACHABLE)
        return
    if as_json or ctx.obj.get("json"):
        click.echo(json.dumps(status, sort_keys=True))
    else:
        click.echo(render_table(status))
