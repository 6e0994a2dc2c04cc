"""The aiohttp side of the SQS gateway: one handler for `POST /` and `POST|GET /<account>/<queue>`.

Per request, in order: bound the in-flight count (over: 503 ServiceUnavailable, which SDKs
retry) -> read the body within `body_size_max` (over: 413 RequestEntityTooLarge) and
`body_read_timeout_s` (over: RequestTimeout), counting its bytes as they arrive against the
buffered-bytes bound (over: 503) -> pick the protocol (an
`X-Amz-Target: AmazonSQS.<Action>` header is the JSON protocol; anything else is the query
protocol, parameters from the URL and a form body) -> verify SigV4 when credentials are
configured -> run the action through `actions.dispatch` -> render JSON or XML. Every failure is
a typed error rendered in the request's protocol; an unexpected exception is logged with its
traceback and answered `InternalFailure` without details.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import parse_qsl

from aiohttp import web

from qnode.frontend.api import QueueApi
from qnode.frontend.sqs import actions, query
from qnode.frontend.sqs.errors import GatewayError, Rendered, render_json, render_xml
from qnode.frontend.sqs.sigv4 import SignedRequest, SigV4Verifier
from qnode.protocol.errors import (Busy, ErrorCode, InternalError, InvalidParameter,
                                   ProtocolViolation, QnodeError, RequestTimeout)

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/x-amz-json-1.0"
_TARGET_PREFIX = "AmazonSQS."


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    account_id: str
    region: str
    credentials: Mapping[str, str]        # empty: accept any signature (protected mode)
    request_expiry_s: int
    body_size_max: int
    inflight_requests_max: int
    inflight_body_size_max: int           # request bytes buffered across in-flight requests
    body_read_timeout_s: float            # a body must arrive whole within this


class SqsGateway:
    """Holds the API, the verifier and the in-flight bound; `handle` is the aiohttp handler."""

    def __init__(self, api: QueueApi, settings: GatewaySettings) -> None:
        assert settings.body_size_max > 0
        assert settings.inflight_requests_max > 0
        assert settings.inflight_body_size_max >= settings.body_size_max
        self._api = api
        self._settings = settings
        self._verifier = (SigV4Verifier(settings.credentials, settings.request_expiry_s)
                          if settings.credentials else None)
        self._inflight = 0
        self._inflight_body_size = 0
        self._stopping = asyncio.Event()
        self._boot_id = str(uuid.uuid4())[:23]   # request ids: unique per process, then a counter
        self._request_count = 0
        self.rejected_busy_count = 0
        self.rejected_too_large_count = 0

    def begin_stop(self) -> None:
        """Answer parked long polls now (empty) so the listener can stop promptly."""
        self._stopping.set()

    @property
    def inflight(self) -> int:
        return self._inflight

    @property
    def inflight_body_size(self) -> int:
        """Request bytes received and not yet answered."""
        return self._inflight_body_size

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self._request_count += 1
        request_id = f"{self._boot_id}-{self._request_count:012x}"
        is_json = request.headers.get("X-Amz-Target", "").startswith(_TARGET_PREFIX)
        try:
            if self._inflight >= self._settings.inflight_requests_max:
                self.rejected_busy_count += 1
                raise Busy("Too many requests in flight; retry.")
            self._inflight += 1
            try:
                body = await self._read_body(request)
                try:
                    action, result = await self._serve(request, is_json, body)
                finally:
                    self._inflight_body_size -= len(body)
            finally:
                self._inflight -= 1
        except QnodeError as err:
            if err.code is ErrorCode.INTERNAL:
                log.warning("sqs request failed", extra={"request_id": request_id,
                                                         "error": err.message})
            rendered = (render_json if is_json else render_xml)(err, request_id)
            return _response(rendered)
        except (web.HTTPException, ConnectionError):
            raise
        except Exception:  # a bug: log it, never leak it
            log.exception("sqs request crashed", extra={"request_id": request_id})
            err = InternalError("We encountered an internal error. Please try again.")
            return _response((render_json if is_json else render_xml)(err, request_id))
        if is_json:
            return web.Response(status=200, body=json.dumps(result).encode(),
                                content_type=JSON_CONTENT_TYPE,
                                headers={"x-amzn-RequestId": request_id})
        return web.Response(status=200, body=query.render_xml(action, result, request_id),
                            content_type="text/xml", headers={"x-amzn-RequestId": request_id})

    async def _read_body(self, request: web.Request) -> bytes:
        """The body, within `body_size_max` and `body_read_timeout_s`. Its bytes count against
        `inflight_body_size_max` as they arrive (the caller releases `len(body)`), not as
        declared: a client that announces a large body and sends nothing holds nothing."""
        limit = self._settings.body_size_max
        if request.content_length is not None and request.content_length > limit:
            self.rejected_too_large_count += 1
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self._settings.body_read_timeout_s):
                async for chunk in request.content.iter_chunked(64 * 1024):
                    if size + len(chunk) > limit:
                        self.rejected_too_large_count += 1
                        raise _too_large(limit)
                    if self._inflight_body_size + len(chunk) > self._settings.inflight_body_size_max:
                        self.rejected_busy_count += 1
                        raise Busy("Too many request bytes in flight; retry.")
                    self._inflight_body_size += len(chunk)
                    size += len(chunk)
                    chunks.append(chunk)
        except TimeoutError:
            self._inflight_body_size -= size
            raise RequestTimeout(f"the request body did not arrive within "
                                 f"{self._settings.body_read_timeout_s:g} s") from None
        except BaseException:
            self._inflight_body_size -= size
            raise
        return b"".join(chunks)

    async def _serve(self, request: web.Request, is_json: bool, body: bytes) -> tuple[str, dict]:
        if self._verifier is not None:
            raw_path, _, raw_query = request.raw_path.partition("?")
            self._verifier.verify(
                SignedRequest(request.method, raw_path, raw_query,
                              list(request.headers.items()), body), time.time())
        if is_json:
            action = request.headers["X-Amz-Target"][len(_TARGET_PREFIX):]
            try:
                params = json.loads(body) if body else {}
            except (UnicodeDecodeError, ValueError, RecursionError):
                raise ProtocolViolation("The request body is not valid JSON.") from None
            if not isinstance(params, dict):
                raise ProtocolViolation("The request body must be a JSON object.")
        else:
            bound = query.PARAMS_COUNT_MAX
            try:
                pairs = parse_qsl(request.query_string, keep_blank_values=True,
                                  max_num_fields=bound)
                if request.method == "POST" and body:
                    pairs += parse_qsl(body.decode("utf-8"), keep_blank_values=True,
                                       max_num_fields=bound)
            except UnicodeDecodeError:
                raise ProtocolViolation("The form body is not UTF-8.") from None
            except ValueError:
                raise InvalidParameter(f"More than {bound} request parameters.") from None
            pairs = [(k, v) for k, v in pairs if not k.startswith("X-Amz-")]
            params = query.parse_params(pairs)
            action = str(params.pop("Action", "") or "")
            params.pop("Version", None)
            if not action:
                raise GatewayError("MissingAction", 400, "The request must contain the "
                                   "parameter Action.", code=ErrorCode.MISSING_PARAMETER)
            if "QueueUrl" not in params and request.path.count("/") >= 2:
                params["QueueUrl"] = request.path
        ctx = actions.Context(scheme=request.scheme, host=request.host,
                              account_id=self._settings.account_id, region=self._settings.region,
                              stopping=self._stopping)
        return action, await actions.dispatch(self._api, action, params, ctx)


def _too_large(limit: int) -> GatewayError:
    return GatewayError("RequestEntityTooLarge", 413,
                        f"The request body is larger than {limit} bytes.",
                        code=ErrorCode.FRAME_TOO_LARGE)


def _response(r: Rendered) -> web.Response:
    return web.Response(status=r.status, body=r.body, content_type=r.content_type,
                        headers=r.headers)
