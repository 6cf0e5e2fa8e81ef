"""Framing under arbitrary byte streams (issue #6, cases 9 and 10): property tests and a 4 GB length prefix."""

from __future__ import annotations

import gc
import struct
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import msgpack
import pytest
from helpers import PYTHON, MemorySink, write_plugin
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import RawRunner, describe, settled, wire_record

from otel_plugin_logs import HostLogBridge
from otel_plugin_logs.export.model import measured_memory_bytes
from otel_plugin_logs.export.otlp import ResourceInfo, encode_json_line, encode_request
from otel_plugin_logs.host.entries import Limits, build_entry
from otel_plugin_logs.host.replay import Replayer
from otel_plugin_logs.wire.framing import FrameDecoder, ProtocolError, decode_message, encode_message
from otel_plugin_logs.wire.validate import validate_records, validated_records

MAX_FRAME = 64 * 1024
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
messages = st.builds(
    lambda kind, extra: {"t": kind, **extra},
    st.text(max_size=12),
    st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k != "t"), values, max_size=5),
)


def _feed_all(decoder: FrameDecoder, chunks: list[bytes]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, last = [], 0
    for point in points:
        chunks.append(data[last:point])
        last = point
    chunks.append(data[last:])
    return chunks


@PROPERTY
@given(st.lists(messages, min_size=1, max_size=8), st.lists(st.integers(min_value=0), max_size=30))
def test_frames_round_trip_under_any_split_and_coalescing(
    msgs: list[dict[str, Any]], cuts: list[int]
) -> None:
    """Any sequence of messages, concatenated and cut at arbitrary points (empty chunks too), decodes to itself."""
    stream = b"".join(encode_message(m) for m in msgs)
    decoder = FrameDecoder(MAX_FRAME * 16)
    assert _feed_all(decoder, _split(stream, cuts)) == msgs
    assert decoder.buffered_bytes == 0


@PROPERTY
@given(st.binary(max_size=4096), st.lists(st.integers(min_value=0), max_size=20))
def test_arbitrary_bytes_give_only_a_clean_protocol_error(data: bytes, cuts: list[int]) -> None:
    """Random bytes in random chunks: messages (maps with a string 't') or ProtocolError, never anything else, memory bounded."""
    decoder = FrameDecoder(MAX_FRAME)
    reason = None
    try:
        for chunk in _split(data, cuts):
            for message in decoder.feed(chunk):
                assert isinstance(message, dict) and isinstance(message["t"], str)
            assert decoder.buffered_bytes <= MAX_FRAME + 4
    except ProtocolError as error:
        reason = error.reason
    assert reason in {None, "malformed", "frame_too_large"}


@PROPERTY
@given(st.binary(max_size=2048))
def test_any_body_behind_a_valid_length_prefix_is_a_message_or_a_protocol_error(body: bytes) -> None:
    """A well-formed header followed by an arbitrary body never raises anything but ProtocolError."""
    decoder = FrameDecoder(MAX_FRAME)
    out: list[dict[str, Any]] = []
    reason = None
    try:
        out = list(decoder.feed(struct.pack(">I", len(body)) + body))
    except ProtocolError as error:
        reason = error.reason
    assert reason == "malformed" or (len(out) == 1 and isinstance(out[0]["t"], str))


@PROPERTY
@given(st.lists(messages, min_size=1, max_size=4), st.data())
def test_bit_flips_in_valid_frames_give_only_a_clean_protocol_error(
    msgs: list[dict[str, Any]], data: Any
) -> None:
    """Corrupting one byte of a valid stream yields messages or ProtocolError, nothing else."""
    stream = bytearray(b"".join(encode_message(m) for m in msgs))
    index = data.draw(st.integers(min_value=0, max_value=len(stream) - 1))
    stream[index] ^= data.draw(st.integers(min_value=1, max_value=255))
    decoder = FrameDecoder(MAX_FRAME)
    try:
        for message in decoder.feed(bytes(stream)):
            assert isinstance(message["t"], str)
    except ProtocolError:
        pass


@pytest.mark.parametrize(
    "body",
    [
        b"\x91" * 200_000 + b"\xc0",  # arrays nested 200k deep
        b"\x81\xa1k" * 100_000 + b"\xc0",  # maps nested 100k deep
        b"\xdd\xff\xff\xff\xff",  # an array claiming 4 billion items
        b"\xdf\xff\xff\xff\xff",  # a map claiming 4 billion entries
        b"\xdb\xff\xff\xff\xff",  # a string claiming 4 GB
        b"\xc6\xff\xff\xff\xff",  # binary claiming 4 GB
        b"\xc9\x00\x00\x00\x10\x01",  # an ext type
    ],
)
def test_hostile_msgpack_is_a_malformed_frame(body: bytes) -> None:
    """Deep nesting and absurd container sizes decode to ProtocolError('malformed'), never RecursionError or MemoryError."""
    with pytest.raises(ProtocolError) as error:
        decode_message(body)
    assert error.value.reason == "malformed"


record_fields = st.lists(values, min_size=13, max_size=13)
plausible_records = st.builds(
    lambda seq, time_ns, body, logger, attributes, levelno, exception: wire_record(
        seq,
        body,
        time_ns=time_ns,
        logger=logger,
        attributes=attributes,
        levelno=levelno,
        exception=exception,
    ),
    st.integers(min_value=-5, max_value=2**63),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.text(max_size=200) | values,
    st.text(max_size=80),
    st.dictionaries(st.text(max_size=20), values, max_size=10) | values,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.none() | st.lists(st.text(max_size=30), min_size=3, max_size=3) | values,
)


@PROPERTY
@given(st.lists(plausible_records | record_fields | values, max_size=6))
def test_any_decoded_records_validate_build_replay_and_encode_without_raising(raw: list[Any]) -> None:
    """Whatever a runner puts in 'records', the host validates, clamps, replays and encodes it (protobuf and JSON) without raising."""
    raw = msgpack.unpackb(msgpack.packb(raw, use_bin_type=True), raw=False, strict_map_key=False)
    valid, reasons = validate_records(raw)
    assert len(valid) + len(reasons) == len(raw)
    limits = Limits(65536, 4096, 128)
    replayer = Replayer("plugin", "fuzz")
    resource = ResourceInfo({"service.name": "fuzz", "plugin.name": "fuzz"})
    entries = []
    for record in valid:
        entry, levelno, stacktrace = build_entry(record, limits)
        assert 0 <= levelno <= 1000 and entry.time > 0 and entry.observed_time > 0
        assert len(entry.attributes) <= 128 + 4
        made = replayer.make_record(replayer.base_name, entry, levelno, stacktrace, _OTEL)
        assert "\n" not in made.getMessage() and "\x1b" not in made.getMessage()
        entries.append(entry)
    encode_request([(resource, e) for e in entries])
    encode_json_line([(resource, e) for e in entries]).encode("utf-8")


_OTEL = {"plugin": "fuzz", "plugin_version": None, "runner_pid": 1, "resource": {}}


@PROPERTY
@given(st.lists(plausible_records | record_fields | values, max_size=6))
def test_the_strict_record_check_agrees_with_pydantic(raw: list[Any]) -> None:
    """The hand-written per-record check gives exactly pydantic's records and reasons, for any decoded input."""
    raw = msgpack.unpackb(msgpack.packb(raw, use_bin_type=True), raw=False, strict_map_key=False)
    assert validate_records(raw) == validated_records(raw)


@PROPERTY
@given(st.lists(plausible_records, min_size=1, max_size=6))
def test_the_memory_build_entry_counts_is_the_measured_memory(raw: list[Any]) -> None:
    """The memory build_entry sums as it cleans (and the uid the host adds) equals a full walk of the entry."""
    raw = msgpack.unpackb(msgpack.packb(raw, use_bin_type=True), raw=False, strict_map_key=False)
    for record in validate_records(raw)[0]:
        entry = build_entry(record, Limits(65536, 4096, 8))[0]
        measured = measured_memory_bytes(entry.body, entry.attributes)
        assert entry.size_estimate() == measured
        entry.uid = f"{'ab' * 8}{entry.seq:016x}"
        assert entry.size_estimate() == measured + sys.getsizeof(entry.uid)


def test_four_gigabyte_length_prefix_is_refused_before_allocating_and_counted(
    tmp_path: Path, host_env: Path, record_property: Any
) -> None:
    """A 0xFFFFFFFF length prefix over the real socket: refused at once, connection closed, counted; nothing allocated; other plugins unaffected."""
    sink = MemorySink()
    calm = write_plugin(
        tmp_path,
        "calm",
        """
        import logging, time
        log = logging.getLogger("calm"); log.setLevel(logging.INFO)
        for i in range(300):
            log.info("calm %d", i)
            time.sleep(0.002)
        """,
    )
    with HostLogBridge(sink=sink) as bridge:
        other = bridge.spawn_plugin("calm", [PYTHON, str(calm)])
        env = bridge.register_runner("greedy")
        gc.collect()
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            anonymous = RawRunner(bridge.socket_path)
            anonymous.send_raw(b"\xff\xff\xff\xff")
            assert anonymous.wait_closed(10), "an unauthenticated 4 GB prefix must close the connection"
            authenticated = RawRunner(bridge.socket_path)
            assert authenticated.hello(env["OTEL_PLUGIN_LOGS_TOKEN"])["t"] == "welcome"
            authenticated.send_raw(b"\xff\xff\xff\xff" + b"\x00" * 1024)
            assert authenticated.wait_closed(10), "an authenticated 4 GB prefix must close the connection"
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak - before < 2 * 1024 * 1024, f"{peak - before} bytes allocated for a refused frame"
        record_property("peak_bytes_allocated", peak - before)
        assert other.wait(60) == 0 and bridge.wait_for_plugin("calm", 10)
        assert bridge.force_flush(10_000)
        stats = bridge.stats()
    assert stats.rejected_connections.get("frame_too_large") == 1
    assert stats.plugins["greedy"].bad_input.get("frame_too_large") == 1
    calm_stats = stats.plugins["calm"]
    assert calm_stats.exported == 300 and calm_stats.dropped == {} and settled(calm_stats), describe(
        calm_stats
    )
