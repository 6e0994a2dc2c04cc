"""Length-prefixed msgpack frames: the byte layer of the qnode wire protocol.

A frame is a u32 big-endian body length followed by exactly one msgpack object. This module
owns the incremental decoder and the encoder; it knows nothing of message types or sockets.

Invariants:
- The decoder's buffer never holds more than one frame header plus `frame_size_max` bytes of
  undecoded data before it raises (a declared length above the bound raises at once, before the
  body arrives), so a hostile peer cannot make it grow without bound.
- Every failure is a `LocalProtocolError` (code `FRAME_TOO_LARGE` or `PROTOCOL_ERROR`); no
  msgpack, unicode or type error escapes. After an error the decoder refuses further use: a
  length-prefixed stream cannot be resynchronised.
- msgpack limits are always passed explicitly (never library defaults): `raw=False`,
  `strict_map_key=True`, bounded str/bin/array/map lengths, no ext types.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from qnode import limits
from qnode.protocol.errors import ErrorCode
from qnode.protocol.violations import LocalProtocolError


class _NeedData:
    """Sentinel type: the decoder needs more bytes before it can return a frame."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()

_HEADER = struct.Struct(">I")
HEADER_SIZE = _HEADER.size
assert HEADER_SIZE == limits.frame_header_size


@dataclass(frozen=True, slots=True)
class FrameLimits:
    frame_size_max: int = limits.frame_size_max
    str_len_max: int = limits.msgpack_str_len_max
    bin_len_max: int = limits.msgpack_bin_len_max
    array_len_max: int = limits.msgpack_array_len_max
    map_len_max: int = limits.msgpack_map_len_max

    def __post_init__(self) -> None:
        if not 1 <= self.frame_size_max <= 0xFFFFFFFF:
            raise ValueError("frame_size_max out of range")
        for name in ("str_len_max", "bin_len_max", "array_len_max", "map_len_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")


DEFAULT_LIMITS = FrameLimits()

# Errors msgpack may raise on hostile input (unpackb): ExtraData/FormatError/StackError and the
# limit checks are ValueError subclasses or UnpackException; invalid UTF-8 is UnicodeDecodeError
# (a ValueError); unhashable or non-str keys are TypeError/ValueError.
_DECODE_ERRORS = (ValueError, TypeError, msgpack.UnpackException, RecursionError, OverflowError)


def _ext_hook(code: int, data: bytes) -> Any:
    raise LocalProtocolError("msgpack ext types are not allowed")


class FrameDecoder:
    """Incremental frame decoder. Feed bytes, then call `next_frame()` until `NEED_DATA`."""

    __slots__ = ("_buf", "_pos", "_limits", "_failed", "_unpack_kwargs")

    def __init__(self, frame_limits: FrameLimits = DEFAULT_LIMITS) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._limits = frame_limits
        self._failed = False
        self._unpack_kwargs = dict(
            raw=False,
            strict_map_key=True,
            use_list=True,
            timestamp=0,
            ext_hook=_ext_hook,
            max_str_len=frame_limits.str_len_max,
            max_bin_len=frame_limits.bin_len_max,
            max_array_len=frame_limits.array_len_max,
            max_map_len=frame_limits.map_len_max,
            max_ext_len=0,
        )

    @property
    def buffered_size(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        """Append received bytes. Raises LocalProtocolError if the decoder already failed."""
        if self._failed:
            raise LocalProtocolError("decoder is in an error state")
        if data:
            self._buf += data

    def next_frame(self) -> Any:
        """Return the next decoded msgpack object, or `NEED_DATA`.

        Raises LocalProtocolError (code FRAME_TOO_LARGE or PROTOCOL_ERROR); after that every call
        raises again. Any other exception is a bug.
        """
        if self._failed:
            raise LocalProtocolError("decoder is in an error state")
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail < HEADER_SIZE:
            self._compact()
            return NEED_DATA
        (size,) = _HEADER.unpack_from(buf, pos)
        if size > self._limits.frame_size_max:
            self._failed = True
            raise LocalProtocolError(
                f"frame of {size} bytes exceeds frame_size_max {self._limits.frame_size_max}",
                code=ErrorCode.FRAME_TOO_LARGE)
        if size == 0:
            self._failed = True
            raise LocalProtocolError("empty frame")
        end = pos + HEADER_SIZE + size
        if len(buf) < end:
            self._compact()
            return NEED_DATA
        body = buf[pos + HEADER_SIZE:end]   # one copy; unpackb copies bin/str out of it
        self._pos = end
        if end == len(buf):
            buf.clear()
            self._pos = 0
        try:
            return msgpack.unpackb(body, **self._unpack_kwargs)
        except LocalProtocolError:
            self._failed = True
            raise
        except _DECODE_ERRORS as exc:
            self._failed = True
            raise LocalProtocolError(f"malformed msgpack body ({type(exc).__name__})") from None

    def _compact(self) -> None:
        # Drop consumed bytes so the buffer is bounded by one partial frame.
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0


class FrameEncoder:
    """Reusable encoder (one msgpack.Packer per connection; STYLE.md: avoid per-frame setup)."""

    __slots__ = ("_packer", "_frame_size_max")

    def __init__(self, frame_size_max: int = limits.frame_size_max) -> None:
        self._packer = msgpack.Packer(use_bin_type=True, datetime=False, strict_types=False)
        self._frame_size_max = frame_size_max

    def encode(self, obj: Any) -> bytes:
        """Frame one object. Raises LocalProtocolError if it is not packable or too large."""
        try:
            body = self._packer.pack(obj)
        except (TypeError, ValueError, OverflowError) as exc:
            self._packer.reset()
            raise LocalProtocolError(f"cannot encode frame ({type(exc).__name__})") from None
        if len(body) > self._frame_size_max:
            raise LocalProtocolError(f"frame of {len(body)} bytes exceeds frame_size_max",
                                     code=ErrorCode.FRAME_TOO_LARGE)
        return _HEADER.pack(len(body)) + body


def encode_frame(obj: Any, frame_size_max: int = limits.frame_size_max) -> bytes:
    """Frame one object (no shared Packer: safe from any thread). See FrameEncoder.encode."""
    return FrameEncoder(frame_size_max).encode(obj)
