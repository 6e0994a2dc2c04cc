"""Trace: the record of one simulation run, hashed so two runs of one seed can be compared.

Owns: every trace line of a run. Each line is hashed as it is recorded (blake2b, incremental), and
only the last `tail_count_max` lines are kept in memory, so a 10k-event run stays small.
Invariant: a line is a pure function of simulated state (time, node ids, message fields), never of
`id()`, wall-clock time or set iteration order, so the hash is the same on every replay of a seed.
"""

from __future__ import annotations

import hashlib
from collections import deque


class Trace:
    __slots__ = ("_hash", "_tail", "line_count", "echo")

    def __init__(self, tail_count_max: int = 200, echo: bool = False) -> None:
        assert tail_count_max > 0
        self._hash = hashlib.blake2b(digest_size=16)
        self._tail: deque[str] = deque(maxlen=tail_count_max)
        self.line_count = 0
        self.echo = echo

    def record(self, now_ns: int, source: str, text: str) -> None:
        line = f"{now_ns / 1e6:12.3f}ms {source:>6} {text}"
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        self._tail.append(line)
        self.line_count += 1
        if self.echo:
            print(line)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def tail(self) -> list[str]:
        return list(self._tail)
