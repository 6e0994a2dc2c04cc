"""Torn tails and mid-log corruption on real files, and the `wal verify` tool.

Goal: recovery keeps every acknowledged (synced) record whatever happened to the unacknowledged
tail, truncates a torn tail even when later pages of it survived, and refuses to open, naming
file and offset, when an acknowledged record is damaged; `wal verify` reports the same and
`--repair` recovers the valid prefix. Method: write a log with SegmentedLog over RealFs, then
rewrite the segment file: cut it at every byte offset of the last batch, zero its first page,
flip one byte of an acknowledged record; reopen or run the CLI.
"""

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from qnode.wal.cli import wal_cli
from qnode.wal.errors import WalCorruption
from qnode.wal.fs import PAGE_SIZE
from qnode.wal.record import BATCH_RECORD_SIZE, HEADER_SIZE
from qnode.wal.segment import SEGMENT_HEADER_SIZE
from qnode.wal.verify import verify_dir
from tests.unit.wal._helpers import RealFs, body_for, flip_byte, open_log, replayed, segment_paths, write_records

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BATCH_SIZE = BATCH_RECORD_SIZE + HEADER_SIZE + 40


def _acked_log(directory: str, count: int = 5) -> str:
    seglog = open_log(RealFs(), directory)
    write_records(seglog, count)
    seglog.close()
    (path,) = segment_paths(directory)
    return path


def test_cutting_the_last_batch_at_every_byte_keeps_every_acknowledged_record(tmp_path):
    d = str(tmp_path)
    seglog = open_log(RealFs(), d)
    write_records(seglog, 5)                                   # acknowledged: lsn 1..5
    write_records(seglog, 2, per_batch=2, sync=False)          # lsn 6..7, never synced
    seglog.close()
    (path,) = segment_paths(d)
    full = open(path, "rb").read()
    tail_at = SEGMENT_HEADER_SIZE + 5 * BATCH_SIZE
    acked = [(lsn, body_for(lsn)) for lsn in range(1, 6)]
    for cut in range(tail_at, len(full) + 1):
        with open(path, "wb") as f:
            f.write(full[:cut])
        seglog = open_log(RealFs(), d)
        got = replayed(seglog)
        seglog.close()
        if cut == len(full):
            assert got == acked + [(6, body_for(6)), (7, body_for(7))]
        else:
            # A partial batch is cut whole, even when its first record is intact.
            assert got == acked, cut
            assert os.path.getsize(path) == tail_at


def test_torn_batch_with_surviving_later_pages_is_truncated(tmp_path):
    d = str(tmp_path)
    seglog = open_log(RealFs(), d)
    write_records(seglog, 3)                                   # acknowledged
    write_records(seglog, 12, per_batch=12, size=1000, sync=False)   # ~12 KiB, never synced
    seglog.close()
    (path,) = segment_paths(d)
    data = bytearray(open(path, "rb").read())
    tail_at = SEGMENT_HEADER_SIZE + 3 * BATCH_SIZE
    assert len(data) > tail_at + 2 * PAGE_SIZE
    # Power loss wrote the batch's later pages but not the page after its first one.
    hole = (tail_at // PAGE_SIZE + 1) * PAGE_SIZE
    data[hole:hole + PAGE_SIZE] = bytes(PAGE_SIZE)
    with open(path, "wb") as f:
        f.write(bytes(data))
    seglog = open_log(RealFs(), d)
    assert replayed(seglog) == [(lsn, body_for(lsn)) for lsn in range(1, 4)]
    assert os.path.getsize(path) == tail_at
    assert verify_dir(d).ok


@pytest.mark.parametrize("where", ["header", "body"])
def test_flipped_byte_in_an_acknowledged_record_refuses_open_and_verify_reports_it(tmp_path, where):
    d = str(tmp_path)
    path = _acked_log(d, count=9)
    record_at = SEGMENT_HEADER_SIZE + 4 * BATCH_SIZE + BATCH_RECORD_SIZE     # lsn 5
    flip_byte(path, record_at + (2 if where == "header" else HEADER_SIZE + 7))
    with pytest.raises(WalCorruption) as info:
        open_log(RealFs(), d)
    assert (info.value.path, info.value.offset) == (path, record_at)
    report = verify_dir(d)
    assert not report.ok
    (segment,) = report.segments
    assert (segment.state, segment.offset) == ("corrupt", record_at)


def test_verify_cli_standalone_reports_corruption_with_nonzero_exit(tmp_path):
    d = str(tmp_path)
    path = _acked_log(d, count=9)
    record_at = SEGMENT_HEADER_SIZE + 4 * BATCH_SIZE + BATCH_RECORD_SIZE
    ok = subprocess.run([sys.executable, "-m", "qnode.wal.cli", "verify", d], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=60,
                        env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert ok.returncode == 0, ok.stderr
    assert "ok (9 records, lsn 1..9)" in ok.stdout
    flip_byte(path, record_at + HEADER_SIZE)
    bad = subprocess.run([sys.executable, "-m", "qnode.wal.cli", "verify", d], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": REPO_ROOT})
    assert bad.returncode == 1
    assert f"corrupt at offset {record_at}" in bad.stdout


def test_verify_repair_recovers_the_prefix(tmp_path):
    d = str(tmp_path)
    path = _acked_log(d, count=9)
    batch_at = SEGMENT_HEADER_SIZE + 4 * BATCH_SIZE
    flip_byte(path, batch_at + BATCH_RECORD_SIZE + HEADER_SIZE + 1)       # body of lsn 5
    runner = CliRunner()
    result = runner.invoke(wal_cli, ["verify", d])
    assert result.exit_code == 1
    assert os.path.getsize(path) > batch_at        # verify alone changes nothing
    result = runner.invoke(wal_cli, ["verify", d, "--repair"])
    assert result.exit_code == 0, result.output
    assert f"truncated {path} at offset {batch_at}" in result.output
    seglog = open_log(RealFs(), d)
    assert replayed(seglog) == [(lsn, body_for(lsn)) for lsn in range(1, 5)]


def test_verify_reports_a_torn_tail_without_failing(tmp_path):
    d = str(tmp_path)
    path = _acked_log(d, count=3)
    with open(path, "ab") as f:
        f.write(b"\x00" * 50 + b"\x01" + b"\x00" * 49)
    result = CliRunner().invoke(wal_cli, ["verify", d])
    assert result.exit_code == 0
    assert f"torn tail at offset {SEGMENT_HEADER_SIZE + 3 * BATCH_SIZE}" in result.output


def test_zeros_after_the_last_batch_are_preallocated_space_not_a_torn_tail(tmp_path):
    d = str(tmp_path)
    path = _acked_log(d, count=3)
    with open(path, "ab") as f:
        f.write(b"\x00" * 100)
    result = CliRunner().invoke(wal_cli, ["verify", d])
    assert result.exit_code == 0
    assert "ok (3 records, lsn 1..3, 100 bytes preallocated)" in result.output
    seglog = open_log(RealFs(), d)      # recovery drops the zeros and appends after lsn 3
    assert os.path.getsize(path) == SEGMENT_HEADER_SIZE + 3 * BATCH_SIZE
    seglog.write_batch([(16, body_for(4))])
    seglog.sync()
    seglog.close()
    assert replayed(open_log(RealFs(), d)) == [(lsn, body_for(lsn)) for lsn in range(1, 5)]
