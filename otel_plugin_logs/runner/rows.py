"""Plain records packed straight to msgpack bytes, each call site's fixed fields packed once.

The row of a plain record (``wire.records.Rec``: no extras, exception, stack or span) differs
from the last row of the same call site (logger, level, code location, thread) only in its
sequence number, its times and its body. So the sender packs the rest once per site, and a row
is five pieces of bytes joined: byte for byte what msgpack makes of the whole row (the pieces
use the formats msgpack picks), for a fraction of the cost of building the row and packing it.

Runs on the sender thread only; standard library and msgpack.
"""

from __future__ import annotations

import struct

import msgpack

from otel_plugin_logs.wire.records import (
    CODE_FILE_PATH,
    CODE_FUNCTION_NAME,
    CODE_LINE_NUMBER,
    THREAD_ID,
    THREAD_NAME,
    severity_number,
)

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from typing import Any, Final

# A row is a fixed array of Rec.FIELDS (13) items.
_ROW_ARRAY: Final = 0x9D
_UINT64: Final = 0xCF
# Times in nanoseconds since the epoch are above 2**32: msgpack always writes them as uint64.
MIN_PACKED_TIME_NS: Final = 1 << 32
MAX_PACKED_TIME_NS: Final = (1 << 64) - 1
# The head of a row: array marker, sequence number (in the uint format msgpack picks for its
# size, from uint8 up: smaller sequence numbers take the general path), time, observed time.
_SEQ_FORMATS: Final = ((0xCC, "B", 1 << 8), (0xCD, "H", 1 << 16), (0xCE, "I", 1 << 32), (0xCF, "Q", 1 << 64))
MIN_PACKED_SEQ: Final = 1 << 7
# The fields after the logger name and attributes: no trace id, span id, flags 0, no exception.
_UNTRACED: Final = b"\xc0\xc0\x00\xc0"
_MAX_SITES: Final = 4096


class RowHead:
    """How the head of a row is packed for sequence numbers in ``[low, high)``: ``prefix`` (the
    array marker, the uint format), then ``pack(seq, _UINT64, time_ns)``; the observed time follows."""

    __slots__ = ("code", "high", "low", "pack", "prefix")

    def __init__(self, code: int, layout: str, low: int, high: int) -> None:
        self.code = code
        self.prefix = bytes((_ROW_ARRAY, code))
        self.pack = struct.Struct(">" + layout + "BQ").pack
        self.low = low
        self.high = high


_LOWS: Final = (MIN_PACKED_SEQ, 1 << 8, 1 << 16, 1 << 32)
_HEADS: Final = tuple(
    RowHead(code, layout, low, high) for (code, layout, high), low in zip(_SEQ_FORMATS, _LOWS, strict=True)
)


def row_head(seq: int) -> RowHead:
    """The head format for ``seq``; one whose ``code`` is 0 when the general path must pack it."""
    if seq < MIN_PACKED_SEQ:
        return _SMALL_SEQ_HEAD
    for head in _HEADS:
        if seq < head.high:
            return head
    return _HUGE_SEQ_HEAD


def _str_header(length: int) -> bytes:
    """msgpack's header of a str of ``length`` UTF-8 bytes (fixstr, str8, str16, str32)."""
    if length < 32:
        return bytes((0xA0 | length,))
    if length < 1 << 8:
        return b"\xd9" + length.to_bytes(1, "big")
    if length < 1 << 16:
        return b"\xda" + length.to_bytes(2, "big")
    return b"\xdb" + length.to_bytes(4, "big")


STR_HEADERS: Final = tuple(_str_header(length) for length in range(1 << 8))


def str_header(length: int) -> bytes:
    return STR_HEADERS[length] if length < 256 else _str_header(length)


class PackedSite:
    """One call site's fixed fields as msgpack: ``before_body`` (severity number and text) and
    ``after_body`` (logger, attributes, the untraced fields, level number)."""

    __slots__ = ("after_body", "before_body")

    def __init__(self, before_body: bytes, after_body: bytes) -> None:
        self.before_body = before_body
        self.after_body = after_body


NO_SITE: Final = PackedSite(b"", b"")  # a site whose records take the general path
SiteKey = tuple["Any", ...]  # (levelno, levelname, logger, path, function, line, thread id, thread name)


class SiteCache:
    """The packed fields of the call sites seen lately (bounded: cleared when full).

    ``sites`` maps a ``SiteKey`` to its ``PackedSite``, or to ``NO_SITE`` when the site's
    fields cannot take this path (a level outside the stdlib's range, a non-str level name,
    text msgpack refuses): its records take the general path.
    """

    __slots__ = ("sites",)

    def __init__(self) -> None:
        self.sites: dict[SiteKey, PackedSite] = {}

    def add(self, key: SiteKey) -> PackedSite:
        if len(self.sites) >= _MAX_SITES:
            self.sites.clear()
        site = self.sites[key] = _packed_site(key)
        return site


def _packed_site(key: SiteKey) -> PackedSite:
    levelno, levelname, name, path, function, line, thread, thread_name = key
    if levelno.__class__ is not int or not 0 <= levelno < 64 or levelname.__class__ is not str:
        return NO_SITE
    attributes = {
        CODE_FILE_PATH: path,
        CODE_FUNCTION_NAME: function,
        CODE_LINE_NUMBER: line,
        THREAD_ID: thread,
        THREAD_NAME: thread_name,
    }
    try:
        before = msgpack.packb(severity_number(levelno)) + msgpack.packb(levelname)
        after = msgpack.packb(name, use_bin_type=True) + msgpack.packb(attributes, use_bin_type=True)
    except Exception:  # lone surrogates, a value msgpack does not know: the general path copes
        return NO_SITE
    return PackedSite(before, after + _UNTRACED + msgpack.packb(levelno))


# Sequence numbers msgpack writes as a fixint (below 128) or that no uint64 holds: general path.
NO_HEAD: Final = RowHead(0, "B", 0, 0)
_SMALL_SEQ_HEAD: Final = RowHead(0, "B", 0, MIN_PACKED_SEQ)
_HUGE_SEQ_HEAD: Final = RowHead(0, "Q", 1 << 64, 1 << 128)


def packed_uint64(value: int) -> bytes:
    """``value`` (in the range of ``packed_times``) as msgpack writes it."""
    return bytes((_UINT64,)) + value.to_bytes(8, "big")


def packed_times(observed_ns: int) -> tuple[int, int]:
    """The range of record times a row head can carry in a batch observed at ``observed_ns``
    (empty when the observed time itself does not fit: every row takes the general path)."""
    if MIN_PACKED_TIME_NS <= observed_ns <= MAX_PACKED_TIME_NS:
        return MIN_PACKED_TIME_NS, MAX_PACKED_TIME_NS
    return 1, 0
