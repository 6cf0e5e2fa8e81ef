"""Collector faults with a real rotel collector (issue #6, cases 3, 4 and 15)."""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import PYTHON, CaptureHandler, Collector, parse_rotel_logs, write_plugin
from reliability_support import STEADY_RUNNER, describe, settled, wait_for, wire_record

from otel_plugin_logs import HostLogBridge
from otel_plugin_logs.config.fields import resolve
from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.conventions import BRIDGE_SCOPE_NAME
from otel_plugin_logs.export.items import Item
from otel_plugin_logs.export.otlp import ResourceInfo
from otel_plugin_logs.export.pipeline import ExportPipeline
from otel_plugin_logs.export.sinks import Outcome
from otel_plugin_logs.host.entries import Limits, build_entry
from otel_plugin_logs.wire.validate import validate_records

pytestmark = pytest.mark.collector

RATE = 1000


def _collector_numbers(collectors: list[Collector], prefix: str) -> Counter[int]:
    numbers: Counter[int] = Counter()
    for collector in collectors:
        for record in parse_rotel_logs(collector.output()):
            body = record.get("body")
            if isinstance(body, str) and body.startswith(prefix + " "):
                numbers[int(body.split()[1])] += 1
    return numbers


def _outage(tmp_path: Path, outage_seconds: float, total_seconds: float) -> dict[str, Any]:
    """A runner logs at RATE records/s; the collector is stopped for ``outage_seconds`` in the middle."""
    count = int(RATE * total_seconds)
    script = write_plugin(tmp_path, "steady", STEADY_RUNNER)
    out = tmp_path / "steady.json"
    first = Collector(tmp_path / "rotel-1").start()
    collectors = [first]
    try:
        with HostLogBridge(
            otlp_endpoint=first.grpc_endpoint,
            export_timeout_millis=2000,
            export_retry_max_backoff_millis=500,
            report_interval_millis=1000,
        ) as bridge:
            env = dict(os.environ, RUNNER_ACK_WAIT_MILLIS=str(int((outage_seconds + 60) * 1000)))
            process = bridge.spawn_plugin(
                "steady", [PYTHON, str(script), str(out), "outage", str(RATE), str(count)], env=env
            )
            assert wait_for(lambda: bridge.stats().plugins["steady"].exported >= RATE, 60)
            first.stop()
            down_at = time.monotonic()
            assert wait_for(lambda: bridge.stats().export_failing, 30)
            time.sleep(max(0.0, outage_seconds - (time.monotonic() - down_at)))
            second = Collector(
                tmp_path / "rotel-2", grpc_port=first.grpc_port, http_port=first.http_port
            ).start()
            collectors.append(second)
            assert process.wait(total_seconds + outage_seconds + 120) == 0
            assert bridge.wait_for_plugin("steady", 30)
            assert wait_for(lambda: settled(bridge.stats().plugins["steady"]), 60)
            assert bridge.force_flush(20_000)
            stats = bridge.stats().plugins["steady"]
        second.stop()
        numbers = _collector_numbers(collectors, "outage")
    finally:
        for collector in collectors:
            collector.stop()
    return {"count": count, "stats": stats, "numbers": numbers, "runner": json.loads(out.read_text())}


def _check_outage(result: dict[str, Any], record_property: Any) -> None:
    count, stats, numbers, runner = result["count"], result["stats"], result["numbers"], result["runner"]
    record_property("outage", describe(stats))
    record_property("collector_unique_and_rows", (len(numbers), sum(numbers.values())))
    assert runner["accepted"] == count and runner["dropped"] == {} and runner["acked"], runner
    assert stats.emitted == stats.exported == count and stats.dropped == {}, describe(stats)
    missing = set(range(count)) - set(numbers)
    assert not missing, f"{len(missing)} records never reached the collector"
    assert sum(numbers.values()) - len(numbers) <= count  # at-least-once: a retried request may repeat


def test_collector_down_for_seconds_at_1000_records_per_second_loses_nothing(
    tmp_path: Path, host_env: Path, record_property: Any
) -> None:
    """Collector stopped for 6 s while a runner logs 1,000 records/s: every record reaches the restarted collector, none dropped."""
    _check_outage(_outage(tmp_path, outage_seconds=6, total_seconds=10), record_property)


@pytest.mark.soak
@pytest.mark.timeout(600)
def test_collector_down_for_30_seconds_at_1000_records_per_second_loses_nothing(
    tmp_path: Path, host_env: Path, record_property: Any
) -> None:
    """The full case: 30 s outage at 1,000 records/s, 0 lost."""
    _check_outage(_outage(tmp_path, outage_seconds=30, total_seconds=45), record_property)


BURST = """
import json, logging, sys
from otel_plugin_logs import runner
handler = runner.installed_handler()
log = logging.getLogger("burst")
log.setLevel(logging.INFO)
for i in range(int(sys.argv[2])):
    log.info("burst %d", i)
complete = handler.shutdown()
with open(sys.argv[1], "w") as out:
    json.dump({"complete": complete, **handler.stats()}, out)
"""


def test_collector_permanently_down_during_a_100k_burst_stays_bounded_and_counts_exactly(
    tmp_path: Path, host_env: Path, record_property: Any
) -> None:
    """100k records while the collector is gone for good: the export queue stays within its record and byte bounds, every record is counted."""
    max_records, max_bytes = 10_000, 4 * 1024 * 1024
    script = write_plugin(tmp_path, "burst", BURST)
    out = tmp_path / "burst.json"
    collector = Collector(tmp_path / "rotel").start()
    endpoint = collector.grpc_endpoint
    collector.stop()  # the port is closed from now on
    peaks = {"records": 0, "bytes": 0, "rss": 0}
    me = psutil.Process()
    baseline_rss = me.memory_info().rss
    stop = threading.Event()
    with HostLogBridge(
        otlp_endpoint=endpoint,
        export_max_queue_records=max_records,
        export_max_queue_bytes=max_bytes,
        export_timeout_millis=500,
        export_retry_max_backoff_millis=200,
    ) as bridge:

        def sample() -> None:
            while not stop.is_set():
                snapshot = bridge.stats()
                peaks["records"] = max(peaks["records"], snapshot.queue_records)
                peaks["bytes"] = max(peaks["bytes"], snapshot.queue_bytes)
                peaks["rss"] = max(peaks["rss"], me.memory_info().rss - baseline_rss)
                time.sleep(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        process = bridge.spawn_plugin("burst", [PYTHON, str(script), str(out), "100000"])
        assert process.wait(180) == 0
        assert bridge.wait_for_plugin("burst", 60)
        assert wait_for(
            lambda: (
                bridge.stats().plugins["burst"].received
                + bridge.stats().plugins["burst"].dropped.get("runner_queue_full", 0)
                == 100_000
            ),
            60,
        )
        live = bridge.stats()
        stop.set()
        sampler.join()
        bridge.shutdown(1000)
    final = bridge.stats().plugins["burst"]
    runner = json.loads(out.read_text())
    record_property("peaks", peaks)
    record_property("burst", describe(final))
    assert live.export_failing and live.queue_records <= max_records
    assert peaks["records"] <= max_records and peaks["bytes"] <= max_bytes, peaks
    assert peaks["rss"] < 512 * 1024 * 1024, peaks  # sanity: nowhere near 100k records held
    assert final.emitted == runner["accepted"] == 100_000
    assert final.exported == 0 and settled(final), describe(final)
    assert final.dropped_total == 100_000
    assert final.dropped.get("runner_queue_full", 0) == runner["dropped"].get("queue_full", 0)
    host_side = {k: v for k, v in final.dropped.items() if not k.startswith("runner_")}
    assert sum(host_side.values()) == final.received
    assert set(host_side) <= {"export_queue_full", "shutdown_unexported", "export_failed"}
    assert host_side.get("export_queue_full", 0) >= final.received - max_records


def test_export_queue_byte_bound_holds_for_real_memory() -> None:
    """Records with long attribute values: the memory the export queue really holds stays within its byte bound."""
    bound = 1024 * 1024
    config, _ = resolve(HostConfig, {"export_max_queue_bytes": bound, "export_max_queue_records": 1_000_000})

    class Down:
        description = "down"

        def export(self, items: Any, timeout_seconds: float) -> Outcome:
            return Outcome.errored("down")

        def shutdown(self) -> None:
            return None

    resource = ResourceInfo({"service.name": "heavy"})
    gc.collect()
    tracemalloc.start()
    pipeline = ExportPipeline(Down(), config, lambda items, reason: None)
    try:
        before, _ = tracemalloc.get_traced_memory()
        for start in range(0, 4000, 200):
            raw = [
                wire_record(
                    seq,
                    f"request {seq}",
                    attributes={f"field{k}": f"{seq:06d}-{k}-" + "v" * 2000 for k in range(16)},
                )
                for seq in range(start + 1, start + 201)
            ]
            valid, _ = validate_records(raw)
            entries = [build_entry(record, Limits(65536, 4096, 128))[0] for record in valid]
            pipeline.offer([Item.of(resource, entry) for entry in entries])
            del raw, valid, entries
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        depth = pipeline.depth()
    finally:
        tracemalloc.stop()
        pipeline.shutdown(time.monotonic())
    assert depth[1] <= bound
    assert held <= bound * 1.25, f"{held / bound:.1f}x the configured bound ({depth[0]} records queued)"


def test_exporter_warnings_during_an_outage_never_recurse_into_the_pipeline(
    tmp_path: Path, host_env: Path
) -> None:
    """With rotel stopped, the SDK exporter's and the bridge's own warnings stay host logs: none is replayed, exported or counted as a plugin record."""
    everything = CaptureHandler()
    root = logging.getLogger()
    root.addHandler(everything)
    root.setLevel(logging.DEBUG)
    script = write_plugin(tmp_path, "steady", STEADY_RUNNER)
    out = tmp_path / "steady.json"
    first = Collector(tmp_path / "rotel-1").start()
    collectors = [first]
    interval = 0.5
    try:
        with HostLogBridge(
            otlp_endpoint=first.grpc_endpoint,
            export_timeout_millis=1000,
            export_retry_max_backoff_millis=200,
            report_interval_millis=int(interval * 1000),
        ) as bridge:
            first.stop()
            down_at = time.monotonic()
            process = bridge.spawn_plugin("steady", [PYTHON, str(script), str(out), "quiet", "500", "1000"])
            assert wait_for(lambda: any(r.name.startswith("opentelemetry") for r in everything.records), 30)
            assert wait_for(lambda: bridge.stats().plugins["steady"].received >= 1000, 60)
            time.sleep(1.0)
            up_at = time.monotonic()
            second = Collector(
                tmp_path / "rotel-2", grpc_port=first.grpc_port, http_port=first.http_port
            ).start()
            collectors.append(second)
            assert process.wait(60) == 0
            assert bridge.wait_for_plugin("steady", 20)
            assert wait_for(lambda: settled(bridge.stats().plugins["steady"]), 60)
            stats = bridge.stats().plugins["steady"]
        second.stop()
        received = [r for c in collectors for r in parse_rotel_logs(c.output())]
    finally:
        for collector in collectors:
            collector.stop()
        root.removeHandler(everything)
    own = [r for r in everything.records if r.name.startswith(("opentelemetry", "otel_plugin_logs", "grpc"))]
    assert any(r.name.startswith("opentelemetry") and r.levelno >= logging.WARNING for r in own)
    assert all(getattr(r, "otel", None) is None for r in own)
    assert stats.emitted == stats.exported == 1000 and stats.dropped == {}, describe(stats)
    scopes = Counter(r["scope"] for r in received)
    assert set(scopes) <= {"steady", BRIDGE_SCOPE_NAME}, scopes
    bodies = [str(r.get("body")) for r in received]
    assert not [b for b in bodies if "Transient error" in b or "export to" in b or "retrying" in b]
    assert len([b for b in bodies if b.startswith("quiet ")]) >= 1000
    failing = [r for r in own if r.name == "otel_plugin_logs.bridge" and "failing for" in r.getMessage()]
    assert failing and len(failing) <= (up_at - down_at) / interval + 2
