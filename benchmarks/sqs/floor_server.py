"""The benchmark floor: an aiohttp endpoint that answers SendMessage / ReceiveMessage /
DeleteMessage / CreateQueue (JSON protocol) with canned valid replies and does nothing else.
Whatever a real server adds on top of this is its own cost.

Usage: python -m benchmarks.sqs.floor_server   (prints `listening http=HOST:PORT`)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import uuid

from aiohttp import web

BODY = "benchmark message"
MD5 = hashlib.md5(BODY.encode()).hexdigest()


async def handle(request: web.Request) -> web.Response:
    target = request.headers.get("X-Amz-Target", "")
    params = await request.json()
    action = target.rpartition(".")[2]
    if action == "SendMessage":
        out = {"MessageId": str(uuid.uuid4()),
               "MD5OfMessageBody": hashlib.md5(params["MessageBody"].encode()).hexdigest()}
    elif action == "ReceiveMessage":
        out = {"Messages": [{"MessageId": str(uuid.uuid4()), "ReceiptHandle": "r-" + uuid.uuid4().hex,
                             "MD5OfBody": MD5, "Body": BODY}]}
    elif action in ("CreateQueue", "GetQueueUrl"):
        out = {"QueueUrl": f"http://{request.host}/000000000000/{params['QueueName']}"}
    else:
        out = {}
    return web.Response(body=json.dumps(out).encode(), content_type="application/x-amz-json-1.0")


async def main() -> None:
    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"listening http={host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
