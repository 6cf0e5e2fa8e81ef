"""The wire protocol: severity mapping, framing, truncation and value coercion."""

from __future__ import annotations

import math

import msgpack
import pytest

from otel_plugin_logs.wire.framing import FrameDecoder, ProtocolError, decode_message, encode_message
from otel_plugin_logs.wire.records import (
    MAX_CONTAINER_ITEMS,
    MAX_VALUE_DEPTH,
    TRUNCATION_MARKER,
    coerce_value,
    severity_number,
    truncate_utf8,
)


@pytest.mark.parametrize(
    ("levelno", "expected"),
    [
        (0, 0),
        (1, 1),
        (5, 2),
        (9, 4),
        (10, 5),
        (11, 6),
        (12, 7),
        (13, 8),
        (19, 8),
        (20, 9),
        (22, 11),
        (25, 12),
        (30, 13),
        (32, 15),
        (35, 16),
        (40, 17),
        (42, 19),
        (45, 20),
        (50, 21),
        (52, 23),
        (53, 24),
        (70, 24),
    ],
)
def test_severity_mapping_follows_the_sdk_with_trace_for_low_levels(levelno: int, expected: int) -> None:
    """stdlib levels map to OTel SeverityNumber as the SDK does; 1..9 land in TRACE1..4 instead of UNSPECIFIED."""
    assert severity_number(levelno) == expected


def test_frames_round_trip_byte_by_byte() -> None:
    """A stream fed one byte at a time yields the same messages."""
    messages = [{"t": "batch", "n": i, "blob": bytes([i]) * i} for i in range(20)]
    stream = b"".join(encode_message(m) for m in messages)
    decoder = FrameDecoder()
    out = []
    for i in range(len(stream)):
        out.extend(decoder.feed(stream[i : i + 1]))
    assert out == messages
    assert decoder.buffered_bytes == 0


def test_oversized_length_prefix_is_refused_before_reading_the_body() -> None:
    """A length prefix above the maximum fails as soon as its four bytes are in, nothing buffered."""
    decoder = FrameDecoder(max_frame_bytes=1024)
    with pytest.raises(ProtocolError) as error:
        list(decoder.feed(b"\xff\xff\xff\xff"))
    assert error.value.reason == "frame_too_large"
    assert decoder.buffered_bytes == 0


@pytest.mark.parametrize(
    "body",
    [
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"t": 3}),
        msgpack.packb({1: "x"}),
        msgpack.packb({"t": "x"}) + b"\x00",
        b"\xdd\xff\xff\xff\xff",
    ],
)
def test_malformed_bodies_are_one_clean_protocol_error(body: bytes) -> None:
    """Invalid msgpack, wrong shapes, trailing bytes and absurd container sizes all become ProtocolError('malformed')."""
    with pytest.raises(ProtocolError) as error:
        decode_message(body)
    assert error.value.reason == "malformed"


def test_pickle_is_never_involved() -> None:
    """Ext types (msgpack's escape hatch for objects) are refused outright."""
    body = msgpack.packb({"t": "batch", "x": msgpack.ExtType(1, b"payload")})
    with pytest.raises(ProtocolError):
        decode_message(body)


def test_truncation_keeps_valid_utf8_and_reports_the_original_size() -> None:
    """Cutting a long text keeps whole characters, appends the marker and returns the original byte size."""
    text = "é" * 1000
    cut, original = truncate_utf8(text, 301)
    assert original == 2000
    assert cut.endswith(TRUNCATION_MARKER)
    assert len(cut.encode()) <= 301
    assert truncate_utf8("short", 300) == ("short", 0)


def test_coercion_keeps_types_and_bounds_everything_else() -> None:
    """Scalars pass, odd objects are stringified, deep and long containers are cut, huge ints become strings."""
    assert coerce_value(3, 10) == 3 and coerce_value(True, 10) is True and coerce_value(1.5, 10) == 1.5
    assert coerce_value(b"abcdef", 3) == b"abc"
    assert coerce_value("abcdef", 3) == "abc" + TRUNCATION_MARKER
    assert coerce_value(2**70, 100) == str(2**70)
    assert coerce_value(math.nan, 10) == "nan" and coerce_value(-math.inf, 10) == "-inf"
    assert coerce_value((1, {2, 3}), 10) in ([1, [2, 3]], [1, [3, 2]])
    assert coerce_value(object, 100) == "<class 'object'>"
    deep: list[object] = []
    node = deep
    for _ in range(50):
        child: list[object] = []
        node.append(child)
        node = child
    out = coerce_value(deep, 10_000)
    depth = 0
    while isinstance(out, list) and out:
        out = out[0]
        depth += 1
    assert depth == MAX_VALUE_DEPTH and isinstance(out, str)
    assert len(coerce_value(list(range(1000)), 10)) == MAX_CONTAINER_ITEMS


def test_a_failing_str_does_not_break_coercion() -> None:
    """An object whose __str__ raises is replaced by a description instead of an exception."""

    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert coerce_value(Hostile(), 100) == "<unprintable Hostile: RuntimeError>"
