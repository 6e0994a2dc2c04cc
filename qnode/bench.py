"""`qnode bench`: the end-to-end load tool, the same workload as ../shared/peerbench.

It targets a running node (`--address`) or starts one as a separate process (never in-process, so
figures always include the real network path); producers and consumers run in processes of their
own, each task on its own connection, each operation awaited before the next (closed loop) unless
`--rate` asks for an open loop. Every body's first 8 bytes are the sender's `time.perf_counter()`
(CLOCK_MONOTONIC on Linux, so comparable across processes): end-to-end latency is measured from the
start of the send call to the receive returning.

Bounds: every run is bounded by `--duration`; latency samples per process are capped
(`SAMPLES_MAX`), the node's backlog is capped by pausing producers at `BACKLOG_MAX` outstanding.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import click

from qnode.protocol.errors import PurgeQueueInProgress

SAMPLES_MAX = 200_000          # latency samples kept per process
BACKLOG_MAX = 5_000            # outstanding messages before producers wait (same as peerbench)
IDLE_WAKE_SAMPLES = 200        # idle long-poll wake samples
IDLE_WAKE_INTERVAL_S = 0.05    # one message every 50 ms to a parked consumer
STAMP = struct.Struct("<d")


@dataclass(frozen=True)
class Workload:
    address: str
    queues: int
    producers: int
    consumers: int
    size: int
    batch: int
    rate: float
    duration_s: float
    warmup_s: float
    mode: str = "pull"             # pull: receive + delete; push: q.consume(prefetch) + delete
    prefetch: int = 100
    fifo_groups: int = 0           # 0: standard queues; N: FIFO queues, messages spread over N groups

    def queue_name(self, index: int) -> str:
        base = f"bench-{index % self.queues}"
        return f"{base}.fifo" if self.fifo_groups else base


def _body(size: int) -> bytes:
    return STAMP.pack(time.perf_counter()) + os.urandom(max(0, size - STAMP.size))


def _pct(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    samples = sorted(samples)
    return samples[min(len(samples) - 1, int(q * len(samples)))]


def _summary(samples_s: list[float]) -> dict:
    ms = [s * 1000 for s in samples_s]
    return {"count": len(ms), "p50_ms": _pct(ms, 0.50), "p99_ms": _pct(ms, 0.99),
            "p999_ms": _pct(ms, 0.999), "mean_ms": statistics.fmean(ms) if ms else None}


async def _producer_main(w: Workload, index_base: int, counters, start_at: float, stop_at: float,
                         out) -> None:
    import qnode

    ack_lat: list[float] = []
    per_task_rate = w.rate / w.producers if w.rate else 0.0

    async def task(i: int) -> None:
        async with qnode.Client([w.address]) as client:
            q = await client.get_queue(w.queue_name(index_base + i))
            next_at = time.perf_counter()
            seq = 0
            while True:
                now = time.perf_counter()
                if now >= stop_at:
                    return
                if per_task_rate:
                    next_at += w.batch / per_task_rate
                    if next_at > now:
                        await asyncio.sleep(next_at - now)   # open loop pacing, not a test wait
                while counters["sent"].value - counters["acked"].value > BACKLOG_MAX:
                    await asyncio.sleep(0.001)
                    if time.perf_counter() >= stop_at:
                        return
                t0 = time.perf_counter()
                if w.fifo_groups:
                    entries = []
                    for _ in range(w.batch):
                        seq += 1
                        entries.append({"body": _body(w.size), "group_id": f"g{seq % w.fifo_groups}",
                                        "dedup_id": f"{i}-{seq}-{t0}"})
                    await q.send_batch(entries)
                elif w.batch > 1:
                    await q.send_batch([_body(w.size) for _ in range(w.batch)])
                else:
                    await q.send(_body(w.size))
                t1 = time.perf_counter()
                if t0 >= start_at and len(ack_lat) < SAMPLES_MAX:
                    ack_lat.append(t1 - t0)
                with counters["sent"].get_lock():
                    counters["sent"].value += w.batch

    await asyncio.gather(*(task(i) for i in range(w.producers)))
    out.put(("producer", ack_lat))


async def _consumer_main(w: Workload, counters, start_at: float, stop_at: float, out) -> None:
    import qnode

    e2e: list[float] = []
    acked_in_window = 0

    def account(msgs, received_at: float) -> None:
        for m in msgs:
            if len(e2e) < SAMPLES_MAX and received_at >= start_at:
                e2e.append(received_at - STAMP.unpack_from(m.body)[0])

    def acked(count: int) -> None:
        nonlocal acked_in_window
        done = time.perf_counter()
        if start_at <= done < stop_at:
            acked_in_window += count
        with counters["acked"].get_lock():
            counters["acked"].value += count

    async def push_task(i: int) -> None:
        async with qnode.Client([w.address]) as client:
            q = await client.get_queue(w.queue_name(i))
            try:
                async with asyncio.timeout(max(0.0, stop_at - time.perf_counter())):
                    async with q.consume(prefetch=w.prefetch) as stream:
                        async for msg in stream:
                            account([msg], time.perf_counter())
                            await msg.delete()
                            acked(1)
            except TimeoutError:
                pass   # the measured window ended

    async def task(i: int) -> None:
        async with qnode.Client([w.address]) as client:
            q = await client.get_queue(w.queue_name(i))
            while time.perf_counter() < stop_at:
                msgs = await q.receive(max_messages=w.batch, wait=1)
                account(msgs, time.perf_counter())
                if not msgs:
                    continue
                if len(msgs) > 1:
                    await q.delete_batch(msgs)
                else:
                    await msgs[0].delete()
                acked(len(msgs))

    runner = push_task if w.mode == "push" else task
    await asyncio.gather(*(runner(i) for i in range(w.consumers)))
    out.put(("consumer", (e2e, acked_in_window)))


def _run_proc(kind: str, w: Workload, counters, start_at: float, stop_at: float, out) -> None:
    import uvloop

    if kind == "producer":
        uvloop.run(_producer_main(w, 0, counters, start_at, stop_at, out))
    else:
        uvloop.run(_consumer_main(w, counters, start_at, stop_at, out))


async def _idle_wake(address: str, samples: int) -> list[float]:
    """One consumer parked in a long poll; one message every 50 ms; latency send-start → receive."""
    import qnode

    lat: list[float] = []
    async with qnode.Client([address]) as pc, qnode.Client([address]) as cc:
        q = await pc.create_queue("bench-idle")
        cq = await cc.get_queue("bench-idle")
        await q.purge()

        async def consume() -> None:
            while len(lat) < samples:
                msgs = await cq.receive(max_messages=1, wait=5)
                now = time.perf_counter()
                for m in msgs:
                    lat.append(now - STAMP.unpack_from(m.body)[0])
                    await m.delete()

        async def produce() -> None:
            for _ in range(samples):
                await asyncio.sleep(IDLE_WAKE_INTERVAL_S)   # pacing: the consumer is parked meanwhile
                await q.send(_body(64))

        async with asyncio.timeout(samples * IDLE_WAKE_INTERVAL_S + 30):
            async with asyncio.TaskGroup() as tg:
                tg.create_task(consume())
                tg.create_task(produce())
        await pc.delete_queue("bench-idle")
    return lat


def start_node_process(data_dir: str) -> tuple[subprocess.Popen, str]:
    """Start `qnode start` on free ports; return (process, binary address) after its first line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "qnode.cli", "start", "--listen", "127.0.0.1:0", "--http", "off",
         "--data-dir", data_dir, "--log-level", "INFO"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(r"listening binary=(\S+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise click.ClickException("the node did not start (no 'listening' line within 30 s)")


def run_workload(w: Workload, progress: bool = True) -> dict:
    """Run producers and consumers in two processes; return the figures as a dict."""
    import qnode

    async def setup():
        async with qnode.Client([w.address]) as c:
            for i in range(w.queues):
                attributes = {"FifoQueue": "true"} if w.fifo_groups else {}
                q = await c.create_queue(w.queue_name(i), attributes=attributes)
                await q.purge()
    try:
        asyncio.run(setup())
    except PurgeQueueInProgress:
        pass   # purged less than 60 s ago: the queues are (nearly) empty already
    ctx = mp.get_context("spawn")
    counters = {"sent": ctx.Value("q", 0), "acked": ctx.Value("q", 0)}
    out = ctx.Queue()
    t0 = time.perf_counter() + 1.0          # time for the processes to start and connect
    start_at = t0 + w.warmup_s
    stop_at = start_at + w.duration_s
    procs = [ctx.Process(target=_run_proc, args=(k, w, counters, start_at, stop_at, out))
             for k in ("producer", "consumer")]
    for p in procs:
        p.start()
    while time.perf_counter() < stop_at:
        time.sleep(1.0)
        if progress:
            print(f"\r sent={counters['sent'].value} acked={counters['acked'].value}",
                  end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    results = {}
    for _ in procs:
        kind, data = out.get(timeout=60)
        results[kind] = data
    for p in procs:
        p.join(timeout=30)
    e2e, acked = results["consumer"]
    return {"throughput_msgs_per_s": acked / w.duration_s, "send_ack": _summary(results["producer"]),
            "end_to_end": _summary(e2e)}


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@click.command()
@click.option("--address", "address_opt", default=None,
              help="node to load (default: start one in a separate process on a temp dir)")
@click.option("--producers", default=4, show_default=True)
@click.option("--consumers", default=4, show_default=True)
@click.option("--size", default=1024, show_default=True, help="message size in bytes")
@click.option("--batch", default=1, show_default=True, help="messages per send/receive/delete call")
@click.option("--rate", default=0.0, show_default=True, help="open-loop msgs/s in total (0: closed loop)")
@click.option("--queues", default=1, show_default=True)
@click.option("--mode", type=click.Choice(["pull", "push"]), default="pull", show_default=True,
              help="pull: receive + delete; push: consume(prefetch) + delete")
@click.option("--prefetch", default=100, show_default=True, help="push mode: unacked messages per consumer")
@click.option("--fifo-groups", default=0, show_default=True,
              help="0: standard queues; N: FIFO queues with messages spread over N groups")
@click.option("--duration", default=10.0, show_default=True, help="measured seconds")
@click.option("--warmup", default=2.0, show_default=True)
@click.option("--idle-wake/--no-idle-wake", default=True, help="also measure idle long-poll wake")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def bench(ctx, address_opt, producers, consumers, size, batch, rate, queues, mode, prefetch,
          fifo_groups, duration, warmup, idle_wake, as_json) -> None:
    """Load a node and print throughput and latency percentiles."""
    if not (1 <= batch <= 10):
        raise click.BadParameter("--batch must be 1..10")
    if duration <= 0 or duration > 3600:
        raise click.BadParameter("--duration must be in (0, 3600]")
    proc = None
    tmp = None
    address = address_opt
    try:
        if address is None:
            tmp = tempfile.mkdtemp(prefix="qnode-bench-")
            proc, address = start_node_process(os.path.join(tmp, "data"))
        w = Workload(address, queues, producers, consumers, size, batch, rate, duration, warmup,
                     mode=mode, prefetch=prefetch, fifo_groups=fifo_groups)
        result = {"workload": w.__dict__, **run_workload(w, progress=not as_json)}
        if idle_wake:
            result["idle_wake"] = _summary(asyncio.run(_idle_wake(address, IDLE_WAKE_SAMPLES)))
        if proc is not None:
            result["node_rss_mb"] = _rss_mb(proc.pid)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
        return
    fmt = lambda s: "/".join("-" if s[k] is None else f"{s[k]:.2f}" for k in ("p50_ms", "p99_ms", "p999_ms"))
    click.echo(f"throughput {result['throughput_msgs_per_s']:.0f} msgs/s (sent, received, deleted)")
    click.echo(f"send-ack p50/p99/p99.9 ms  {fmt(result['send_ack'])}")
    click.echo(f"end-to-end p50/p99/p99.9 ms {fmt(result['end_to_end'])}")
    if "idle_wake" in result:
        click.echo(f"idle wake p50/p99/p99.9 ms  {fmt(result['idle_wake'])}")
    if result.get("node_rss_mb"):
        click.echo(f"node RSS {result['node_rss_mb']:.1f} MB")
