"""Command line for the Raft metadata simulator.

    python -m tests.sim --seed N [--events M] [--options swarm|fast] [--trace]   # replay one run
    python -m tests.sim --seeds K [--first S] [--events M] [--time-limit-s T]    # sweep K seeds

A failure prints the seed, the git commit, the options, the replay command and the last 200 trace
lines. Exit status 1 if any run failed. The sweep prints progress every 100 runs.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time

from tests.sim.options import fast
from tests.sim.raft_sim import run


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.sim")
    p.add_argument("--seed", type=int)
    p.add_argument("--seeds", type=int)
    p.add_argument("--first", type=int, default=0, help="first seed of a sweep")
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--options", choices=["swarm", "fast"], default="swarm")
    p.add_argument("--trace", action="store_true", help="print every trace line")
    p.add_argument("--time-limit-s", type=float, default=0.0, help="stop a sweep after this long")
    args = p.parse_args(argv)
    options = fast() if args.options == "fast" else None
    # The WAL logs each torn-tail repair at WARNING; in a sweep those are expected, not news.
    logging.basicConfig(level=logging.DEBUG if args.trace else logging.ERROR, format="%(name)s: %(message)s")
    if args.seed is not None:
        result = run(args.seed, args.events, options, trace_echo=args.trace)
        print(result.report())
        if not result.ok:
            print(f"git commit: {_git_commit()}")
            if args.options == "fast":
                print("(replay with --options fast)")
        return 0 if result.ok else 1
    if not args.seeds:
        p.error("give --seed N or --seeds K")
    started = time.monotonic()
    failures = []
    done = 0
    for seed in range(args.first, args.first + args.seeds):
        result = run(seed, args.events, options)
        done += 1
        if not result.ok:
            failures.append(seed)
            print(result.report(), flush=True)
            print(f"git commit: {_git_commit()}", flush=True)
        if done % 100 == 0:
            elapsed = time.monotonic() - started
            print(f"progress: {done}/{args.seeds} runs, {len(failures)} failed, {elapsed:.0f}s, "
                  f"{done / elapsed:.1f} runs/s", flush=True)
        if args.time_limit_s and time.monotonic() - started > args.time_limit_s:
            break
    elapsed = time.monotonic() - started
    print(f"done: {done} runs in {elapsed:.1f}s ({done / max(elapsed, 1e-9):.2f} runs/s), "
          f"{len(failures)} failed: {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
