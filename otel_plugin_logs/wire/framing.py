"""Frames: a 4-byte big-endian length, then a msgpack map.

msgpack is data only (no code, no classes), and every decode is bounded: the length prefix is
checked against ``max_frame_bytes`` before a single byte of the body is buffered, and the
unpacker is given caps on string, binary, array and map sizes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping

import msgpack

from otel_plugin_logs.wire.limits import DEFAULT_MAX_FRAME_BYTES

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from typing import Any, Final

_HEADER: Final = struct.Struct(">I")
HEADER_BYTES: Final = _HEADER.size


class ProtocolError(Exception):
    """Input that does not follow the protocol. ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def encode_message(message: Mapping[str, Any]) -> bytes:
    """Encode one message as a complete frame (length prefix included)."""
    body: bytes = msgpack.packb(message, use_bin_type=True)
    return _HEADER.pack(len(body)) + body


def unpack_bounded(body: bytes, max_frame_bytes: int) -> Any:
    """msgpack ``body`` with every length bounded by the frame size; raises what msgpack raises."""
    return msgpack.unpackb(
        body,
        raw=False,
        # Invalid UTF-8 in one string costs that string's bad bytes (U+FFFD), not the frame.
        unicode_errors="replace",
        strict_map_key=True,
        use_list=True,
        max_str_len=max_frame_bytes,
        max_bin_len=max_frame_bytes,
        max_array_len=max_frame_bytes // 2,
        max_map_len=max_frame_bytes // 4,
        max_ext_len=0,
    )


def decode_message(body: bytes, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> dict[str, Any]:
    """Decode one frame body into a message map, or raise ``ProtocolError``."""
    try:
        message = unpack_bounded(body, max_frame_bytes)
    except Exception as error:
        # msgpack raises several unrelated types (ValueError, StackError, ExtraData,
        # UnicodeDecodeError, TypeError for unhashable keys); to a peer they are all one thing.
        raise ProtocolError("malformed", f"{type(error).__name__}: {error}") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ProtocolError("malformed", "a message must be a map with a string 't'")
    return message


class FrameDecoder:
    """Cut a byte stream into messages, whatever the splits and coalescing of the reads.

    Memory is bounded by one frame: a length prefix above ``max_frame_bytes`` is rejected as
    soon as its 4 bytes are seen, before anything is allocated for the body.
    """

    __slots__ = ("_buffer", "_max_frame_bytes", "_needed")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max_frame_bytes = max_frame_bytes
        self._needed = -1  # body length of the frame being read, -1 while reading a header

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        """Add bytes; yield every message they complete. Raises ``ProtocolError``."""
        self._buffer += data
        while True:
            if self._needed < 0:
                if len(self._buffer) < HEADER_BYTES:
                    return
                (length,) = _HEADER.unpack_from(self._buffer)
                if length > self._max_frame_bytes:
                    self._buffer.clear()
                    raise ProtocolError(
                        "frame_too_large", f"length prefix {length} > max {self._max_frame_bytes}"
                    )
                del self._buffer[:HEADER_BYTES]
                self._needed = length
            if len(self._buffer) < self._needed:
                return
            body = bytes(self._buffer[: self._needed])
            del self._buffer[: self._needed]
            self._needed = -1
            yield decode_message(body, self._max_frame_bytes)

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)


def encode_message_with_records(header: Mapping[str, Any], packed_records: list[bytes]) -> bytes:
    """A batch frame from its header fields and records packed one by one.

    Packing records separately lets the sender cut batches at a byte size without encoding
    anything twice; the result is byte-for-byte a msgpack map with a ``records`` array.
    """
    count = len(packed_records)
    if count < 16:
        array_header = bytes((0x90 | count,))
    elif count < 0x10000:
        array_header = b"\xdc" + count.to_bytes(2, "big")
    else:
        array_header = b"\xdd" + count.to_bytes(4, "big")
    fields = len(header) + 1
    if fields >= 16:
        raise ValueError("batch header has too many fields")
    parts = [bytes((0x80 | fields,))]
    for key, value in header.items():
        parts.append(msgpack.packb(key))
        parts.append(msgpack.packb(value, use_bin_type=True))
    parts.append(msgpack.packb("records"))
    parts.append(array_header)
    parts.extend(packed_records)
    body = b"".join(parts)
    return len(body).to_bytes(4, "big") + body
