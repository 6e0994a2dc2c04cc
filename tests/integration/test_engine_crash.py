"""Crash safety of the backend: acknowledged sends and deletes survive SIGKILL.

Method: run `python -m qnode.backend._crashdriver DIR RUN` (concurrent senders and deleters on a
BackendService over the real WAL) and SIGKILL it at a random moment (after a random number of
acknowledgements), 20 times on the same data directory. After each kill, recover the directory
in-process and check: every acknowledged send whose delete was not acknowledged is present;
nothing that was never attempted is present; no acknowledged delete came back. A delete that
was attempted but not acknowledged may or may not have happened (it can be durable without its
reply having been printed), so such a message may be absent."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from pathlib import Path

from qnode.backend.service import BackendConfig, BackendService
from qnode.wal.writer import WalConfig

ROUNDS = 20
ROOT = Path(__file__).resolve().parents[2]


async def run_and_kill(data_dir: Path, run: str, rng: random.Random, lines: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "qnode.backend._crashdriver", str(data_dir), run,
        stdout=asyncio.subprocess.PIPE, env=env)
    assert proc.stdout is not None
    target = rng.randint(1, 120)
    acks = 0
    try:
        async with asyncio.timeout(20):
            while acks < target:
                raw = await proc.stdout.readline()
                if not raw:
                    break
                line = raw.decode().rstrip("\n")
                lines.append(line)
                if line[:1] in ("S", "D"):
                    acks += 1
    finally:
        proc.send_signal(signal.SIGKILL)
        rest, _ = await proc.communicate()
        lines.extend(rest.decode().splitlines())
    assert acks == target, "driver died early or never acknowledged"


async def present_bodies(data_dir: Path) -> set[str]:
    svc = await BackendService.open(data_dir, BackendConfig(wal=WalConfig(disk_reserve_size=0)))
    try:
        svc.check_invariants()
        state = svc._engine.persistent_state()
        msgs = state.get("crash", ({}, {}, {}, {}))[2]
        return {body.decode() for body, *_ in msgs.values()}
    finally:
        await svc.close()


async def test_acknowledged_operations_survive_sigkill(tmp_path: Path) -> None:
    rng = random.Random(20261127)
    attempted: set[str] = set()
    sent: set[str] = set()
    deleted: set[str] = set()
    delete_attempted: set[str] = set()
    started = time.monotonic()
    for round_index in range(ROUNDS):
        lines: list[str] = []
        await run_and_kill(tmp_path, f"r{round_index}", rng, lines)
        for line in lines:
            tag, _, body = line.partition(" ")
            if tag == "T":
                attempted.add(body)
            elif tag == "S":
                sent.add(body)
            elif tag == "R":
                delete_attempted.add(body)
            elif tag == "D":
                deleted.add(body)
        present = await present_bodies(tmp_path)
        must_exist = sent - deleted - delete_attempted
        assert must_exist <= present, sorted(must_exist - present)[:5]
        assert present <= attempted, sorted(present - attempted)[:5]
        assert not (present & deleted), sorted(present & deleted)[:5]
        assert time.monotonic() - started < 120
    assert sent and deleted
