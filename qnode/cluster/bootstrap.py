"""Bootstrap rule of the metadata Raft group, and the persisted initial voter set.

Owns: the pure decision "with what voter set does this node start Raft, if at all" and the small
file `<data_dir>/raft-voters.json` that records the answer before Raft first starts.

Rule (DESIGN.md "Roles in a cluster", issue #6):
- neither seeds nor `--bootstrap-expect`: a one-member group at once (the single-node default);
- `--bootstrap-expect N`: wait until N metadata members (this node included) are known through
  SWIM; the voters are the N smallest node ids among them. Every node that sees the same N
  members derives the same set, and no node forms a smaller group (no split into one-member
  groups). A node that is not among the N smallest does not bootstrap (it joins later);
- seeds without `--bootstrap-expect`: never bootstrap; the node waits to be added to an existing
  group (membership changes are a later issue).
After the first start the voter set is read back from the file (and from Raft snapshots, which
carry it): a restarted node never bootstraps again, whatever it sees.
Pure functions only, except `load_voters`/`store_voters` (atomic write: temp file, fsync, rename).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

VOTERS_FILE = "raft-voters.json"
voters_count_max = 9


def initial_voters(node_id: str, bootstrap_expect: int, has_seeds: bool,
                   metadata_members: list[str] | tuple[str, ...]) -> tuple[str, ...] | None:
    """The voter set to bootstrap with now, or None to keep waiting (or never bootstrap)."""
    if bootstrap_expect <= 0:
        return None if has_seeds else (node_id,)
    if bootstrap_expect > voters_count_max:
        raise ValueError(f"--bootstrap-expect is at most {voters_count_max}")
    known = sorted(set(metadata_members) | {node_id})
    if len(known) < bootstrap_expect:
        return None
    chosen = tuple(known[:bootstrap_expect])
    return chosen if node_id in chosen else None


def load_voters(data_dir: Path) -> tuple[str, ...] | None:
    path = data_dir / VOTERS_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    voters = doc.get("voters") if isinstance(doc, dict) else None
    if not isinstance(voters, list) or not voters or not all(isinstance(v, str) and v for v in voters):
        raise ValueError(f"{path} is damaged: expected {{\"voters\": [node ids]}}")
    return tuple(voters)


def store_voters(data_dir: Path, voters: tuple[str, ...]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / VOTERS_FILE
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump({"voters": list(voters)}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
