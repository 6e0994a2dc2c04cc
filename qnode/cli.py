"""The `qnode` command: start a node, and talk to one (send, receive, queue ..., dlq, bench).

This is the only module that configures logging and builds a `Node`. Exit codes are stable for
scripts: 0 success, 1 the operation failed (a typed qnode error, printed as one line),
2 usage error (click), 3 no node answered at the given address, 4 the node could not start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.handlers
import os
import signal
import sys
from typing import Any

import click

from qnode.config import ConfigError, load_config
from qnode.protocol.errors import QnodeError, Unavailable

EXIT_FAILED = 1
EXIT_UNREACHABLE = 3
EXIT_START_FAILED = 4
DEFAULT_ADDRESS = "127.0.0.1:7700"

log = logging.getLogger("qnode")


def _refuse_optimize() -> None:
    # `python -O` strips every assert, and qnode's cores rely on them (STYLE.md §2.6).
    if sys.flags.optimize:
        click.echo("qnode refuses to run under python -O: it strips the safety assertions", err=True)
        sys.exit(EXIT_START_FAILED)


def _ensure_standard_fds() -> None:
    """Put /dev/null on any of fds 0-2 that is closed (a node started by a supervisor that
    closed them). Otherwise the next file opened takes the lowest free number: a WAL segment
    or the data-directory lock could become fd 2, and anything written to stderr (a log line,
    a C library's warning, a crash trace, the snapshot child's error) would land in it."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)   # the lowest free number: this one
            assert opened == fd, (opened, fd)
    # Python set these to None at startup for a closed descriptor; give them the null device.
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)


STARTUP_LOG_RECORDS_MAX = 10_000


def _configure_logging(level: str) -> logging.handlers.MemoryHandler:
    """Log to stderr, holding startup records back until `_release_startup_logs`: the first
    line a node prints is `listening binary=... http=...` (DESIGN.md), which scripts parse."""
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    held = logging.handlers.MemoryHandler(STARTUP_LOG_RECORDS_MAX, flushLevel=logging.CRITICAL + 1,
                                          target=stream, flushOnClose=True)
    root = logging.getLogger()
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    root.addHandler(held)
    return held


def _release_startup_logs(held: logging.handlers.MemoryHandler, first: str | None) -> None:
    """Print `first` (if any), then the held startup records, then log directly from now on."""
    root = logging.getLogger()
    stream = held.target
    assert stream is not None
    if first is not None:
        stream.handle(logging.LogRecord("qnode", logging.INFO, __file__, 0, first, None, None))
    held.flush()
    root.removeHandler(held)
    root.addHandler(stream)


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _run_client(address: str, body) -> Any:
    """Run `body(client)` against the node at `address`, mapping failures to exit codes."""
    from qnode.client import Client

    async def main():
        async with Client([address], attempts_max=1) as client:
            return await body(client)

    try:
        return asyncio.run(main())
    except Unavailable as exc:
        _fail(f"no qnode node answered at {address} ({exc.message})", EXIT_UNREACHABLE)
    except QnodeError as exc:
        _fail(f"{exc.code.name}: {exc.message}", EXIT_FAILED)
    except OSError as exc:
        _fail(f"no qnode node answered at {address} ({exc.strerror or exc})", EXIT_UNREACHABLE)


def _print(ctx: click.Context, data: Any, text: str) -> None:
    if ctx.obj.get("json"):
        click.echo(json.dumps(data, sort_keys=True, default=str))
    else:
        click.echo(text)


def _message_dict(msg) -> dict:
    body = msg.body
    try:
        shown = body.decode()
    except UnicodeDecodeError:
        shown = body.hex()
    return {"id": msg.id, "body": shown, "receipt": msg.receipt,
            "attributes": {k: getattr(v, "string_value", v) for k, v in (msg.attributes or {}).items()},
            "system": dict(msg.system or {})}


@click.group()
@click.option("--address", "-a", default=DEFAULT_ADDRESS, envvar="QNODE_ADDRESS", show_default=True,
              help="binary-protocol address of a node (client commands)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def main(ctx: click.Context, address: str, as_json: bool) -> None:
    """qnode: a durable message queue with SQS semantics."""
    _ensure_standard_fds()
    _refuse_optimize()
    ctx.ensure_object(dict)
    ctx.obj["address"] = address
    ctx.obj["json"] = as_json


@main.command()
@click.option("--roles", help="comma-separated: frontend,metadata,backend")
@click.option("--node-id")
@click.option("--listen", help="binary protocol HOST:PORT (port 0 picks a free port)")
@click.option("--http", help="SQS API / metrics HOST:PORT, or 'off'")
@click.option("--data-dir")
@click.option("--seeds", help="comma-separated HOST:PORT of existing members")
@click.option("--cell")
@click.option("--bootstrap-expect", type=int)
@click.option("--account-id")
@click.option("--region")
@click.option("--config", "config_file", type=click.Path(dir_okay=False))
@click.option("--insecure-no-auth", is_flag=True, default=None,
              help="allow non-loopback listeners without authentication")
@click.option("--log-level")
def start(config_file, **flags) -> None:
    """Run a node in the foreground until SIGTERM/SIGINT."""
    try:
        config = load_config(flags, config_file=config_file)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(2)
    held = _configure_logging(config.log_level)
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:  # uvloop is a dependency; this only guards exotic platforms
        runner = asyncio.run
    try:
        code = runner(_serve(config, held))
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


async def _serve(config, held: logging.handlers.MemoryHandler) -> int:
    from qnode.node import Node, StartupError
    from qnode.protocol.errors import WalCorruptionError as WalCorruption

    node = Node(config)
    try:
        addresses = await node.start()
    except (StartupError, WalCorruption) as exc:
        log.error("%s", exc)
        _release_startup_logs(held, None)
        return EXIT_START_FAILED
    except OSError as exc:
        log.error("cannot start: %s", exc)
        _release_startup_logs(held, None)
        return EXIT_START_FAILED
    _release_startup_logs(held, addresses.line())
    log.info("node %s started: roles=%s data_dir=%s", config.node_id, ",".join(config.roles),
             config.data_dir)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals_seen = 0

    def on_signal() -> None:
        nonlocal signals_seen
        signals_seen += 1
        if signals_seen > 1:
            log.warning("second signal: exiting at once")
            import os
            os._exit(1)
        log.info("signal received: shutting down")
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await stop.wait()
    await node.stop()
    log.info("stopped cleanly")
    return 0


# --- messages ---------------------------------------------------------------------------------

def _parse_attrs(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE")
        out[key] = value
    return out


@main.command()
@click.argument("queue")
@click.argument("body", required=False)
@click.option("--delay", type=float, default=None, help="seconds before the message is visible")
@click.option("--group-id", help="MessageGroupId (FIFO queues)")
@click.option("--dedup-id", help="MessageDeduplicationId (FIFO queues)")
@click.option("--attr", "attrs", multiple=True, help="string message attribute KEY=VALUE")
@click.pass_context
def send(ctx, queue, body, delay, group_id, dedup_id, attrs) -> None:
    """Send BODY (or stdin with '-' or no BODY) to QUEUE."""
    data = sys.stdin.buffer.read() if body in (None, "-") else body.encode()
    attributes = _parse_attrs(attrs)

    async def run(client):
        q = await client.get_queue(queue)
        return await q.send(data, delay=delay, attributes=attributes or None,
                            group_id=group_id, dedup_id=dedup_id)

    result = _run_client(ctx.obj["address"], run)
    _print(ctx, {"id": result.id}, result.id)


@main.command()
@click.argument("queue")
@click.option("--max", "max_messages", type=int, default=1, show_default=True)
@click.option("--wait", type=float, default=0.0, show_default=True, help="long-poll seconds (0-20)")
@click.option("--visibility", type=float, default=None, help="visibility timeout in seconds")
@click.option("--delete", is_flag=True, help="delete on receipt (at-most-once)")
@click.pass_context
def receive(ctx, queue, max_messages, wait, visibility, delete) -> None:
    """Receive up to --max messages from QUEUE. Exit 0 even when none arrived."""

    async def run(client):
        q = await client.get_queue(queue)
        return await q.receive(max_messages=max_messages, wait=wait,
                               visibility_timeout=visibility, delete=delete)

    msgs = _run_client(ctx.obj["address"], run)
    data = [_message_dict(m) for m in msgs]
    _print(ctx, data, "\n".join(d["body"] for d in data))


# --- queues -----------------------------------------------------------------------------------

@main.group()
def queue() -> None:
    """Create, delete, list, inspect, purge and peek queues."""


@queue.command("create")
@click.argument("name")
@click.option("--attr", "attrs", multiple=True, help="SQS queue attribute KEY=VALUE")
@click.pass_context
def queue_create(ctx, name, attrs) -> None:
    attributes = _parse_attrs(attrs)

    async def run(client):
        q = await client.create_queue(name, attributes=attributes)
        return await q.attributes()

    attributes_out = _run_client(ctx.obj["address"], run)
    _print(ctx, {"name": name, "attributes": attributes_out}, name)


@queue.command("delete")
@click.argument("name")
@click.pass_context
def queue_delete(ctx, name) -> None:
    _run_client(ctx.obj["address"], lambda c: c.delete_queue(name))
    _print(ctx, {"deleted": name}, f"deleted {name}")


@queue.command("list")
@click.option("--prefix", default=None)
@click.pass_context
def queue_list(ctx, prefix) -> None:
    names = _run_client(ctx.obj["address"], lambda c: c.list_queues(prefix=prefix))
    _print(ctx, names, "\n".join(names))


@queue.command("attributes")
@click.argument("name")
@click.pass_context
def queue_attributes(ctx, name) -> None:
    async def run(client):
        return await (await client.get_queue(name)).attributes()

    attrs = _run_client(ctx.obj["address"], run)
    _print(ctx, attrs, "\n".join(f"{k}={v}" for k, v in sorted(attrs.items())))


@queue.command("purge")
@click.argument("name")
@click.pass_context
def queue_purge(ctx, name) -> None:
    async def run(client):
        await (await client.get_queue(name)).purge()

    _run_client(ctx.obj["address"], run)
    _print(ctx, {"purged": name}, f"purged {name}")


@queue.command("peek")
@click.argument("name")
@click.option("-n", "count", type=int, default=10, show_default=True)
@click.pass_context
def queue_peek(ctx, name, count) -> None:
    """Show visible messages without receiving them (no side effects)."""
    async def run(client):
        return await (await client.get_queue(name)).peek(count)

    msgs = _run_client(ctx.obj["address"], run)
    data = [_message_dict(m) for m in msgs]
    _print(ctx, data, "\n".join(f"{d['id']} {d['body']}" for d in data))


@main.command()
@click.pass_context
def status(ctx) -> None:
    """One-line status of the node at --address."""
    info = _run_client(ctx.obj["address"], lambda c: c.status())
    _print(ctx, info, " ".join(f"{k}={v}" for k, v in sorted(info.items())
                               if not isinstance(v, (dict, list))))


def _attach_optional_commands() -> None:
    """Command groups owned by other packages (wal verify, dlq, bench, cluster)."""
    from qnode.wal.cli import wal_cli

    main.add_command(wal_cli, "wal")
    from qnode.bench import bench

    main.add_command(bench, "bench")
    from qnode.dlq_cli import dlq

    main.add_command(dlq, "dlq")
    from qnode.cluster.cli import cluster

    main.add_command(cluster, "cluster")


_attach_optional_commands()

if __name__ == "__main__":
    main()
