"""`qnode bench` end to end: it starts its own node process, runs producers and consumers in
processes of their own, and reports throughput and latency percentiles as JSON. Method: a short
run (1 s window) against a node it starts, and one against a node we started (`--address`)."""

import json
import subprocess
import sys


def run_bench(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "qnode.cli", "bench", "--json", "--duration", "1",
                          "--warmup", "0.5", "--producers", "2", "--consumers", "2", *args],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_bench_starts_a_node_and_reports_figures():
    result = run_bench("--no-idle-wake")
    assert result["throughput_msgs_per_s"] > 0
    assert result["send_ack"]["count"] > 0
    assert result["end_to_end"]["p50_ms"] <= result["end_to_end"]["p99_ms"]
    assert result["node_rss_mb"] > 0


def test_bench_push_mode_against_a_running_node(node):
    result = run_bench("--address", node.binary, "--mode", "push", "--prefetch", "10",
                       "--no-idle-wake")
    assert result["throughput_msgs_per_s"] > 0
    assert result["workload"]["mode"] == "push"
    assert "node_rss_mb" not in result        # not our process: RSS is not ours to report
