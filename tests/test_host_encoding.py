"""Records encoded as the host builds them (a protobuf sink) export what the SDK would, cut by exact size."""

from __future__ import annotations

import gc
import math
import threading
import time
import tracemalloc
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from otel_plugin_logs.config.fields import resolve
from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.export.batching import encoded_bytes
from otel_plugin_logs.export.items import Item, resource_entry_pairs
from otel_plugin_logs.export.model import Entry
from otel_plugin_logs.export.otlp import ResourceInfo, encode_request
from otel_plugin_logs.export.pipeline import ExportPipeline
from otel_plugin_logs.export.sdk_records import SdkRecordBuilder
from otel_plugin_logs.export.sinks import Outcome
from otel_plugin_logs.host.entries import Limits, build_entry
from otel_plugin_logs.wire.validate import validate_records

RESOURCE = ResourceInfo({"service.name": "enc", "plugin.name": "enc", "process.pid": 7})
OTHER = ResourceInfo({"service.name": "other", "plugin.name": "other", "process.pid": 8})
PREFIX = "00112233445566778899aabbccddeeff"[:16]
LIMITS = Limits(4096, 256, 8)


def _record(seq: int, body: str = "hello", attributes: dict[str, Any] | None = None, **fields: Any) -> Any:
    now = time.time_ns()
    raw = [
        seq,
        fields.get("time_ns", now),
        now,
        9,
        "INFO",
        body,
        fields.get("logger", "app.module"),
        {} if attributes is None else attributes,
        fields.get("trace_id"),
        fields.get("span_id"),
        fields.get("flags", 0),
        fields.get("exception"),
        20,
    ]
    (record,), invalid = validate_records([raw])
    assert not invalid
    return record


_RECORDS = {
    "plain": lambda: _record(1, "request 1 handled", {"user_id": "u-1", "code.line.number": 80, "ok": True}),
    "non-ascii": lambda: _record(2, "ünïcödé ☃ 🚀", {"città": "Zürich", "emoji": "🚀"}),
    "nested": lambda: _record(3, "nested", {"tags": ["a", 1, 2.5], "map": {"k": {"deep": [True]}}}),
    "too long": lambda: _record(4, "x" * 10_000, {"long": "v" * 1000, **{f"k{n}": n for n in range(12)}}),
    "exception": lambda: _record(5, "failed", {"a": 1}, exception=["ValueError", "bad", "Traceback..."]),
    "traced": lambda: _record(
        6, "traced", {"a": 1}, trace_id=bytes(range(1, 17)), span_id=b"\x01" * 8, flags=1
    ),
    "event.name": lambda: _record(7, "event", {"event.name": "user.login", "user": "ann"}),
    "bad time": lambda: _record(8, "from the future", {"a": 0.0}, time_ns=2**63),
    "doubles": lambda: _record(9, "signed zero", {"zero": -0.0, "inf": math.inf, "half": 0.5}),
}


def _sdk(entry: Entry) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest.FromString(
        encode_logs(SdkRecordBuilder().build([(RESOURCE, entry)])).SerializeToString()
    )
    # The SDK counts only what its own limits dropped; the host's count is carried as it is.
    request.resource_logs[0].scope_logs[0].log_records[0].dropped_attributes_count = entry.dropped_attributes
    return request


@pytest.mark.parametrize("kind", sorted(_RECORDS))
def test_a_record_encoded_at_build_time_decodes_as_the_sdk_encodes_it(kind: str) -> None:
    """Built with a uid prefix, the record's own encoding is what the SDK writes for the same record and uid."""
    record = _RECORDS[kind]()
    now = time.time_ns()
    reference, _, _ = build_entry(record, LIMITS, now)
    entry, _, _ = build_entry(record, LIMITS, now, uid_prefix=PREFIX)
    reference.uid = entry.uid
    assert entry.encoded and entry.uid == f"{PREFIX}{entry.seq:016x}"
    decoded = ExportLogsServiceRequest.FromString(encode_request([(RESOURCE, entry)]))
    assert decoded == _sdk(reference)
    assert decoded == ExportLogsServiceRequest.FromString(encode_request([(RESOURCE, reference)]))


def test_a_pair_found_clean_under_one_bridges_limits_is_still_cut_under_anothers() -> None:
    """The clean-pair cache is per Limits: a value clean under long limits is truncated under short ones."""
    attributes = {"note": "n" * 100}
    wide, _, _ = build_entry(
        _record(1, attributes=dict(attributes)), Limits(4096, 4096, 8), uid_prefix=PREFIX
    )
    narrow, _, _ = build_entry(
        _record(2, attributes=dict(attributes)), Limits(4096, 10, 8), uid_prefix=PREFIX
    )
    assert wide.attributes["note"] == "n" * 100
    assert len(narrow.attributes["note"]) < 100
    (log,) = ExportLogsServiceRequest.FromString(encode_request([(RESOURCE, narrow)])).resource_logs
    (note,) = [kv for kv in log.scope_logs[0].log_records[0].attributes if kv.key == "note"]
    assert note.value.string_value == narrow.attributes["note"]


def test_a_signed_zero_after_a_plain_zero_keeps_its_sign() -> None:
    """0.0 and -0.0 are equal as cache keys but not as doubles: each is encoded as itself."""
    build_entry(_record(1, attributes={"z": 0.0}), LIMITS, uid_prefix=PREFIX)
    entry, _, _ = build_entry(_record(2, attributes={"z": -0.0}), LIMITS, uid_prefix=PREFIX)
    (log,) = ExportLogsServiceRequest.FromString(encode_request([(RESOURCE, entry)])).resource_logs
    (value,) = [kv.value.double_value for kv in log.scope_logs[0].log_records[0].attributes if kv.key == "z"]
    assert math.copysign(1.0, value) == -1.0


def test_an_encoded_record_counts_its_encoding_in_its_memory() -> None:
    """memory_bytes of an encoded record is that of the same record unencoded plus its bytes object."""
    encoded, _, _ = build_entry(_RECORDS["plain"](), LIMITS, uid_prefix=PREFIX)
    plain, _, _ = build_entry(_RECORDS["plain"](), LIMITS)
    assert encoded.memory_bytes >= plain.memory_bytes + len(encoded.encoded)


def test_encoded_records_are_counted_at_no_less_than_the_memory_they_hold() -> None:
    """Queued encoded records (tracemalloc) hold no more than their size estimates say, nor far less."""
    # Values too long for the clean-pair cache (a bounded, per-bridge cost): only the records count.
    limits = Limits(65536, 4096, 128)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        entries = [
            build_entry(
                _record(
                    seq, f"request {seq}", {f"field{k}": f"{seq:06d}-{k}-" + "v" * 600 for k in range(8)}
                ),
                limits,
                uid_prefix=PREFIX,
            )[0]
            for seq in range(1, 2001)
        ]
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    counted = sum(entry.size_estimate() for entry in entries)
    assert held <= counted <= 1.5 * held, (held, counted)


class _RequestSizes:
    """A sink that takes protobuf and keeps the size of each request it is given."""

    description = "request sizes"
    takes_protobuf = True

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.records = 0
        self.lock = threading.Lock()

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome:
        with self.lock:
            self.sizes.append(len(encode_request(resource_entry_pairs(items))))
            self.records += len(items)
        return Outcome.delivered()

    def shutdown(self) -> None:
        return None


def test_requests_are_cut_by_the_exact_encoded_size_and_stay_under_the_limit() -> None:
    """Encoded records of two resources and scopes fill each request to within one record of the limit, never over."""
    limit = 64 * 1024
    config, _ = resolve(HostConfig, {"export_max_batch_bytes": limit, "export_max_batch_records": 100_000})
    sink = _RequestSizes()
    pipeline = ExportPipeline(sink, config, lambda items, reason: None)
    assert pipeline.takes_protobuf
    items = []
    for seq in range(1, 1201):
        attributes = {"user": f"u-{seq % 7}", "pad": "p" * (seq % 300), "n": seq}
        record = _record(seq, "b" * (seq % 500), attributes, logger=f"scope.{seq % 3}")
        entry, _, _ = build_entry(record, Limits(65536, 4096, 128), uid_prefix=PREFIX)
        items.append(Item.of(RESOURCE if seq % 2 else OTHER, entry))
    huge, _, _ = build_entry(_record(5000, "h" * 200_000), Limits(1 << 20, 4096, 128), uid_prefix=PREFIX)
    items.insert(600, Item.of(RESOURCE, huge))
    largest = max(encoded_bytes(item.entry) for item in items if item.entry is not huge)
    try:
        assert pipeline.offer(items) == []
        assert pipeline.force_flush(30.0)
    finally:
        pipeline.shutdown(time.monotonic() + 5)
    assert sink.records == len(items)
    assert max(sink.sizes) <= limit
    # Cut where the next record would not fit: each request (but the last and the one before
    # the cut-down record) is within a record and a few wrappers of the limit.
    tight = [size for size in sink.sizes[:-1] if size > limit - largest - 256]
    assert len(tight) >= len(sink.sizes) - 3, sink.sizes


@pytest.mark.parametrize(
    "attributes", [{"": None, "_": None}, {"_": 1, "": 2}, {"x" * 300: "a", "x" * 256: "b"}]
)
def test_a_cleaned_key_that_meets_another_key_is_counted_once(attributes: dict[str, Any]) -> None:
    """Two keys that become one name (in either order) are counted as the one the entry holds."""
    from otel_plugin_logs.export.model import measured_memory_bytes

    (record,) = validate_records([_record(1, attributes=attributes)])[0]
    entry = build_entry(record, LIMITS)[0]
    assert not entry.encoded and len(entry.attributes) == 1
    assert entry.size_estimate() == measured_memory_bytes(entry.body, entry.attributes)


def test_a_record_that_needs_cleaning_leaves_no_pair_behind_when_nothing_is_encoded() -> None:
    """A host whose sink takes no protobuf remembers no attribute pair, even for a record with a list value."""
    limits = Limits(4096, 256, 8)
    for seq in range(1, 50):
        (record,) = validate_records([_record(seq, attributes={"n": seq, "tags": ["a", "b"]})])[0]
        build_entry(record, limits)
    assert limits.clean_pairs == {}
