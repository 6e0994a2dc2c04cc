"""`qnode dlq ...`: inspect dead-letter queues and move their messages back (SQS move tasks).

`qnode dlq redrive DLQ` starts a message move task on the node: each message goes back to the
queue it was dead-lettered from, or to `--to QUEUE`, at `--rate` messages per second.
`--dry-run` only counts what would move (the DLQ's visible and in-flight messages) and changes
nothing.
"""

from __future__ import annotations

import dataclasses

import click


@click.group()
def dlq() -> None:
    """Dead-letter queues: sources, redrive, move tasks."""


@dlq.command("sources")
@click.argument("queue")
@click.pass_context
def dlq_sources(ctx, queue) -> None:
    """List the queues whose RedrivePolicy targets QUEUE."""
    from qnode.cli import _print, _run_client

    async def run(client):
        return await (await client.get_queue(queue)).dead_letter_source_queues()

    names = _run_client(ctx.obj["address"], run)
    _print(ctx, names, "\n".join(names))


@dlq.command("redrive")
@click.argument("queue")
@click.option("--to", "destination", default=None,
              help="destination queue (default: each message's own source queue)")
@click.option("--rate", type=click.IntRange(1, 500), default=None,
              help="messages per second (SQS MaxNumberOfMessagesPerSecond)")
@click.option("--dry-run", is_flag=True, help="only count the messages that would move")
@click.pass_context
def dlq_redrive(ctx, queue, destination, rate, dry_run) -> None:
    """Move the messages of dead-letter queue QUEUE back."""
    from qnode.cli import _print, _run_client

    async def run(client):
        q = await client.get_queue(queue)
        if dry_run:
            attrs = await q.attributes()
            return {"dry_run": True, "queue": queue,
                    "count": int(attrs["ApproximateNumberOfMessages"])
                    + int(attrs["ApproximateNumberOfMessagesNotVisible"])
                    + int(attrs["ApproximateNumberOfMessagesDelayed"])}
        handle = await client.start_message_move_task(queue, destination, rate)
        return {"dry_run": False, "queue": queue, "task_handle": handle}

    out = _run_client(ctx.obj["address"], run)
    if dry_run:
        _print(ctx, out, f"{out['count']} messages would move from {queue}")
    else:
        _print(ctx, out, f"move task started: {out['task_handle']}")


@dlq.command("tasks")
@click.argument("queue")
@click.pass_context
def dlq_tasks(ctx, queue) -> None:
    """List the move tasks of dead-letter queue QUEUE (newest first)."""
    from qnode.cli import _print, _run_client

    tasks = _run_client(ctx.obj["address"],
                        lambda c: c.list_message_move_tasks(queue, max_results=10))
    rows = [dataclasses.asdict(t) if dataclasses.is_dataclass(t) else dict(t) for t in tasks]
    _print(ctx, rows, "\n".join(f"{r.get('task_handle', '?')} {r.get('status', '?')} "
                                f"moved={r.get('moved_count', '?')}/{r.get('to_move_count', '?')}"
                                for r in rows))


@dlq.command("cancel")
@click.argument("task_handle")
@click.pass_context
def dlq_cancel(ctx, task_handle) -> None:
    """Cancel a running move task; prints how many messages it had moved."""
    from qnode.cli import _print, _run_client

    moved = _run_client(ctx.obj["address"], lambda c: c.cancel_message_move_task(task_handle))
    _print(ctx, {"moved": moved}, f"cancelled; {moved} messages had moved")
