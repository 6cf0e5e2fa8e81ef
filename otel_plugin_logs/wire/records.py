"""The record on the wire: its positional layout, the attribute names every record carries,
and the coercion that makes any Python value fit the wire and OTLP.

A record is a positional list (see ``Rec``), rather than a map, because this is the hot path
on both sides and the layout is fixed per protocol version.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from typing import Any, Final


class Rec:
    """Indexes of the fields of a record on the wire (protocol version 1)."""

    SEQ: Final = 0
    TIME: Final = 1
    OBSERVED_TIME: Final = 2
    SEVERITY_NUMBER: Final = 3
    SEVERITY_TEXT: Final = 4
    BODY: Final = 5
    LOGGER: Final = 6
    ATTRIBUTES: Final = 7
    TRACE_ID: Final = 8
    SPAN_ID: Final = 9
    TRACE_FLAGS: Final = 10
    EXCEPTION: Final = 11  # None or [type, message, stacktrace]
    LEVELNO: Final = 12  # the stdlib level number, for a faithful replay
    FIELDS: Final = 13


# Attribute names carried by every record (OTel semantic conventions, stable since 1.33).
CODE_FILE_PATH: Final = "code.file.path"
CODE_FUNCTION_NAME: Final = "code.function.name"
CODE_LINE_NUMBER: Final = "code.line.number"
THREAD_ID: Final = "thread.id"
THREAD_NAME: Final = "thread.name"
EXCEPTION_TYPE: Final = "exception.type"
EXCEPTION_MESSAGE: Final = "exception.message"
EXCEPTION_STACKTRACE: Final = "exception.stacktrace"
# Set when the runner truncated the body: the size of the original, in UTF-8 bytes.
BODY_ORIGINAL_BYTES: Final = "otel_plugin_logs.body.original_bytes"
TRUNCATION_MARKER: Final = "…[truncated]"

# Caps on attribute values. The runner coerces to fit them; the host enforces them again,
# since it cannot trust that a runner did.
MAX_VALUE_DEPTH: Final = 8
MAX_CONTAINER_ITEMS: Final = 128
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
UINT64_MAX: Final = 2**64 - 1


def severity_number(levelno: int) -> int:
    """Map a stdlib level number to an OTel SeverityNumber (1..24).

    Levels 1..9 fall in TRACE (1..4) rather than UNSPECIFIED, so custom verbose levels keep
    an order; 0 (NOTSET) stays UNSPECIFIED.
    """
    if levelno <= 0:
        return 0
    if levelno < 10:
        return 1 + (levelno - 1) * 4 // 9
    base = (levelno // 10) * 10
    if base >= 60:
        return 24
    first = {10: 5, 20: 9, 30: 13, 40: 17, 50: 21}[base]
    offset = levelno - base
    if offset <= 2:
        return first + offset
    if base == 50:
        return 24
    return first + 3


def truncate_utf8(text: str, max_bytes: int) -> tuple[str, int]:
    """Cut ``text`` to at most ``max_bytes`` UTF-8 bytes plus a marker.

    Returns the text and the original size in bytes (0 when nothing was cut). Cheap for the
    common case: a string whose length in characters times 4 fits needs no encoding at all.
    """
    if len(text) * 4 <= max_bytes:
        return text, 0
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= max_bytes:
        return text, 0
    keep = max(0, max_bytes - len(TRUNCATION_MARKER.encode()))
    head = encoded[:keep].decode("utf-8", "ignore")
    return head + TRUNCATION_MARKER, len(encoded)


def coerce_value(value: Any, max_length: int, depth: int = 0) -> Any:
    """Turn any Python value into one the wire and OTLP accept.

    str/int/float/bool/bytes and lists/maps of them pass; strings and bytes are capped at
    ``max_length``; ints outside int64 and non-finite floats become strings (OTLP has no
    place for them); anything else is stringified; nesting deeper than ``MAX_VALUE_DEPTH``
    and containers longer than ``MAX_CONTAINER_ITEMS`` are cut.
    """
    kind = value.__class__
    if kind is str:
        return value if len(value) <= max_length else value[:max_length] + TRUNCATION_MARKER
    if kind is bool:
        return value
    if kind is int:
        return value if INT64_MIN <= value <= INT64_MAX else str(value)
    if kind is float:
        return value if math.isfinite(value) else repr(value)
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value[:max_length])
    if depth >= MAX_VALUE_DEPTH:
        return _safe_str(value, max_length)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if len(out) >= MAX_CONTAINER_ITEMS:
                break
            out[key if key.__class__ is str else _safe_str(key, max_length)] = coerce_value(
                item, max_length, depth + 1
            )
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [
            coerce_value(item, max_length, depth + 1)
            for _, item in zip(range(MAX_CONTAINER_ITEMS), value, strict=False)
        ]
    if isinstance(value, int):  # bool was handled; IntEnum and friends keep their value
        return coerce_value(int(value), max_length, depth)
    if isinstance(value, float):
        return coerce_value(float(value), max_length, depth)
    if isinstance(value, str):
        return coerce_value(str(value), max_length, depth)
    return _safe_str(value, max_length)


def _safe_str(value: object, max_length: int) -> str:
    try:
        text = str(value)
    except Exception as error:  # a plugin's __str__ may raise; the record must survive it
        text = f"<unprintable {type(value).__name__}: {type(error).__name__}>"
    return text if len(text) <= max_length else text[:max_length] + TRUNCATION_MARKER
