"""python -m tests.fuzz --cases 100000 [--seed N]: the long fuzz run of the protocol decoder."""

from __future__ import annotations

import argparse
import sys
import time

from tests.fuzz.decoder import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz")
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    stats = run(args.cases, args.seed)
    elapsed = time.monotonic() - t0
    print(f"fuzz ok: seed={args.seed} cases={stats.cases} feeds={stats.feeds} frames={stats.frames} "
          f"rejected={stats.errors} in {elapsed:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
