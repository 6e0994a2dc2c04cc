"""Protocol violations: the exceptions the sans-IO protocol core raises.

Owns the h11-style split (STYLE.md §2.5):
- `LocalProtocolError`: raised inside the protocol package (framing, message conversion, state
  machine) and by `send()` when *this* side misuses the connection.
- `RemoteProtocolError`: what the single inbound entry point (`ProtocolConnection.next_event`)
  raises after converting a `LocalProtocolError` met while parsing the peer's bytes.
Both are `QnodeError`s, so they carry a stable wire code (`PROTOCOL_ERROR`, `FRAME_TOO_LARGE`,
`UNSUPPORTED_VERSION`) and can be sent to the peer as an error frame before the connection is
closed. They never carry tracebacks or text of internal exceptions.
"""

from __future__ import annotations

from qnode.protocol.errors import ErrorCode, QnodeError


class ProtocolError(QnodeError):
    """Base of both protocol violation kinds; `code` says which wire error it maps to."""

    code = ErrorCode.PROTOCOL_ERROR


class LocalProtocolError(ProtocolError):
    """This side misused the protocol, or (inside the core) a parse step found bad input."""

    def to_remote(self) -> "RemoteProtocolError":
        return RemoteProtocolError(self.message, code=self.code)


class RemoteProtocolError(ProtocolError):
    """The peer violated the protocol; send `to_wire()` as an error frame, then close."""
