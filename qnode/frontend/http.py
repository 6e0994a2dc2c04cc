"""The HTTP listener of a node: the SQS-compatible API (`/`, `/<account>/<queue>`), `/healthz`
and `/metrics`, on one aiohttp server.

Protected mode (DESIGN.md "Roles in a cluster"):
- credentials configured           -> every SQS request must carry a valid SigV4 signature;
- no credentials, loopback address -> requests are accepted whatever their signature, and a
                                      warning is logged at start;
- no credentials, other address    -> `start` raises `ProtectedModeError`, unless
                                      `insecure_no_auth=True` (then a warning at every start).
Bounds: request body `body_size_max` (413 beyond), arriving within `body_read_timeout_s`
(RequestTimeout beyond); `inflight_requests_max` concurrent SQS requests and
`inflight_body_size_max` request bytes received and not yet answered (503 ServiceUnavailable
beyond, which SDKs retry); idle keep-alive connections closed after `keepalive_timeout_s`;
at most `connections_max` open connections (beyond, a new one is closed at once and counted);
a new connection closed unless a whole request head arrives within `first_request_timeout_s`;
aiohttp's header limits.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Callable, Mapping

from aiohttp import web

from qnode import limits
from qnode.config import is_loopback
from qnode.frontend.api import QueueApi
from qnode.frontend.sqs.app import GatewaySettings, SqsGateway

log = logging.getLogger(__name__)

# A SendMessageBatch of 10 x 1 MiB bodies fits even JSON-escaped (botocore writes non-ASCII as
# \uXXXX: at worst 3x for 2-byte UTF-8) or base64'd, plus attributes; the batch itself is then
# refused as BatchRequestTooLong (SQS counts the whole batch against 1 MiB).
HTTP_BODY_SIZE_MAX = 10 * 3 * limits.message_size_max + 2 * limits.MIB
HTTP_INFLIGHT_REQUESTS_MAX = 10_000    # long polls hold a slot each; beyond: 503
HTTP_INFLIGHT_BODY_SIZE_MAX = 256 * limits.MIB   # request bytes buffered at once; beyond: 503
HTTP_SHUTDOWN_TIMEOUT_S = 5.0
HTTP_BODY_READ_TIMEOUT_S = 30.0      # a request body must arrive whole within this
HTTP_KEEPALIVE_TIMEOUT_S = 75.0      # an idle keep-alive connection is closed after this
HTTP_FIRST_REQUEST_TIMEOUT_S = 30.0  # a new connection must send a whole request head by then


class ProtectedModeError(RuntimeError):
    """The listener would be reachable off-host without authentication."""


class _Refused(asyncio.Protocol):
    """A connection over the listener's bound: closed as soon as it is accepted."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()


class _CappedTcpSite(web.BaseSite):
    """aiohttp's TCP site with two bounds aiohttp lacks: beyond `connections_max` open
    connections a new one is closed at once; a connection that has not sent a whole request
    head within `first_request_timeout_s` is closed (a client dribbling its headers would hold
    it for ever). Both are counted. `unstarted` holds the new connections' handlers until
    their first request begins (HttpServer's middleware removes them) or their check runs."""

    __slots__ = ("_host", "_port", "_connections_max", "_first_request_timeout_s", "unstarted",
                 "refused_count", "slow_start_closed_count")

    def __init__(self, runner: web.AppRunner, host: str, port: int, connections_max: int,
                 first_request_timeout_s: float) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._connections_max = connections_max
        self._first_request_timeout_s = first_request_timeout_s
        self.unstarted: set[asyncio.BaseProtocol] = set()
        self.refused_count = 0
        self.slow_start_closed_count = 0

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    def _protocol(self) -> asyncio.BaseProtocol:
        server = self._runner.server
        assert server is not None
        if len(server.connections) >= self._connections_max:
            self.refused_count += 1
            return _Refused()
        handler = server()
        self.unstarted.add(handler)
        asyncio.get_running_loop().call_later(self._first_request_timeout_s,
                                              self._check_started, handler)
        return handler

    def _check_started(self, handler: web.RequestHandler) -> None:
        if handler in self.unstarted:
            self.unstarted.discard(handler)
            if handler.transport is not None:
                self.slow_start_closed_count += 1
                handler.transport.close()

    async def start(self) -> None:
        await super().start()
        self._server = await asyncio.get_running_loop().create_server(
            self._protocol, self._host, self._port, backlog=self._backlog, reuse_address=True)


@dataclass(frozen=True, slots=True)
class HttpConfig:
    account_id: str = "000000000000"
    region: str = "us-east-1"
    credentials: Mapping[str, str] = field(default_factory=dict)   # access key -> secret key
    insecure_no_auth: bool = False
    request_expiry_s: int = 900            # SigV4: X-Amz-Date within this of the server clock
    body_size_max: int = HTTP_BODY_SIZE_MAX
    inflight_requests_max: int = HTTP_INFLIGHT_REQUESTS_MAX
    inflight_body_size_max: int = HTTP_INFLIGHT_BODY_SIZE_MAX
    shutdown_timeout_s: float = HTTP_SHUTDOWN_TIMEOUT_S
    body_read_timeout_s: float = HTTP_BODY_READ_TIMEOUT_S
    keepalive_timeout_s: float = HTTP_KEEPALIVE_TIMEOUT_S
    first_request_timeout_s: float = HTTP_FIRST_REQUEST_TIMEOUT_S
    connections_max: int = limits.connections_max

    def validate(self) -> list[str]:
        problems = []
        if not (len(self.account_id) == 12 and self.account_id.isdigit()):
            problems.append(f"account_id must be 12 digits, got {self.account_id!r}")
        if not self.region:
            problems.append("region must not be empty")
        if self.request_expiry_s <= 0:
            problems.append("request_expiry_s must be positive")
        if self.body_size_max < 2 * limits.message_size_max:
            problems.append("body_size_max must hold at least two maximum-size messages")
        if self.inflight_requests_max <= 0:
            problems.append("inflight_requests_max must be positive")
        if self.connections_max <= 0:
            problems.append("connections_max must be positive")
        for name in ("body_read_timeout_s", "keepalive_timeout_s", "first_request_timeout_s"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be positive")
        if self.inflight_body_size_max < self.body_size_max:
            problems.append("inflight_body_size_max must be at least body_size_max")
        return problems


class HttpServer:
    """`await start(host, port) -> (host, bound_port)`, then `await stop()`."""

    def __init__(self, api: QueueApi, config: HttpConfig, *,
                 metrics: Callable[[], str] | None = None,
                 health: Callable[[], dict] | None = None) -> None:
        problems = config.validate()
        if problems:
            raise ValueError("; ".join(problems))
        self._config = config
        self._metrics = metrics
        self._health = health
        self.gateway = SqsGateway(api, GatewaySettings(
            account_id=config.account_id, region=config.region,
            credentials=dict(config.credentials), request_expiry_s=config.request_expiry_s,
            body_size_max=config.body_size_max,
            inflight_requests_max=config.inflight_requests_max,
            inflight_body_size_max=config.inflight_body_size_max,
            body_read_timeout_s=config.body_read_timeout_s))
        self._runner: web.AppRunner | None = None
        self._site: _CappedTcpSite | None = None

    def _app(self) -> web.Application:
        # The gateway bounds the body itself (typed 413 in the request's protocol).
        app = web.Application(client_max_size=self._config.body_size_max + 1,
                              middlewares=[self._note_started])
        app.router.add_get("/healthz", self._handle_health)
        app.router.add_get("/metrics", self._handle_metrics)
        app.router.add_route("POST", "/", self.gateway.handle)
        app.router.add_route("GET", "/", self.gateway.handle)
        app.router.add_route("POST", "/{account}/{queue}", self.gateway.handle)
        app.router.add_route("GET", "/{account}/{queue}", self.gateway.handle)
        return app

    @web.middleware
    async def _note_started(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        """A request head arrived on this connection: its first-request check passes."""
        if self._site is not None:
            self._site.unstarted.discard(request.protocol)
        return await handler(request)

    async def _handle_health(self, request: web.Request) -> web.Response:
        status = self._health() if self._health is not None else {"status": "ok"}
        return web.json_response(status)

    async def _handle_metrics(self, request: web.Request) -> web.Response:
        text = self._metrics() if self._metrics is not None else ""
        gw = self.gateway
        text += (f"qnode_http_inflight_requests {gw.inflight}\n"
                 f"qnode_http_inflight_body_bytes {gw.inflight_body_size}\n"
                 f'qnode_limit_rejections_total{{limit="http_inflight_requests"}} '
                 f"{gw.rejected_busy_count}\n"
                 f'qnode_limit_rejections_total{{limit="http_body_size"}} '
                 f"{gw.rejected_too_large_count}\n"
                 f'qnode_limit_rejections_total{{limit="http_connections"}} '
                 f"{self._site.refused_count if self._site is not None else 0}\n"
                 f'qnode_limit_rejections_total{{limit="http_first_request_timeout"}} '
                 f"{self._site.slow_start_closed_count if self._site is not None else 0}\n")
        return web.Response(text=text, content_type="text/plain")

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on host:port (0: any free port). Raises ProtectedModeError (see module doc)."""
        assert self._runner is None, "already started"
        if not self._config.credentials:
            if not is_loopback(host):
                if not self._config.insecure_no_auth:
                    raise ProtectedModeError(
                        f"refusing to serve the SQS API on non-loopback {host!r} without "
                        "credentials; configure access keys or pass --insecure-no-auth")
                log.warning("SQS API on a non-loopback address WITHOUT authentication "
                            "(--insecure-no-auth)", extra={"host": host, "port": port})
            else:
                log.warning("SQS API accepts unsigned requests (no credentials configured; "
                            "loopback only)", extra={"host": host, "port": port})
        # handler_cancellation: a client that disconnects cancels its handler, so an abandoned
        # long poll leaves the queue's waiters instead of taking (and hiding) the next message.
        runner = web.AppRunner(self._app(), access_log=None, handler_cancellation=True,
                               shutdown_timeout=self._config.shutdown_timeout_s,
                               keepalive_timeout=self._config.keepalive_timeout_s)
        await runner.setup()
        site = _CappedTcpSite(runner, host, port, self._config.connections_max,
                              self._config.first_request_timeout_s)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._site = site
        bound_host, bound_port = runner.addresses[0][:2]
        log.info("http listening", extra={"host": bound_host, "port": bound_port})
        return bound_host, bound_port

    @property
    def connection_count(self) -> int:
        """Open HTTP connections (aiohttp's handlers)."""
        server = self._runner.server if self._runner is not None else None
        return len(server.connections) if server is not None else 0

    async def stop(self) -> None:
        """Stop accepting, answer parked long polls empty, let other in-flight requests finish
        (up to shutdown_timeout_s), close."""
        runner, self._runner = self._runner, None
        if runner is not None:
            self.gateway.begin_stop()
            await runner.cleanup()
