"""Sans-IO verification of AWS Signature Version 4 (header and presigned-query forms).

Input is one request as plain values (`SignedRequest`) plus `now_s`; output is the access key
that signed it, or a typed error:
- no signature at all                      -> GatewayError MissingAuthenticationToken (403)
- malformed Authorization / credential      -> GatewayError IncompleteSignature (403)
- unknown access key                        -> InvalidClientTokenId (403)
- X-Amz-Date outside `expiry_s` of now, or
  a presigned URL past its X-Amz-Expires    -> RequestExpired (400)
- any other mismatch (body hash too)        -> SignatureDoesNotMatch (403)

Canonical request per the AWS SigV4 documentation (and botocore's signer): method, the
URI-encoded normalized path, the query sorted by encoded key then value (minus X-Amz-Signature
when presigned), the signed headers trimmed and lower-cased, the signed-header list, and the
payload hash (`x-amz-content-sha256` if sent, else SHA-256 of the body; presigned requests may
also use UNSIGNED-PAYLOAD). Any region is accepted; the service must be `sqs`. Signatures are
compared with `hmac.compare_digest`. Derived signing keys are cached in a bounded dict.
No I/O, no clock: the caller passes `now_s`.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import posixpath
from dataclasses import dataclass
from datetime import datetime
from typing import Mapping, Sequence
from urllib.parse import quote, unquote

from qnode.frontend.sqs.errors import GatewayError
from qnode.protocol.errors import (ErrorCode, InvalidClientTokenId, InvalidSignature,
                                   RequestExpired)

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
SERVICE = "sqs"
_KEY_CACHE_COUNT_MAX = 256        # (secret, date, region) signing keys kept
_PRESIGN_EXPIRES_S_MAX = 7 * 86400  # AWS: a presigned URL lives at most 7 days


@dataclass(frozen=True, slots=True)
class SignedRequest:
    method: str
    raw_path: str                               # as on the wire, percent-encoded, no query
    raw_query: str                              # as on the wire, without '?'
    headers: Sequence[tuple[str, str]]          # every header, in order, names any case
    body: bytes


def _missing() -> GatewayError:
    return GatewayError("MissingAuthenticationToken", 403,
                        "Request is missing Authentication Token",
                        code=ErrorCode.ACCESS_DENIED)


def _incomplete(why: str) -> GatewayError:
    return GatewayError("IncompleteSignature", 403, why, code=ErrorCode.INVALID_SIGNATURE)


def _parse_amz_date(value: str) -> int:
    try:
        return calendar.timegm(datetime.strptime(value, "%Y%m%dT%H%M%SZ").timetuple())
    except ValueError:
        raise _incomplete(f"Invalid X-Amz-Date {value!r}") from None


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical_path(raw_path: str) -> str:
    path = raw_path or "/"
    normalized = posixpath.normpath(path)
    if path.endswith("/") and normalized != "/":
        normalized += "/"
    if normalized.startswith("//"):
        normalized = "/" + normalized.lstrip("/")
    return quote(normalized, safe="/~")


def _canonical_query(raw_query: str, drop_signature: bool) -> str:
    pairs: list[tuple[str, str]] = []
    for part in raw_query.split("&") if raw_query else ():
        if not part:
            continue
        key, _, value = part.partition("=")
        key = quote(unquote(key), safe="-_.~")
        if drop_signature and key == "X-Amz-Signature":
            continue
        pairs.append((key, quote(unquote(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


class SigV4Verifier:
    """Verifies requests against `credentials` (access key -> secret key)."""

    def __init__(self, credentials: Mapping[str, str], expiry_s: int) -> None:
        assert expiry_s > 0
        self._credentials = dict(credentials)
        self._expiry_s = expiry_s
        self._keys: dict[tuple[str, str, str], bytes] = {}

    def _signing_key(self, secret: str, date: str, region: str) -> bytes:
        cache_key = (secret, date, region)
        key = self._keys.get(cache_key)
        if key is None:
            key = ("AWS4" + secret).encode()
            for part in (date, region, SERVICE, "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            if len(self._keys) >= _KEY_CACHE_COUNT_MAX:
                self._keys.pop(next(iter(self._keys)))
            self._keys[cache_key] = key
        return key

    def verify(self, req: SignedRequest, now_s: float) -> str:
        """Return the access key that signed `req`; raise a typed error otherwise."""
        headers: dict[str, list[str]] = {}
        for name, value in req.headers:
            headers.setdefault(name.lower(), []).append(value)
        auth = headers.get("authorization", [""])[0]
        query = _query_params(req.raw_query)
        if auth.startswith(ALGORITHM + " "):
            fields = _parse_auth_header(auth[len(ALGORITHM) + 1:])
            credential = fields.get("Credential", "")
            signed_headers = fields.get("SignedHeaders", "")
            signature = fields.get("Signature", "")
            amz_date = (headers.get("x-amz-date") or [""])[0]
            presigned, expires_s = False, 0
        elif query.get("X-Amz-Algorithm") == ALGORITHM:
            credential = query.get("X-Amz-Credential", "")
            signed_headers = query.get("X-Amz-SignedHeaders", "")
            signature = query.get("X-Amz-Signature", "")
            amz_date = query.get("X-Amz-Date", "")
            presigned = True
            try:
                expires_s = int(query.get("X-Amz-Expires", "0"))
            except ValueError:
                raise _incomplete("X-Amz-Expires must be an integer") from None
            if not 0 < expires_s <= _PRESIGN_EXPIRES_S_MAX:
                raise _incomplete("X-Amz-Expires must be between 1 and 604800 seconds")
        elif auth:
            raise _incomplete("Unsupported authorization type (only AWS4-HMAC-SHA256)")
        else:
            raise _missing()
        if not (credential and signed_headers and signature and amz_date):
            raise _incomplete("Authorization is missing Credential, SignedHeaders, Signature "
                              "or X-Amz-Date")
        scope = credential.split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            raise _incomplete(f"Credential {credential!r} is malformed")
        access_key, date, region, service = scope[:4]
        secret = self._credentials.get(access_key)
        if secret is None:
            raise InvalidClientTokenId(
                "The security token included in the request is invalid.")
        if service != SERVICE:
            raise InvalidSignature(f"Credential should be scoped to correct service: '{SERVICE}'.")
        signed_at_s = _parse_amz_date(amz_date)
        if date != amz_date[:8]:
            raise InvalidSignature("Credential should be scoped to a valid date.")
        if presigned:
            if now_s > signed_at_s + expires_s or signed_at_s > now_s + self._expiry_s:
                raise RequestExpired("Request has expired.")
        elif abs(now_s - signed_at_s) > self._expiry_s:
            raise RequestExpired(f"Signature expired: {amz_date} is outside the "
                                 f"{self._expiry_s} s window around the server time.")
        names = signed_headers.split(";")
        if "host" not in names:
            raise InvalidSignature("'Host' must be a signed header.")
        canon_headers = []
        for name in names:
            values = headers.get(name)
            if values is None:
                raise InvalidSignature(f"Signed header {name!r} is missing from the request.")
            canon_headers.append(f"{name}:{','.join(' '.join(v.split()) for v in values)}")
        body_hash = _sha256_hex(req.body)
        sent_hash = (headers.get("x-amz-content-sha256") or [None])[0]
        if sent_hash is not None and sent_hash != UNSIGNED_PAYLOAD and sent_hash != body_hash:
            raise InvalidSignature("The provided x-amz-content-sha256 header does not match "
                                   "the request body.")
        candidates = [sent_hash] if sent_hash is not None else [body_hash]
        if presigned and sent_hash is None:
            candidates.append(UNSIGNED_PAYLOAD)
        if not presigned and candidates == [UNSIGNED_PAYLOAD]:
            raise InvalidSignature("UNSIGNED-PAYLOAD is not accepted on signed headers.")
        prefix = "\n".join([req.method.upper(), _canonical_path(req.raw_path),
                            _canonical_query(req.raw_query, presigned),
                            "\n".join(canon_headers) + "\n", signed_headers])
        key = self._signing_key(secret, date, region)
        credential_scope = "/".join(scope[1:])
        for payload_hash in candidates:
            canonical = prefix + "\n" + payload_hash
            to_sign = "\n".join([ALGORITHM, amz_date, credential_scope,
                                 _sha256_hex(canonical.encode())])
            expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected, signature.lower()):
                return access_key
        raise InvalidSignature("The request signature we calculated does not match the "
                               "signature you provided. Check your AWS Secret Access Key and "
                               "signing method.")


def _parse_auth_header(rest: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise _incomplete("Authorization header is malformed")
        fields[key] = value
    return fields


def _query_params(raw_query: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in raw_query.split("&") if raw_query else ():
        key, _, value = part.partition("=")
        if key.startswith("X-Amz-"):
            out[unquote(key)] = unquote(value)
    return out
