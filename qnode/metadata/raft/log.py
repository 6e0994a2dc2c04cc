"""RaftLog: the in-memory Raft log of one node: snapshot point, entries, stable/commit/applied marks.

Owns: the entry sequence and the indexes that describe it. Invariants (checked by `check`):
  snapshot_index <= applied <= commit <= last_index   (applied can lag only during restore)
  snapshot_index <= stable <= last_index              (stable: persisted up to here)
  entries are contiguous from snapshot_index + 1, terms non-decreasing (Raft §5.3 log matching).
Never does I/O; RaftCore decides, the driver persists what `unstable()` returns.
"""

from __future__ import annotations

from qnode.metadata.raft.messages import Entry


class RaftLog:
    __slots__ = ("snapshot_index", "snapshot_term", "entries", "stable", "commit", "applied")

    def __init__(self, snapshot_index: int = 0, snapshot_term: int = 0,
                 entries: list[Entry] | None = None, commit: int = 0) -> None:
        self.snapshot_index = snapshot_index
        self.snapshot_term = snapshot_term
        self.entries: list[Entry] = list(entries or [])
        self.stable = self.last_index()
        self.commit = max(snapshot_index, min(commit, self.last_index()))
        self.applied = snapshot_index
        self.check()

    def first_index(self) -> int:
        return self.snapshot_index + 1

    def last_index(self) -> int:
        return self.snapshot_index + len(self.entries)

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot_term

    def term(self, index: int) -> int | None:
        """Term of the entry at index; None if compacted away or beyond the end."""
        if index == self.snapshot_index:
            return self.snapshot_term
        if index < self.snapshot_index or index > self.last_index():
            return None
        return self.entries[index - self.snapshot_index - 1].term

    def entry(self, index: int) -> Entry:
        assert self.snapshot_index < index <= self.last_index(), (index, self.snapshot_index)
        return self.entries[index - self.snapshot_index - 1]

    def slice(self, lo: int, hi: int, count_max: int, size_max: int) -> list[Entry]:
        """Entries [lo, hi), at most count_max and about size_max bytes (at least one)."""
        assert self.snapshot_index < lo
        hi = min(hi, self.last_index() + 1, lo + count_max)
        out: list[Entry] = []
        size = 0
        for i in range(lo, hi):
            e = self.entries[i - self.snapshot_index - 1]
            size += len(e.data)
            if out and size > size_max:
                break
            out.append(e)
        return out

    def matches(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: a candidate's log is at least as up-to-date as ours."""
        my_term = self.last_term()
        return last_term > my_term or (last_term == my_term and last_index >= self.last_index())

    def append(self, entry: Entry) -> None:
        assert entry.index == self.last_index() + 1
        assert entry.term >= self.last_term()
        self.entries.append(entry)

    def truncate_from(self, index: int) -> None:
        """Drop entries >= index (a conflicting suffix, Raft §5.3). Never below commit."""
        assert index > self.commit, (index, self.commit)
        del self.entries[index - self.snapshot_index - 1:]
        self.stable = min(self.stable, index - 1)

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """Largest i <= index whose term <= term (etcd findConflictByTerm), for backtracking."""
        i = min(index, self.last_index())
        while i > self.snapshot_index:
            t = self.term(i)
            assert t is not None
            if t <= term:
                return i
            i -= 1
        return self.snapshot_index

    def compact(self, index: int) -> None:
        """Drop entries <= index (they are covered by a snapshot)."""
        assert self.snapshot_index < index <= self.applied, (index, self.applied)
        term = self.term(index)
        assert term is not None
        del self.entries[:index - self.snapshot_index]
        self.snapshot_index = index
        self.snapshot_term = term

    def restore(self, index: int, term: int) -> None:
        """Replace the whole log by a snapshot point (InstallSnapshot, Raft §7)."""
        self.entries = []
        self.snapshot_index = index
        self.snapshot_term = term
        self.commit = index
        self.applied = index
        self.stable = index

    def unstable(self) -> list[Entry]:
        return self.entries[self.stable - self.snapshot_index:]

    def check(self) -> None:
        assert self.snapshot_index <= self.stable <= self.last_index(), (self.snapshot_index, self.stable)
        assert self.snapshot_index <= self.applied <= self.commit, (self.applied, self.commit)
        assert self.commit <= self.last_index(), (self.commit, self.last_index())
        if self.entries:
            assert self.entries[0].index == self.snapshot_index + 1
            assert self.entries[-1].index == self.last_index()
            assert self.entries[0].term >= self.snapshot_term
