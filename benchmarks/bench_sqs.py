"""End-to-end SQS benchmark: boto3 single-message send -> receive -> delete, same client code
against three servers, one run each (or `--runs N`, medians reported):

- qnode:  a real node process (`qnode start --http 127.0.0.1:0`), or an already-running node
          with `--qnode-url`; `qnode-service` runs HttpServer + BackendService alone
          (benchmarks/sqs/serve_qnode.py);
- moto:   `moto_server` (pip install 'moto[server]'; benchmark-only, not a test dependency);
- floor:  a do-nothing aiohttp endpoint with canned replies (benchmarks/sqs/floor_server.py).

Workload: 4 producer + 4 consumer processes, each with its own boto3 client. Producers send one
message per call while the queue holds fewer than `--backlog` undeleted messages (queue kept
near empty); consumers receive one message (WaitTimeSeconds=1) and delete it. After a 2 s
warm-up, 10 s are measured. Reported: completed cycles/s (deletes/s), and p50/p99 latency of
SendMessage, ReceiveMessage (non-empty) and DeleteMessage; then qnode/floor ratios against the
targets (throughput >= 70% of the floor's; SendMessage p50 <= 2x the floor's).

Usage: .venv/bin/python benchmarks/bench_sqs.py [--targets qnode,moto,floor] [--runs 1]
Bounded: every phase has a deadline; servers are stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
PRODUCERS = 4
CONSUMERS = 4
WARMUP_S = 2.0
MEASURE_S = 10.0
BACKLOG_MAX = 50
SERVER_START_S = 30.0


def _client(url: str):
    import boto3
    from botocore.config import Config
    return boto3.session.Session().client(
        "sqs", endpoint_url=url, region_name="us-east-1", aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"max_attempts": 1}, read_timeout=30, max_pool_connections=2))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _producer(url: str, qurl: str, start_at: float, stop_at: float, sent, deleted, out) -> None:
    c = _client(url)
    lat: list[float] = []
    while True:
        now = time.monotonic()
        if now >= stop_at:
            break
        if sent.value - deleted.value >= BACKLOG_MAX:
            time.sleep(0.0005)      # benchmark pacing only: keep the queue near empty
            continue
        t0 = time.perf_counter()
        c.send_message(QueueUrl=qurl, MessageBody="benchmark message")
        dt = time.perf_counter() - t0
        with sent.get_lock():
            sent.value += 1
        if now >= start_at:
            lat.append(dt)
    out.put({"send": lat})


def _consumer(url: str, qurl: str, start_at: float, stop_at: float, deleted, out) -> None:
    c = _client(url)
    recv_lat: list[float] = []
    del_lat: list[float] = []
    cycles = 0
    while time.monotonic() < stop_at:
        t0 = time.perf_counter()
        r = c.receive_message(QueueUrl=qurl, MaxNumberOfMessages=1, WaitTimeSeconds=1)
        t1 = time.perf_counter()
        msgs = r.get("Messages", [])
        if not msgs:
            continue
        c.delete_message(QueueUrl=qurl, ReceiptHandle=msgs[0]["ReceiptHandle"])
        t2 = time.perf_counter()
        with deleted.get_lock():
            deleted.value += 1
        if time.monotonic() >= start_at and t2 - t0 < 1e9:
            now = time.monotonic()
            if now <= stop_at:
                cycles += 1
                recv_lat.append(t1 - t0)
                del_lat.append(t2 - t1)
    out.put({"receive": recv_lat, "delete": del_lat, "cycles": cycles})


def run_load(url: str, attributes: dict | None = None) -> dict:
    c = _client(url)
    qurl = c.create_queue(QueueName="bench", Attributes=attributes or {})["QueueUrl"]
    ctx = mp.get_context("spawn")
    sent, deleted = ctx.Value("q", 0), ctx.Value("q", 0)
    out = ctx.Queue()
    # Processes take a while to import boto3; the clock starts once all could be ready.
    t_base = time.monotonic() + 3.0
    start_at, stop_at = t_base + WARMUP_S, t_base + WARMUP_S + MEASURE_S
    procs = [ctx.Process(target=_producer, args=(url, qurl, start_at, stop_at, sent, deleted, out))
             for _ in range(PRODUCERS)]
    procs += [ctx.Process(target=_consumer, args=(url, qurl, start_at, stop_at, deleted, out))
              for _ in range(CONSUMERS)]
    for p in procs:
        p.start()
    results = [out.get(timeout=stop_at - time.monotonic() + 60) for _ in procs]
    for p in procs:
        p.join(30)
        if p.is_alive():
            p.kill()
    send = [x for r in results for x in r.get("send", [])]
    recv = [x for r in results for x in r.get("receive", [])]
    dele = [x for r in results for x in r.get("delete", [])]
    cycles = sum(r.get("cycles", 0) for r in results)
    ms = lambda v: round(v * 1000, 2)  # noqa: E731
    return {"cycles_per_s": round(cycles / MEASURE_S, 1),
            "send_p50_ms": ms(_percentile(send, 0.5)), "send_p99_ms": ms(_percentile(send, 0.99)),
            "receive_p50_ms": ms(_percentile(recv, 0.5)),
            "receive_p99_ms": ms(_percentile(recv, 0.99)),
            "delete_p50_ms": ms(_percentile(dele, 0.5)), "delete_p99_ms": ms(_percentile(dele, 0.99)),
            "sends": len(send), "cycles": cycles}


class Server:
    """A server subprocess that prints `listening http=HOST:PORT` (or a fixed port for moto)."""

    def __init__(self, target: str, tmp: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self.log_path = tmp / f"{target}.log"
        if target == "qnode":
            # A real node: `qnode start` prints `listening binary=... http=...` on stderr.
            args = [sys.executable, "-m", "qnode.cli", "start", "--listen", "127.0.0.1:0",
                    "--http", "127.0.0.1:0", "--data-dir", str(tmp / "data"),
                    "--log-level", "warning"]
        elif target == "qnode-service":
            args = [sys.executable, str(HERE / "sqs" / "serve_qnode.py"), str(tmp / "data")]
        elif target == "floor":
            args = [sys.executable, str(HERE / "sqs" / "floor_server.py")]
        elif target == "moto":
            moto = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
            port = _free_port()
            args = [moto, "-H", "127.0.0.1", "-p", str(port)]
            self.url = f"http://127.0.0.1:{port}"
        else:
            raise SystemExit(f"unknown target {target}")
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log,
                                     text=True, env=env, cwd=str(ROOT))
        log.close()
        if target == "moto":
            _wait_http(self.url, SERVER_START_S)
        elif target == "qnode":
            deadline = time.monotonic() + SERVER_START_S
            while True:
                m = re.search(r"listening binary=\S+ http=(\S+)", self.log_path.read_text())
                if m:
                    self.url = "http://" + m.group(1)
                    break
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise SystemExit(f"qnode did not start:\n{self.log_path.read_text()}")
                time.sleep(0.05)
        else:
            deadline = time.monotonic() + SERVER_START_S
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()
            if "listening http=" not in line or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"{target} did not start: {line!r}")
            self.url = "http://" + line.strip().split("http=")[1]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout_s: float) -> None:
    import urllib.error
    import urllib.request
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {timeout_s}s")


def main() -> None:
    global MEASURE_S, WARMUP_S
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", default="qnode,moto,floor")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--qnode-url", default=None, help="use a running node instead")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--qnode-durability", default=None, choices=("fsync", "interval", "memory"),
                    help="qnode:Durability of qnode's bench queue (default: the queue default, fsync)")
    ap.add_argument("--measure-s", type=float, default=MEASURE_S)
    ap.add_argument("--warmup-s", type=float, default=WARMUP_S)
    args = ap.parse_args()
    MEASURE_S, WARMUP_S = args.measure_s, args.warmup_s
    report: dict[str, list[dict]] = {}
    # Interleave the targets run by run, so that load from elsewhere on the box hits all alike.
    for run in range(args.runs):
        for target in args.targets.split(","):
            with tempfile.TemporaryDirectory(prefix="bench-sqs-") as tmp:
                attrs = ({"qnode:Durability": args.qnode_durability}
                         if target == "qnode" and args.qnode_durability else None)
                if target == "qnode" and args.qnode_url:
                    result = run_load(args.qnode_url, attrs)
                else:
                    server = Server(target, Path(tmp))
                    try:
                        result = run_load(server.url, attrs)
                    finally:
                        server.stop()
            report.setdefault(target, []).append(result)
            print(f"{target} run {run + 1}: {result}", flush=True)
    med = {t: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for t, rs in report.items()}
    print("\nmedians:")
    for t, m in med.items():
        print(f"  {t:6s} {m['cycles_per_s']:8.1f} cycles/s  send p50 {m['send_p50_ms']} ms "
              f"p99 {m['send_p99_ms']} ms  receive p50 {m['receive_p50_ms']} ms  "
              f"delete p50 {m['delete_p50_ms']} ms")
    if "qnode" in med and "floor" in med:
        tp = med["qnode"]["cycles_per_s"] / med["floor"]["cycles_per_s"]
        p50 = med["qnode"]["send_p50_ms"] / med["floor"]["send_p50_ms"]
        print(f"\nqnode/floor throughput {tp:.2f} (target >= 0.70: {'OK' if tp >= 0.7 else 'MISS'});"
              f" SendMessage p50 {p50:.2f}x (target <= 2: {'OK' if p50 <= 2 else 'MISS'})")
    if args.json:
        print(json.dumps({"runs": report, "medians": med}))


if __name__ == "__main__":
    main()
