"""SigV4 verification, sans-IO: requests signed by botocore's own signers (header and presigned
query forms) must verify; any change to the body, a header, the key or the clock must be
refused with the error SQS gives. Method: build `AWSRequest`s, sign them with `SigV4Auth` /
`SigV4QueryAuth` at a fixed timestamp, and feed the wire form to `SigV4Verifier.verify` with an
explicit `now_s`."""

from __future__ import annotations

import calendar
import datetime as dt
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from qnode.frontend.sqs.errors import GatewayError
from qnode.frontend.sqs.sigv4 import SignedRequest, SigV4Verifier
from qnode.protocol.errors import ErrorCode, QnodeError

KEYS = {"AKIDEXAMPLE": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
SIGNED_AT = dt.datetime(2026, 11, 27, 12, 0, 0)
NOW_S = calendar.timegm(SIGNED_AT.timetuple())


def _sign(body: bytes = b'{"QueueName":"q"}', *, secret: str | None = None,
          key: str = "AKIDEXAMPLE", region: str = "eu-west-1", service: str = "sqs",
          url: str = "http://127.0.0.1:9324/", presign: bool = False) -> AWSRequest:
    creds = Credentials(key, secret if secret is not None else KEYS.get(key, "x"))
    req = AWSRequest(method="POST", url=url, data=body,
                     headers={"Content-Type": "application/x-amz-json-1.0",
                              "X-Amz-Target": "AmazonSQS.CreateQueue"})
    signer = (SigV4QueryAuth(creds, service, region, expires=300) if presign
              else SigV4Auth(creds, service, region))
    with mock.patch("botocore.auth.get_current_datetime", return_value=SIGNED_AT):
        signer.add_auth(req)
    return req


def _wire(req: AWSRequest, **override) -> SignedRequest:
    parts = urlsplit(req.url)
    headers = [(k, v) for k, v in req.headers.items()]
    headers.append(("Host", parts.netloc))
    body = req.body if isinstance(req.body, bytes) else (req.body or "").encode()
    fields = dict(method=req.method, raw_path=parts.path or "/", raw_query=parts.query,
                  headers=headers, body=body)
    fields.update(override)
    return SignedRequest(**fields)


def _error(req: SignedRequest, now_s: float = NOW_S) -> QnodeError:
    with pytest.raises(QnodeError) as info:
        SigV4Verifier(KEYS, 900).verify(req, now_s)
    return info.value


def test_header_signature_from_botocore_verifies_in_any_region():
    for region in ("us-east-1", "eu-west-1", "ap-south-2"):
        assert SigV4Verifier(KEYS, 900).verify(_wire(_sign(region=region)), NOW_S) == "AKIDEXAMPLE"


def test_presigned_query_signature_verifies_until_it_expires():
    req = _wire(_sign(presign=True))
    assert "X-Amz-Signature=" in req.raw_query
    assert SigV4Verifier(KEYS, 900).verify(req, NOW_S + 299) == "AKIDEXAMPLE"
    assert _error(req, NOW_S + 301).code is ErrorCode.REQUEST_EXPIRED


def test_wrong_secret_is_signature_does_not_match():
    err = _error(_wire(_sign(secret="not-the-secret")))
    assert err.code is ErrorCode.INVALID_SIGNATURE


def test_unknown_access_key_is_invalid_client_token_id():
    err = _error(_wire(_sign(key="AKIDUNKNOWN")))
    assert err.code is ErrorCode.INVALID_CLIENT_TOKEN_ID


def test_tampered_body_is_refused():
    req = _sign()
    err = _error(_wire(req, body=b'{"QueueName":"other"}'))
    assert err.code is ErrorCode.INVALID_SIGNATURE


def test_tampered_signed_header_is_refused():
    req = _wire(_sign())
    headers = [(k, "AmazonSQS.DeleteQueue" if k == "X-Amz-Target" else v) for k, v in req.headers]
    assert _error(_wire(_sign(), headers=headers)).code is ErrorCode.INVALID_SIGNATURE


def test_clock_skew_beyond_expiry_is_request_expired():
    req = _wire(_sign())
    assert SigV4Verifier(KEYS, 900).verify(req, NOW_S + 899) == "AKIDEXAMPLE"
    assert _error(req, NOW_S + 901).code is ErrorCode.REQUEST_EXPIRED
    assert _error(req, NOW_S - 901).code is ErrorCode.REQUEST_EXPIRED


def test_other_service_scope_is_refused():
    assert _error(_wire(_sign(service="sns"))).code is ErrorCode.INVALID_SIGNATURE


def test_missing_signature_is_missing_authentication_token():
    req = _wire(_sign(), headers=[("Host", "127.0.0.1:9324")])
    err = _error(req)
    assert isinstance(err, GatewayError)
    assert err.sqs_name == "MissingAuthenticationToken"
    assert err.http_status == 403


def test_query_path_and_params_are_part_of_the_signature():
    url = "http://127.0.0.1:9324/000000000000/q?Action=GetQueueAttributes&AttributeName.1=All"
    req = _wire(_sign(url=url, body=b""))
    assert SigV4Verifier(KEYS, 900).verify(req, NOW_S) == "AKIDEXAMPLE"
    bad = _wire(_sign(url=url, body=b""), raw_query=req.raw_query.replace("All", "Policy"))
    assert _error(bad).code is ErrorCode.INVALID_SIGNATURE
    moved = _wire(_sign(url=url, body=b""), raw_path="/000000000000/other")
    assert _error(moved).code is ErrorCode.INVALID_SIGNATURE
