"""Issue #4's benchmark: push consumption vs long-poll receive, and FIFO with 1 vs 100 groups.

Each configuration is one `qnode bench --json` run (a fresh node process on a temp dir, 4
producers + 4 consumers in processes of their own, 1 KiB messages); configurations are interleaved
run by run so that the shared machine's drift hits all of them alike, and the table shows medians.

    python benchmarks/bench_consumption.py [--runs 3] [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CONFIGS = {
    "pull (receive wait=1, max=1 + delete)": ["--mode", "pull"],
    "push (consume prefetch=100 + delete)": ["--mode", "push", "--prefetch", "100"],
    "FIFO, 1 group": ["--fifo-groups", "1"],
    "FIFO, 100 groups": ["--fifo-groups", "100"],
}


def run_one(extra: list[str], duration: float) -> dict:
    out = subprocess.run([sys.executable, "-m", "qnode.cli", "bench", "--json", "--no-idle-wake",
                          "--duration", str(duration), "--warmup", "2", *extra],
                         capture_output=True, text=True, timeout=duration + 120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {name: [] for name in CONFIGS}
    for run in range(args.runs):
        for name, extra in CONFIGS.items():
            r = run_one(extra, args.duration)
            results[name].append(r)
            print(f"run {run + 1} {name}: {r['throughput_msgs_per_s']:.0f} msgs/s", file=sys.stderr)
    print("| configuration | msgs/s | e2e p50 ms | e2e p99 ms | send-ack p50 ms |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in results.items():
        med = lambda f: statistics.median(f(r) for r in runs)
        print(f"| {name} | {med(lambda r: r['throughput_msgs_per_s']):,.0f} "
              f"| {med(lambda r: r['end_to_end']['p50_ms'] or 0):.2f} "
              f"| {med(lambda r: r['end_to_end']['p99_ms'] or 0):.2f} "
              f"| {med(lambda r: r['send_ack']['p50_ms'] or 0):.2f} |")


if __name__ == "__main__":
    main()
