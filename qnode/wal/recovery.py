"""Recovery decision table: what to do with each segment a scan found (STYLE.md §2.2).

Every on-disk state of a segment has a named outcome. The rows are tried in order; the first
whose condition holds decides. `durable_lsn` is the highest LSN declared durable by any valid
batch header anywhere in the log (found even past damage) or covered by the checkpoint.

    row                      condition (facts from the scan)                      decision
    -----------------------  ---------------------------------------------------  -------------
    header_invalid           segment header bad (crc, magic, version, ids, name)  corrupt
    lsn_break                valid record whose LSN is a gap or goes backwards,   corrupt
                             or segment base != predecessor's next LSN / the
                             checkpoint's live base (retired segments excepted)
    all_valid                no damage                                             ok
    damage_in_sealed         damage in a segment that is not the last one: a roll  corrupt
      _segment               fsyncs a segment before its successor exists, so all
                             of it was durable
    damage_above_durable     bad CRC / short read / incomplete batch in the last   truncate_tail
                             segment, and the batch holding it starts above        (cut at the
                             durable_lsn                                           batch start)
    damage_at_or_below       the same, but the batch starts at or below            corrupt
      _durable               durable_lsn: acknowledged data was damaged

One more check applies to the log as a whole, after the rows:

    ends_below_durable       the last segment's valid records end below            corrupt
                             durable_lsn (a newer segment or batch is missing)

Why a torn batch is cut at its start even if later pages survived: power loss may write a
batch's pages out of order, and nothing in it was acknowledged (its fsync never returned), so
keeping a valid-looking later page would keep records after a hole. Cutting whole batches also
makes `append_many` atomic across a crash.

Pure: no I/O and no logging here; `log.py` applies the verdicts and logs one line per segment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from qnode.wal.segment import SegmentScan


class Decision(str, Enum):
    OK = "ok"
    TRUNCATE_TAIL = "truncate_tail"
    CORRUPT = "corrupt"


@dataclass(frozen=True, slots=True)
class SegmentFacts:
    """The facts about one segment that the table reads; built by `facts_of`."""

    header_valid: bool
    lsn_break: bool          # inside the segment or against its predecessor
    damaged: bool            # bad CRC, short read, or incomplete batch
    cut_lsn: int             # first LSN of the batch holding the damage
    is_last: bool            # the newest segment (the only one a crash can tear)


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    row: str                 # the table row that decided
    offset: int              # byte offset the decision is about (cut point / damage)
    reason: str


_Row = tuple[str, Callable[[SegmentFacts, int], bool], Decision]

RECOVERY_TABLE: tuple[_Row, ...] = (
    ("header_invalid", lambda f, d: not f.header_valid, Decision.CORRUPT),
    ("lsn_break", lambda f, d: f.lsn_break, Decision.CORRUPT),
    ("all_valid", lambda f, d: not f.damaged, Decision.OK),
    ("damage_in_sealed_segment", lambda f, d: not f.is_last, Decision.CORRUPT),
    ("damage_above_durable", lambda f, d: f.cut_lsn > d, Decision.TRUNCATE_TAIL),
    ("damage_at_or_below_durable", lambda f, d: f.cut_lsn <= d, Decision.CORRUPT),
)


def facts_of(scan: SegmentScan, *, expected_base_lsn: int, is_last: bool) -> SegmentFacts:
    return SegmentFacts(
        header_valid=scan.header_problem is None,
        lsn_break=scan.lsn_problem is not None or scan.base_lsn != expected_base_lsn,
        damaged=scan.damage is not None,
        cut_lsn=scan.cut_lsn,
        is_last=is_last,
    )


def decide(facts: SegmentFacts, durable_lsn: int) -> tuple[str, Decision]:
    """The (row name, decision) of the first matching row; the table is total."""
    for name, condition, decision in RECOVERY_TABLE:
        if condition(facts, durable_lsn):
            return name, decision
    raise AssertionError(f"recovery table is not total: {facts} durable={durable_lsn}")


def judge(scan: SegmentScan, *, expected_base_lsn: int, is_last: bool,
          durable_lsn: int) -> Verdict:
    """Decide one segment and explain it: the offset and reason a log line or error will name."""
    facts = facts_of(scan, expected_base_lsn=expected_base_lsn, is_last=is_last)
    row, decision = decide(facts, durable_lsn)
    if row == "header_invalid":
        return Verdict(decision, row, 0, str(scan.header_problem))
    if row == "lsn_break":
        if scan.lsn_problem is not None:
            return Verdict(decision, row, scan.lsn_problem.offset, scan.lsn_problem.reason)
        return Verdict(decision, row, 0,
                       f"segment starts at lsn {scan.base_lsn}, expected {expected_base_lsn}")
    if row == "all_valid":
        return Verdict(decision, row, scan.valid_end, "every record valid")
    assert scan.damage is not None
    if row == "damage_in_sealed_segment":
        return Verdict(decision, row, scan.damage.offset,
                       f"{scan.damage.reason} in a sealed segment (fsynced before the next one "
                       f"was created): acknowledged data damaged")
    if decision is Decision.TRUNCATE_TAIL:
        return Verdict(decision, row, scan.valid_end,
                       f"{scan.damage.reason} at offset {scan.damage.offset} in a batch from lsn "
                       f"{scan.cut_lsn} above durable lsn {durable_lsn}: torn tail")
    return Verdict(decision, row, scan.damage.offset,
                   f"{scan.damage.reason} in a batch from lsn {scan.cut_lsn} at or below durable "
                   f"lsn {durable_lsn}: acknowledged data damaged")


def judge_log(scans: list[SegmentScan], *, live_base_lsn: int,
              checkpoint_lsn: int) -> tuple[int, list[Verdict]]:
    """Judge every segment of a log (oldest first); returns (durable_lsn, verdicts).

    Keeps going past a corrupt segment so `wal verify` can report every segment; `open`
    refuses at the first corrupt verdict.
    """
    durable_lsn = max([checkpoint_lsn] + [s.declared_durable_lsn for s in scans])
    verdicts: list[Verdict] = []
    expected = live_base_lsn
    for i, scan in enumerate(scans):
        verdicts.append(judge(scan, expected_base_lsn=expected, is_last=i == len(scans) - 1,
                              durable_lsn=durable_lsn))
        expected = scan.next_lsn
    if scans and verdicts[-1].decision is not Decision.CORRUPT and scans[-1].last_lsn < durable_lsn:
        verdicts[-1] = Verdict(Decision.CORRUPT, "ends_below_durable", scans[-1].valid_end,
                               f"log ends at lsn {scans[-1].last_lsn} but lsn {durable_lsn} was "
                               f"declared durable: records are missing")
    return durable_lsn, verdicts
