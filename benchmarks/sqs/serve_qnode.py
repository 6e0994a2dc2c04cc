"""Serve qnode's SQS API (HttpServer over BackendService) in its own process for bench_sqs.

Usage: python -m benchmarks.sqs.serve_qnode DATA_DIR
Prints `listening http=HOST:PORT` once bound, then serves until SIGTERM/SIGINT.
Used until `qnode start` is the benchmark's node; the wiring is the same as qnode/node.py's.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

from qnode.frontend.http import HttpConfig, HttpServer


async def main(data_dir: Path) -> None:
    from qnode.backend.service import BackendConfig, BackendService

    backend = await BackendService.open(data_dir, BackendConfig(region="us-east-1",
                                                                account_id="000000000000"))
    server = HttpServer(backend, HttpConfig())
    host, port = await server.start("127.0.0.1", 0)
    print(f"listening http={host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    await backend.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(Path(sys.argv[1])))
