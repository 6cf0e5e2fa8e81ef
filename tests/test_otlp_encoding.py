"""The fast protobuf path produces the same OTLP records as the SDK's own encoder."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otel_plugin_logs.export.otlp import (
    Entry,
    ResourceInfo,
    encode_json_line,
    encode_request,
    json_line_to_request,
)
from otel_plugin_logs.export.sdk_records import SdkRecordBuilder

RESOURCE_A = ResourceInfo(
    {"service.name": "weather", "plugin.name": "weather", "process.pid": 41, "service.namespace": "bot"}
)
RESOURCE_B = ResourceInfo({"service.name": "news", "plugin.name": "news", "process.pid": 42})


def _entry(seq: int, **overrides: object) -> Entry:
    fields: dict[str, object] = {
        "seq": seq,
        "time": 1_700_000_000_000_000_000 + seq,
        "observed_time": 1_700_000_000_100_000_000 + seq,
        "severity_number": 9,
        "severity_text": "INFO",
        "body": f"hello {seq}",
        "scope": "weather.api",
        "attributes": {"code.line.number": 12, "code.file.path": "/app/w.py", "ok": True, "ratio": 0.25},
        "trace_id": bytes(range(1, 17)),
        "span_id": bytes(range(1, 9)),
        "flags": 1,
    }
    fields.update(overrides)
    return Entry(**fields)  # type: ignore[arg-type]


def _decoded_fast(items: list[tuple[ResourceInfo, Entry]]) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest.FromString(encode_request(items))


def _decoded_sdk(items: list[tuple[ResourceInfo, Entry]]) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest.FromString(
        encode_logs(SdkRecordBuilder().build(items)).SerializeToString()
    )


def test_fast_path_equals_sdk_encoder_for_a_mixed_batch() -> None:
    """Resources, scopes, bodies, typed attributes, ids, flags and times decode identically."""
    items = [
        (RESOURCE_A, _entry(1)),
        (
            RESOURCE_A,
            _entry(
                2,
                scope="weather.db",
                severity_number=17,
                severity_text="ERROR",
                attributes={
                    "exception.type": "builtins.ValueError",
                    "tags": ["a", 1, 2.5, False],
                    "nested": {"k": {"deep": [b"\x00"]}},
                    "blob": b"\xff\xfe",
                    "none": None,
                    "big": 2**62,
                    "neg": -5,
                    "empty": "",
                },
            ),
        ),
        (RESOURCE_B, _entry(3, trace_id=None, span_id=None, flags=0, body="")),
        (RESOURCE_A, _entry(4, attributes={}, body="ünïcödé ☃ 🚀")),
    ]
    assert _decoded_fast(items) == _decoded_sdk(items)


def test_fast_path_keeps_the_dropped_attributes_count() -> None:
    """Attributes cut by the count limit are reported in dropped_attributes_count."""
    (record,) = (
        _decoded_fast([(RESOURCE_A, _entry(1, dropped_attributes=3))])
        .resource_logs[0]
        .scope_logs[0]
        .log_records
    )
    assert record.dropped_attributes_count == 3


_scalars = st.one_of(
    st.text(max_size=20),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.binary(max_size=8),
    st.none(),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(min_size=1, max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None)
@given(
    body=st.text(max_size=50),
    attributes=st.dictionaries(st.text(min_size=1, max_size=12), _values, max_size=6),
    severity=st.integers(min_value=0, max_value=24),
    scope=st.text(max_size=10),
    traced=st.booleans(),
)
def test_fast_path_equals_sdk_encoder_for_any_record(
    body: str, attributes: dict, severity: int, scope: str, traced: bool
) -> None:
    """For arbitrary bodies, attribute values (nested, bytes, ints, floats) and scopes the two paths agree."""
    entry = _entry(
        7,
        body=body,
        attributes=attributes,
        severity_number=severity,
        scope=scope,
        trace_id=bytes(range(16)) if traced else None,
        span_id=bytes(range(1, 9)) if traced else None,
        flags=1 if traced else 0,
    )
    assert _decoded_fast([(RESOURCE_A, entry)]) == _decoded_sdk([(RESOURCE_A, entry)])


@settings(max_examples=100, deadline=None)
@given(
    body=st.text(max_size=50),
    attributes=st.dictionaries(st.text(min_size=1, max_size=12), _values, max_size=6),
)
def test_json_line_decodes_to_the_same_request_as_the_protobuf_path(body: str, attributes: dict) -> None:
    """An OTLP/JSON line of the file sink parses, with the OTLP JSON mapping, into the protobuf request."""
    items = [
        (RESOURCE_A, _entry(5, body=body, attributes=attributes)),
        (RESOURCE_B, _entry(6, trace_id=None, span_id=None, flags=0)),
    ]
    from_json = json_line_to_request(encode_json_line(items))
    assert from_json == _decoded_fast(items)


def test_non_finite_doubles_survive_both_encodings() -> None:
    """NaN and infinities are valid OTLP doubles in protobuf and in OTLP/JSON."""
    items = [(RESOURCE_A, _entry(1, attributes={"inf": math.inf, "ninf": -math.inf}))]
    assert json_line_to_request(encode_json_line(items)) == _decoded_fast(items)


def _only_record(request: ExportLogsServiceRequest) -> object:
    (record,) = request.resource_logs[0].scope_logs[0].log_records
    return record


def test_event_name_attribute_is_lifted_into_the_event_name_field_by_all_three_paths() -> None:
    """extra={"event.name": ...} becomes LogRecord.event_name (field 12, eventName), not an attribute."""
    items = [(RESOURCE_A, _entry(1, attributes={"event.name": "checkout.done", "order": 7}))]
    fast = _decoded_fast(items)
    record = _only_record(fast)
    assert record.event_name == "checkout.done"  # type: ignore[attr-defined]
    assert [kv.key for kv in record.attributes] == ["order"]  # type: ignore[attr-defined]
    assert fast == _decoded_sdk(items) == json_line_to_request(encode_json_line(items))
    assert '"eventName":"checkout.done"' in encode_json_line(items)


def test_a_non_string_event_name_attribute_stays_an_attribute() -> None:
    """Only a string names an event; event.name=3 is left as the attribute it is."""
    items = [(RESOURCE_A, _entry(1, attributes={"event.name": 3}))]
    record = _only_record(_decoded_fast(items))
    assert record.event_name == ""  # type: ignore[attr-defined]
    assert _decoded_fast(items) == _decoded_sdk(items)


def test_bridge_event_name_and_record_uid_agree_across_the_three_paths() -> None:
    """An Entry's own event_name and uid (set by the host) encode the same in protobuf, JSON and the SDK."""
    entry = _entry(9, event_name="otel_plugin_logs.bridge.dropped")
    entry.uid = "0123456789abcdef0000000000000009"
    items = [(RESOURCE_A, entry)]
    record = _only_record(_decoded_fast(items))
    assert record.event_name == "otel_plugin_logs.bridge.dropped"  # type: ignore[attr-defined]
    uid = {kv.key: kv.value.string_value for kv in record.attributes}["log.record.uid"]  # type: ignore[attr-defined]
    assert uid == "0123456789abcdef0000000000000009"
    assert _decoded_fast(items) == _decoded_sdk(items) == json_line_to_request(encode_json_line(items))
