"""MemRecordLog: an in-memory stand-in for `qnode.wal.log.SegmentedLog`, record-granular.

Owns: an ordered list of (lsn, kind, body) records, the durable LSN, and one checkpoint. It has the
subset of SegmentedLog's API that RaftStorage uses, so storage code and tests run the same way on
either:

    log.write_batch([(kind, body), ...]) -> last_lsn   # written, not yet durable
    log.sync()                                         # everything written becomes durable
    log.replay() -> list[Record]                       # records after the checkpoint, in order
    log.write_checkpoint(lsn, payload)                 # atomic and durable; retires records <= lsn
    log.checkpoint -> (lsn, payload) | None
    log.last_lsn
    log.crash(rng, tear_probability)                   # simulator only: power loss

Crash model (what a WAL's recovery leaves after a power loss): every durable record survives; of
the records written after the last sync, with `tear_probability` a random prefix survives (the
torn tail is truncated by recovery, so whole records survive or vanish), else none.
Invariant: lsns are contiguous and increasing; checkpoint lsn <= durable lsn.
"""

from __future__ import annotations

import random

from qnode.wal.record import Record


class MemRecordLog:
    def __init__(self) -> None:
        self._records: list[tuple[int, int, bytes]] = []
        self._durable_lsn = 0
        self.last_lsn = 0
        self.checkpoint: tuple[int, bytes] | None = None
        self.sync_count = 0

    def write_batch(self, records: list[tuple[int, bytes]]) -> int:
        assert records
        for kind, body in records:
            assert 0 <= kind <= 255
            self.last_lsn += 1
            self._records.append((self.last_lsn, kind, bytes(body)))
        return self.last_lsn

    def sync(self) -> None:
        self._durable_lsn = self.last_lsn
        self.sync_count += 1

    @property
    def durable_lsn(self) -> int:
        return self._durable_lsn

    def replay(self) -> list[Record]:
        floor = self.checkpoint[0] if self.checkpoint else 0
        return [Record(lsn, kind, body) for lsn, kind, body in self._records if lsn > floor]

    def write_checkpoint(self, lsn: int, payload: bytes) -> None:
        assert lsn <= self._durable_lsn, (lsn, self._durable_lsn)
        assert self.checkpoint is None or lsn >= self.checkpoint[0]
        self.checkpoint = (lsn, bytes(payload))
        self._records = [r for r in self._records if r[0] > lsn]

    def record_count(self) -> int:
        return len(self._records)

    def crash(self, rng: random.Random, tear_probability: float = 0.5) -> None:
        keep_lsn = self._durable_lsn
        if self.last_lsn > keep_lsn and rng.random() < tear_probability:
            keep_lsn = rng.randint(keep_lsn, self.last_lsn)
        self._records = [r for r in self._records if r[0] <= keep_lsn]
        self.last_lsn = max(keep_lsn, self.checkpoint[0] if self.checkpoint else 0)
        self._durable_lsn = self.last_lsn
