"""`wal` click command group: offline tools for a WAL directory.

The lead attaches it to the main CLI with `main.add_command(wal_cli)`; standalone:
`python -m qnode.wal.cli verify DIR [--repair]`. Exit status: 0 when recovery would open the log
(a torn tail is fine), 1 when a segment is corrupt (after `--repair`: whether it still is), 2 when
the directory cannot be read.
"""

from __future__ import annotations

import sys

import click

from qnode.wal.verify import format_report, verify_dir


@click.group(name="wal")
def wal_cli() -> None:
    """Inspect and repair write-ahead log directories."""


@wal_cli.command(name="verify")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--repair", is_flag=True, default=False,
              help="Cut the log at the first bad record and remove later segments.")
def verify_command(directory: str, repair: bool) -> None:
    """Check every segment in DIRECTORY: ok / torn tail at offset / corrupt at offset."""
    try:
        report = verify_dir(directory, repair=repair)
    except OSError as e:
        click.echo(f"cannot read {directory}: {e}", err=True)
        sys.exit(2)
    for line in format_report(report):
        click.echo(line)
    if repair and report.repaired:
        after = verify_dir(directory)
        click.echo("after repair: " + ("ok" if after.ok else "CORRUPT"))
        sys.exit(0 if after.ok else 1)
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    wal_cli()
