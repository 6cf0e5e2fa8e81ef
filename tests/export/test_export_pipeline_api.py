"""The export stage's public extension types, and the queue's life from running to stopped."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import otel_plugin_logs
from otel_plugin_logs.config.fields import resolve
from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.export.items import Item
from otel_plugin_logs.export.otlp import Entry, ResourceInfo
from otel_plugin_logs.export.pipeline import DROP_EXPORT_REJECTED, DROP_SHUTDOWN, ExportPipeline, WorkerState
from otel_plugin_logs.export.sinks import ExportStatus, Outcome
from otel_plugin_logs.testing import InMemoryTransport, MemorySink

RESOURCE = ResourceInfo({"service.name": "weather", "plugin.name": "weather"})


def _entry(seq: int) -> Entry:
    now = time.time_ns()
    return Entry(seq, now, now, 9, "INFO", f"record {seq}", "weather.app", {"n": seq}, None, None, 0)


def _config(**overrides: int) -> HostConfig:
    config, _ = resolve(HostConfig, {"export_schedule_delay_millis": 20, **overrides})
    return config


class _Settled:
    """The settle callback: every record with its reason (None: exported)."""

    def __init__(self) -> None:
        self.reasons: list[str | None] = []
        self.changed = threading.Condition()

    def __call__(self, items: Sequence[Item], reason: str | None) -> None:
        with self.changed:
            self.reasons.extend(reason for _ in items)
            self.changed.notify_all()

    def wait_for(self, count: int, timeout_seconds: float = 10.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(self.reasons) >= count, timeout_seconds)


class _Refusing:
    """A sink whose every export is refused for good."""

    description = "refusing"

    def __init__(self) -> None:
        self.attempts = 0

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome:
        self.attempts += 1
        return Outcome.rejected("HTTP 400: bad request")

    def shutdown(self) -> None:
        return None


def test_the_extension_types_are_public_where_a_bridge_user_looks() -> None:
    """Sink, Outcome, ExportStatus and Item come from the package; the doubles from otel_plugin_logs.testing."""
    assert otel_plugin_logs.Item is Item
    assert otel_plugin_logs.Outcome is Outcome
    assert otel_plugin_logs.ExportStatus is ExportStatus
    assert {"Sink", "Outcome", "ExportStatus", "Item"} <= set(otel_plugin_logs.__all__)
    assert InMemoryTransport is otel_plugin_logs.InMemoryTransport


def test_outcome_constructors_name_their_status() -> None:
    """delivered/errored/rejected: only a delivered batch is ok, only an errored one is retried."""
    assert Outcome.delivered(2) == Outcome(ExportStatus.DELIVERED, rejected_records=2)
    assert Outcome.delivered().ok and not Outcome.delivered().retryable
    assert Outcome.errored("down").retryable and not Outcome.errored("down").ok
    rejected = Outcome.rejected("bad")
    assert not rejected.ok and not rejected.retryable and rejected.error == "bad"


def test_item_of_sizes_the_item_by_its_record() -> None:
    """Item.of takes the record's own size estimate and knows its plugin from the resource."""
    entry = _entry(1)
    item = Item.of(RESOURCE, entry, ticket="t")
    assert item.size_bytes == entry.size_estimate() > 0
    assert item.plugin_name == "weather" and item.ticket == "t"


def test_memory_sink_keeps_what_the_queue_exports() -> None:
    """Records offered to the queue reach a MemorySink, each settled as exported."""
    sink, settled = MemorySink(), _Settled()
    pipeline = ExportPipeline(sink, _config(), settled)
    try:
        assert pipeline.offer([Item.of(RESOURCE, _entry(seq)) for seq in (1, 2, 3)]) == []
        assert settled.wait_for(3)
    finally:
        pipeline.shutdown(time.monotonic() + 2.0)
    assert [entry.seq for entry in sink.entries("weather")] == [1, 2, 3]
    assert settled.reasons == [None, None, None]


def test_a_rejected_batch_is_dropped_without_a_retry() -> None:
    """A sink's REJECTED outcome drops the batch at once as export_rejected."""
    sink, settled = _Refusing(), _Settled()
    pipeline = ExportPipeline(sink, _config(), settled)
    try:
        pipeline.offer([Item.of(RESOURCE, _entry(1)), Item.of(RESOURCE, _entry(2))])
        assert settled.wait_for(2)
        time.sleep(0.2)  # a retry would come within this
    finally:
        pipeline.shutdown(time.monotonic() + 2.0)
    assert settled.reasons == [DROP_EXPORT_REJECTED, DROP_EXPORT_REJECTED]
    assert sink.attempts == 1


def test_shutdown_keeps_its_first_deadline_and_stops_once() -> None:
    """Records waiting on a failing sink are counted at the deadline; a second shutdown is a no-op."""
    sink, settled = MemorySink(), _Settled()
    sink.fail = True
    pipeline = ExportPipeline(sink, _config(), settled)
    pipeline.offer([Item.of(RESOURCE, _entry(seq)) for seq in (1, 2)])
    started = time.monotonic()
    left = pipeline.shutdown(started + 0.3)
    took = time.monotonic() - started
    assert left == 2 and settled.reasons == [DROP_SHUTDOWN, DROP_SHUTDOWN]
    assert took < 2.0
    assert pipeline.state is WorkerState.STOPPED
    assert pipeline.shutdown(time.monotonic() + 10.0) == 0
    assert pipeline.offer([Item.of(RESOURCE, _entry(3))]) != []  # a stopped queue takes nothing
