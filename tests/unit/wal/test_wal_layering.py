"""The WAL's cores stay free of I/O, clocks and randomness (STYLE.md §2.1).

Goal: `record`, `segment`, `checkpoint`, `recovery` (pure) and `log` (synchronous core that the
simulator drives over MemFs) never import asyncio, os, time, random, socket or threading; only
`fs.py` and `writer.py` touch the OS. Method: parse each module's imports with `ast`.
"""

import ast
import importlib.util

import pytest

FORBIDDEN = {"asyncio", "os", "time", "random", "socket", "threading", "concurrent"}


def _imports(module: str) -> set[str]:
    path = importlib.util.find_spec(module).origin
    tree = ast.parse(open(path).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", ["qnode.wal.record", "qnode.wal.segment", "qnode.wal.checkpoint",
                                    "qnode.wal.recovery", "qnode.wal.log", "qnode.wal.verify"])
def test_core_modules_import_no_io_clock_or_randomness(module):
    assert _imports(module) & FORBIDDEN == set()
