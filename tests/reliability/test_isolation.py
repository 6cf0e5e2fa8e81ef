"""One plugin cannot stall or poison the export of the others (issue 13, item 2)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from helpers import PYTHON, MemorySink, write_plugin
from reliability_support import BYSTANDER, RawRunner, describe, drained, settled, wait_for, wire_record

from otel_plugin_logs import HostLogBridge, PluginProcess
from otel_plugin_logs.export.items import Item
from otel_plugin_logs.export.otlp import encode_request
from otel_plugin_logs.export.sinks import Outcome
from otel_plugin_logs.wire.records import BODY_ORIGINAL_BYTES, INT64_MAX, TRUNCATION_MARKER

MIB = 1024 * 1024
CJK = "日本語のログメッセージ"  # 3 bytes per character in UTF-8, 2 in memory


class CollectorLikeSink(MemorySink):
    """Encodes each request as OTLP protobuf and refuses it above ``max_request_bytes``, as a collector does."""

    def __init__(self, max_request_bytes: int = 4 * MIB) -> None:
        super().__init__()
        self.max_request_bytes = max_request_bytes
        self.sizes: list[int] = []
        self.refused = 0
        self.gate = threading.Event()
        self.gate.set()

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome:
        self.gate.wait(30)
        request = encode_request([(item.resource, item.entry) for item in items])
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

        ExportLogsServiceRequest.FromString(request)  # what a collector would choke on raises here
        if len(request) > self.max_request_bytes:
            with self._lock:
                self.refused += 1
            return Outcome.errored(
                f"OUT_OF_RANGE: message larger than max ({len(request)} vs. {self.max_request_bytes})"
            )
        with self._lock:
            self.sizes.append(len(request))
        return super().export(items, timeout_seconds)


Factory = Callable[..., tuple[HostLogBridge, CollectorLikeSink]]


@pytest.fixture
def make_bridge(host_env: Path) -> Iterator[Factory]:
    """A started bridge with a collector-like sink; shut down afterwards."""
    bridges: list[HostLogBridge] = []

    def make(max_request_bytes: int = 4 * MIB, **settings: Any) -> tuple[HostLogBridge, CollectorLikeSink]:
        sink = CollectorLikeSink(max_request_bytes)
        bridge = HostLogBridge(sink=sink, **settings)
        bridge.start()
        bridges.append(bridge)
        return bridge, sink

    try:
        yield make
    finally:
        for bridge in bridges:
            bridge.shutdown(5000)


def _bystander(bridge: HostLogBridge, tmp_path: Path) -> PluginProcess:
    return bridge.spawn_plugin("bystander", [PYTHON, str(write_plugin(tmp_path, "bystander", BYSTANDER))])


def _bystander_intact(bridge: HostLogBridge, process: PluginProcess) -> None:
    assert process.wait(60) == 0
    assert wait_for(lambda: drained(bridge, "bystander"), 30)
    stats = bridge.stats().plugins["bystander"]
    assert stats.exported == 200 and stats.dropped == {} and settled(stats), describe(stats)


def test_requests_are_cut_by_encoded_size_not_by_memory(make_bridge: Factory, tmp_path: Path) -> None:
    """100 long CJK messages (each within the body limit): every request stays within the batch bytes, none is refused, all exported."""
    bridge, sink = make_bridge()
    runner = RawRunner(bridge.socket_path)
    assert runner.hello(bridge.register_runner("cjk")["OTEL_PLUGIN_LOGS_TOKEN"])["t"] == "welcome"
    body = (CJK * 2000)[:21_000]  # 63 KB of UTF-8
    for start in range(0, 100, 10):
        runner.batch([wire_record(seq, body) for seq in range(start + 1, start + 11)])
    runner.bye(accepted=100)
    runner.close()
    assert wait_for(lambda: drained(bridge, "cjk"), 30)
    stats = bridge.stats().plugins["cjk"]
    assert stats.exported == 100 and settled(stats), describe(stats)
    assert sink.refused == 0 and max(sink.sizes) <= 3 * MIB, (sink.refused, max(sink.sizes))


def test_a_request_refused_as_too_large_is_split_and_retried_never_forever(
    make_bridge: Factory, tmp_path: Path
) -> None:
    """A collector that refuses requests above 200 KiB: requests are halved until they pass; everything is exported, the refusals are few."""
    bridge, sink = make_bridge(200 * 1024)
    bystander = _bystander(bridge, tmp_path)
    runner = RawRunner(bridge.socket_path)
    assert runner.hello(bridge.register_runner("wordy")["OTEL_PLUGIN_LOGS_TOKEN"])["t"] == "welcome"
    runner.batch([wire_record(seq, "w" * 60_000) for seq in range(1, 41)])
    runner.bye(accepted=40)
    runner.close()
    assert wait_for(lambda: drained(bridge, "wordy"), 30)
    stats = bridge.stats().plugins["wordy"]
    assert stats.exported == 40 and settled(stats), describe(stats)
    assert 0 < sink.refused <= 8, sink.refused  # the limit is learnt: later requests are cut to it
    _bystander_intact(bridge, bystander)


def test_a_record_too_large_for_any_request_is_cut_with_a_marker_then_dropped_if_still_refused(
    make_bridge: Factory,
) -> None:
    """A record over the request limit is truncated with a marker and its original size; a collector refusing even that costs one counted drop, not a retry loop."""
    bridge, sink = make_bridge(4 * MIB, export_max_batch_bytes=64 * 1024)
    runner = RawRunner(bridge.socket_path)
    assert runner.hello(bridge.register_runner("huge")["OTEL_PLUGIN_LOGS_TOKEN"])["t"] == "welcome"
    attributes = {f"a{i}": "v" * 4000 for i in range(60)}
    runner.batch([wire_record(1, "b" * 60_000, attributes=attributes)])
    assert wait_for(lambda: bridge.stats().plugins["huge"].exported == 1, 30)
    entry = sink.entries("huge")[0]
    assert max(sink.sizes) <= 64 * 1024
    assert entry.body.endswith(TRUNCATION_MARKER) or entry.dropped_attributes > 0
    assert entry.attributes.get(BODY_ORIGINAL_BYTES, 60_000) == 60_000

    sink.max_request_bytes = 100  # now nothing fits
    runner.batch([wire_record(2, "c" * 60_000)])
    runner.bye(accepted=2)
    runner.close()
    assert wait_for(lambda: drained(bridge, "huge"), 30)
    stats = bridge.stats().plugins["huge"]
    assert stats.exported == 1 and stats.dropped == {"export_rejected": 1}, describe(stats)
    assert sink.refused <= 4


def test_absurd_runner_drop_counters_are_clamped_before_notices_and_export(
    make_bridge: Factory, tmp_path: Path
) -> None:
    """A runner claiming 2^64-1 dropped records: the counter is clamped to what it could have dropped, every notice is a valid OTLP int64, nobody else's records are lost."""
    bridge, sink = make_bridge(report_interval_millis=100)
    bystander = _bystander(bridge, tmp_path)
    runner = RawRunner(bridge.socket_path)
    assert runner.hello(bridge.register_runner("liar")["OTEL_PLUGIN_LOGS_TOKEN"])["t"] == "welcome"
    runner.batch([wire_record(1, "one")], accepted=10, dropped={"queue_full": 2**64 - 1, "other": 2**63})
    runner.bye(accepted=10, dropped={"queue_full": 2**64 - 1, "other": 2**63})
    runner.close()
    assert wait_for(lambda: drained(bridge, "liar"), 30)
    stats = bridge.stats().plugins["liar"]
    assert stats.emitted == 10 and stats.exported == 1 and stats.uncounted == 0, describe(stats)
    assert sum(stats.dropped.values()) == 9, stats.dropped
    _bystander_intact(bridge, bystander)
    assert wait_for(
        lambda: any(e.attributes.get("bridge.count") for e in sink.entries("liar", records_only=False))
    )
    counts = [
        e.attributes["bridge.count"]
        for e in sink.entries(records_only=False)
        if "bridge.count" in e.attributes
    ]
    assert all(0 <= count <= INT64_MAX for count in counts), counts


def test_a_plugin_pushing_huge_frames_is_limited_by_bytes_and_others_lose_nothing(
    make_bridge: Factory, tmp_path: Path
) -> None:
    """Valid 1 MiB frames far beyond the byte rate: the hog's excess is counted as rate_limited, the bystander loses 0."""
    bridge, _ = make_bridge(rate_limit_bytes_per_second=float(MIB), rate_limit_burst_bytes=MIB)
    bystander = _bystander(bridge, tmp_path)
    runner = RawRunner(bridge.socket_path)
    assert runner.hello(bridge.register_runner("hog")["OTEL_PLUGIN_LOGS_TOKEN"])["t"] == "welcome"
    seq = 0
    for _ in range(20):
        runner.batch([wire_record(seq + i + 1, "h" * 60_000) for i in range(16)])
        seq += 16
    runner.bye(accepted=seq)
    runner.close()
    assert wait_for(lambda: drained(bridge, "hog"), 30)
    stats = bridge.stats().plugins["hog"]
    assert stats.dropped.get("rate_limited", 0) >= seq // 2 and stats.uncounted == 0, describe(stats)
    _bystander_intact(bridge, bystander)


def test_one_plugin_cannot_fill_the_export_queue_for_the_others(make_bridge: Factory, tmp_path: Path) -> None:
    """The collector stalls while a plugin sends 5,000 records into a 1,000-record queue: it fills up to 75 %, the last 25 % stays for the bystander, whose 200 all fit and are exported."""
    bridge, sink = make_bridge(export_max_queue_records=1000)
    sink.gate.clear()
    runner = RawRunner(bridge.socket_path)
    assert runner.hello(bridge.register_runner("filler")["OTEL_PLUGIN_LOGS_TOKEN"])["t"] == "welcome"
    for start in range(0, 5000, 500):
        runner.batch([wire_record(seq, "f") for seq in range(start + 1, start + 501)])
    assert wait_for(lambda: bridge.stats().plugins["filler"].dropped.get("export_queue_full", 0) >= 4000)
    bystander = _bystander(bridge, tmp_path)
    assert bystander.wait(60) == 0
    assert bridge.wait_for_plugin("bystander", 20)
    assert wait_for(lambda: bridge.stats().plugins["bystander"].received == 200)
    sink.gate.set()
    _bystander_intact(bridge, bystander)
    runner.bye(accepted=5000)
    runner.close()
    assert wait_for(lambda: drained(bridge, "filler"), 30)
    stats = bridge.stats().plugins["filler"]
    assert stats.exported <= 750 and stats.uncounted == 0, describe(stats)
