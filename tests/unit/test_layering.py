"""The sans-IO rule (STYLE.md §2.1): a core never imports asyncio, socket, os, time, random,
threading or logging.config, so it stays deterministic and drivable by the simulator.
Method: parse every core module with `ast` and list its imports; the list of cores is explicit so
that a new core is added here on purpose."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "qnode"
FORBIDDEN = {"asyncio", "socket", "os", "time", "random", "threading", "logging.config",
             "selectors", "subprocess", "uvloop"}
CORES = [
    "protocol/framing.py",
    "protocol/connection.py",
    "protocol/messages.py",
    "wal/record.py",
    "wal/recovery.py",
    "backend/engine.py",
    "metadata/raft/core.py",
    "metadata/state.py",
    "membership/swim.py",
]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("core", CORES)
def test_core_does_no_io(core):
    path = ROOT / core
    assert path.exists(), f"core module {core} is missing"
    bad = {name for name in imported_modules(path)
           if name in FORBIDDEN or name.split(".")[0] in FORBIDDEN - {"logging.config"}}
    assert not bad, f"{core} imports {sorted(bad)}"
