"""Offline check of a WAL directory: the recovery table applied without opening the log.

`verify_dir(path)` reports each segment as `ok`, `torn_tail` (recovery would cut it at the
offset) or `corrupt` (recovery would refuse: acknowledged data damaged at the offset), plus the
checkpoint. The cluster and node ids are taken from the first readable segment header.

`repair=True` changes files only when asked: it cuts the first damaged segment at the start of
the batch holding the first bad record (whole batches only, as recovery does) and removes every
later segment, newest first; what remains is the longest valid prefix. It never touches a
valid log.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from qnode.wal.checkpoint import decode_checkpoint, parse_checkpoint_name
from qnode.wal.fs import FileSystem, RealFs
from qnode.wal.recovery import Decision, judge_log
from qnode.wal.segment import (
    decode_segment_header,
    parse_segment_name,
    scan_segment,
    segment_name,
)


@dataclass(frozen=True, slots=True)
class SegmentReport:
    name: str
    state: str            # "ok" | "torn_tail" | "corrupt" | "retired"
    offset: int           # cut point (torn_tail), first damage (corrupt), end (ok)
    first_lsn: int
    last_lsn: int         # last valid LSN
    record_count: int
    row: str              # recovery table row
    reason: str
    preallocated: int = 0  # zero bytes after the last batch (written ahead by the WAL)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    directory: str
    segments: tuple[SegmentReport, ...]
    checkpoint_lsn: int | None
    checkpoint_problem: str | None
    durable_lsn: int
    repaired: tuple[str, ...]     # actions taken by repair

    @property
    def ok(self) -> bool:
        """True when recovery would open the log (possibly cutting a torn tail)."""
        return all(s.state != "corrupt" for s in self.segments)


def verify_dir(path: str, repair: bool = False, *, fs: FileSystem | None = None) -> VerifyReport:
    """Check every segment of the WAL in `path`; optionally repair. Raises OSError."""
    fs = fs if fs is not None else RealFs()
    directory = str(path)
    names = fs.list(directory)
    bases = sorted(b for b in (parse_segment_name(n) for n in names) if b is not None)
    cluster_id = node_id = 0
    for base in bases:
        header = decode_segment_header(fs.read(posixpath.join(directory, segment_name(base))))
        if not isinstance(header, str):
            cluster_id, node_id = header.cluster_id, header.node_id
            break
    checkpoint_lsn, live_base, checkpoint_problem = _checkpoint(fs, directory, names,
                                                                 cluster_id, node_id)
    reports: list[SegmentReport] = []
    for base in [b for b in bases if b < live_base]:
        reports.append(SegmentReport(segment_name(base), "retired", 0, base, base - 1, 0,
                                     "retired", "retired by the checkpoint; recovery deletes it"))
    live = [b for b in bases if b >= live_base]
    scans = [scan_segment(fs.read(posixpath.join(directory, segment_name(b))), b,
                          cluster_id=cluster_id, node_id=node_id) for b in live]
    durable_lsn, verdicts = judge_log(scans, live_base_lsn=live_base,
                                      checkpoint_lsn=checkpoint_lsn or 0)
    states = {Decision.OK: "ok", Decision.TRUNCATE_TAIL: "torn_tail", Decision.CORRUPT: "corrupt"}
    for scan, verdict in zip(scans, verdicts):
        reports.append(SegmentReport(segment_name(scan.base_lsn), states[verdict.decision],
                                     verdict.offset, scan.base_lsn, scan.last_lsn,
                                     scan.record_count, verdict.row, verdict.reason,
                                     scan.zero_tail))
    repaired: list[str] = []
    if repair:
        repaired = _repair(fs, directory, scans, verdicts)
    return VerifyReport(directory, tuple(reports), checkpoint_lsn, checkpoint_problem,
                        durable_lsn, tuple(repaired))


def _checkpoint(fs: FileSystem, directory: str, names: list[str], cluster_id: int,
                node_id: int) -> tuple[int | None, int, str | None]:
    """(checkpoint lsn, live base lsn, problem) of the newest valid checkpoint."""
    problem = None
    found = sorted(((lsn, n) for n in names if (lsn := parse_checkpoint_name(n)) is not None),
                   reverse=True)
    for lsn, name in found:
        decoded = decode_checkpoint(fs.read(posixpath.join(directory, name)),
                                    cluster_id=cluster_id, node_id=node_id, lsn_from_name=lsn)
        if isinstance(decoded, str):
            problem = f"{name}: {decoded}"
            continue
        return decoded.lsn, decoded.live_base_lsn, problem
    return None, 1, problem


def _repair(fs: FileSystem, directory: str, scans: list, verdicts: list) -> list[str]:
    actions: list[str] = []
    first_bad = next((i for i, v in enumerate(verdicts) if v.decision is not Decision.OK), None)
    if first_bad is None:
        return actions
    for scan in reversed(scans[first_bad + 1:]):
        path = posixpath.join(directory, segment_name(scan.base_lsn))
        fs.remove(path)
        fs.fsync_dir(directory)
        actions.append(f"removed {path}")
    bad = scans[first_bad]
    path = posixpath.join(directory, segment_name(bad.base_lsn))
    if bad.header_problem is not None:
        fs.remove(path)
        fs.fsync_dir(directory)
        actions.append(f"removed {path} (invalid header)")
        return actions
    handle = fs.open(path)
    try:
        fs.truncate(handle, bad.valid_end)
        fs.fsync(handle)
    finally:
        fs.close(handle)
    actions.append(f"truncated {path} at offset {bad.valid_end} (last valid lsn {bad.last_lsn})")
    return actions


def format_report(report: VerifyReport) -> list[str]:
    """One line per segment and checkpoint, for the CLI."""
    lines = []
    if report.checkpoint_lsn is not None:
        lines.append(f"checkpoint lsn {report.checkpoint_lsn}")
    if report.checkpoint_problem:
        lines.append(f"checkpoint invalid: {report.checkpoint_problem}")
    for s in report.segments:
        if s.state == "ok":
            zeros = f", {s.preallocated} bytes preallocated" if s.preallocated else ""
            what = f"ok ({s.record_count} records, lsn {s.first_lsn}..{s.last_lsn}{zeros})"
        elif s.state == "torn_tail":
            what = f"torn tail at offset {s.offset}: {s.reason}"
        elif s.state == "corrupt":
            what = f"corrupt at offset {s.offset}: {s.reason}"
        else:
            what = f"retired: {s.reason}"
        lines.append(f"{s.name}: {what}")
    lines.extend(report.repaired)
    lines.append("result: " + ("ok" if report.ok else "CORRUPT"))
    return lines
