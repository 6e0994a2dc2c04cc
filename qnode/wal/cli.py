"""`wal` click command group: offline tools for a WAL directory.

The lead attaches it to the main CLI with `main.add_command(wal_cli)`; standalone:
`python -m qnode.wal.cli verify DIR [--repair]`. Exit status: 0 when recovery would open the log
(a torn tail is fine), 1 when a segment is corrupt (after `--repair`: whether it still is), 2 when
the directory cannot be read.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

import click

from qnode.wal.verify import format_report, verify_dir


@click.group(name="wal")
def wal_cli() -> None:
    """Inspect and repair write-ahead log directories."""


NODE_LOGS = ("queues", "raft")     # the WALs inside a node's --data-dir


def _logs_in(directory: str) -> list[str]:
    """The WAL directories to check: DIRECTORY itself, or the logs of a node's data dir."""
    root = Path(directory)
    if any(p.suffix == ".wal" for p in root.iterdir()):
        return [directory]
    return [str(root / name) for name in NODE_LOGS if (root / name).is_dir()]


def _lock_path(log_dir: str) -> Path:
    root = Path(log_dir)
    return root.parent / "LOCK" if root.name in NODE_LOGS else root / "LOCK"


def _refuse_if_running(log_dir: str) -> None:
    """--repair on a log a running node holds would cut files under it: take the node's lock."""
    lock = _lock_path(log_dir)
    if not lock.exists():
        return
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BlockingIOError:
        click.echo(f"refusing to repair {log_dir}: a running qnode process holds {lock}; "
                   "stop it first", err=True)
        sys.exit(2)
    finally:
        os.close(fd)


@wal_cli.command(name="verify")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--repair", is_flag=True, default=False,
              help="Cut the log at the first bad record and remove later segments.")
def verify_command(directory: str, repair: bool) -> None:
    """Check every segment in DIRECTORY (a WAL directory, or a node's --data-dir, whose
    queues/ and raft/ logs are both checked): ok / torn tail at offset / corrupt at offset."""
    logs = _logs_in(directory)
    if not logs:
        click.echo(f"no WAL segments in {directory} (nor a node data dir with queues/ or raft/)",
                   err=True)
        sys.exit(2)
    all_ok = True
    for log_dir in logs:
        if repair:
            _refuse_if_running(log_dir)
        try:
            report = verify_dir(log_dir, repair=repair)
        except OSError as e:
            click.echo(f"cannot read {log_dir}: {e}", err=True)
            sys.exit(2)
        if len(logs) > 1:
            click.echo(f"== {log_dir}")
        for line in format_report(report):
            click.echo(line)
        ok = report.ok
        if repair and report.repaired:
            ok = verify_dir(log_dir).ok
            click.echo("after repair: " + ("ok" if ok else "CORRUPT"))
        all_ok = all_ok and ok
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    wal_cli()
