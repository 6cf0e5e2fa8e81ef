"""Export through the OpenTelemetry SDK's OTLP exporters to a real collector (rotel), and the file sink."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from helpers import PYTHON, Collector, MemorySink, parse_rotel_logs, wait_until, write_plugin

from otel_plugin_logs import HostLogBridge
from otel_plugin_logs.export.otlp import exported_attributes, json_line_to_request

pytestmark = pytest.mark.collector

TRACED = """
import logging, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
trace.set_tracer_provider(TracerProvider())
tracer = trace.get_tracer("demo")
logging.basicConfig(level=logging.DEBUG)
log = logging.getLogger("weather.api")
ids = []
with tracer.start_as_current_span("fetch") as span:
    context = span.get_span_context()
    ids.append((format(context.trace_id, "032x"), format(context.span_id, "016x")))
    log.info("fetched %s", "Paris", extra={"city": "Paris", "temp": 21.5, "count": 3, "ok": True})
    try:
        raise ConnectionError("upstream down")
    except ConnectionError:
        log.exception("request failed")
log.warning("outside any span")
with open(sys.argv[1], "w") as out:
    out.write("%s %s" % ids[0])
"""


def _run_traced(
    tmp_path: Path, collector: Collector, protocol: str, host_env: Path
) -> tuple[list[dict], str, str, int]:
    script = write_plugin(tmp_path, "traced", TRACED)
    ids_file = tmp_path / "ids"
    endpoint = collector.grpc_endpoint if protocol == "grpc" else collector.http_endpoint
    with HostLogBridge(otlp_endpoint=endpoint, otlp_protocol=protocol, service_name="mybot") as bridge:
        process = bridge.spawn_plugin("weather", [PYTHON, str(script), str(ids_file)], version="1.2.3")
        assert process.wait(60) == 0
        assert bridge.wait_for_plugin("weather", 10)
        assert bridge.force_flush(20_000)
        stats = bridge.stats().plugins["weather"]
    assert stats.exported == 3 and stats.dropped_total == 0
    trace_id, span_id = ids_file.read_text().split()
    assert wait_until(
        lambda: len([r for r in parse_rotel_logs(collector.output()) if r["scope"] == "weather.api"]) >= 3, 10
    )
    records = [r for r in parse_rotel_logs(collector.output()) if r["scope"] == "weather.api"]
    return records, trace_id, span_id, process.pid


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf", "http/json"])
def test_records_reach_a_real_collector_with_every_field(
    tmp_path: Path, host_env: Path, protocol: str
) -> None:
    """Body, severity, timestamps, resource, typed attributes, exception and trace ids arrive record by record."""
    with Collector(tmp_path / "rotel") as collector:
        before = time.time_ns()
        records, trace_id, span_id, pid = _run_traced(tmp_path, collector, protocol, host_env)
    assert [r["body"] for r in records] == ["fetched Paris", "request failed", "outside any span"]
    fetched, failed, outside = records
    for record in records:
        resource = record["resource"]
        assert resource["service.name"] == "weather"
        assert resource["service.namespace"] == "mybot"
        assert resource["plugin.name"] == "weather" and resource["plugin.version"] == "1.2.3"
        assert resource["process.pid"] == pid
        assert resource["service.instance.id"]
        assert before < record["time"] <= record["observed"] < time.time_ns()
    assert (fetched["severity_text"], fetched["severity_number"]) == ("INFO", 9)
    assert (failed["severity_text"], failed["severity_number"]) == ("ERROR", 17)
    assert (outside["severity_text"], outside["severity_number"]) == ("WARNING", 13)
    assert fetched["attributes"]["city"] == "Paris"
    assert fetched["attributes"]["temp"] == 21.5
    assert fetched["attributes"]["count"] == 3
    assert fetched["attributes"]["ok"] is True
    assert fetched["attributes"]["code.function.name"] == "<module>"
    assert fetched["attributes"]["thread.name"] == "MainThread"
    assert failed["attributes"]["exception.type"] == "builtins.ConnectionError"
    assert failed["attributes"]["exception.message"] == "upstream down"
    assert "ConnectionError: upstream down" in failed["attributes"]["exception.stacktrace"]
    assert fetched["trace_id"] == trace_id and fetched["span_id"] == span_id
    assert failed["trace_id"] == trace_id
    assert fetched["flags"] & 1 == 1  # sampled (the SDK may also set W3C "random", 0x02)
    assert outside["trace_id"] == "" and outside["span_id"] == ""


def test_collector_absent_at_start_then_up_receives_every_record(tmp_path: Path, host_env: Path) -> None:
    """Records logged while the collector is down wait in the bounded queue and all arrive once it starts."""
    script = write_plugin(
        tmp_path,
        "steady",
        """
    import logging, time
    logging.basicConfig(level=logging.INFO)
    for i in range(400):
        logging.getLogger("steady").info("record %d", i)
        time.sleep(0.005)
    """,
    )
    collector = Collector(tmp_path / "rotel")
    with HostLogBridge(otlp_endpoint=collector.grpc_endpoint, export_retry_max_backoff_millis=500) as bridge:
        process = bridge.spawn_plugin("steady", [PYTHON, str(script)])
        assert process.wait(60) == 0
        time.sleep(10)  # the scenario: the collector comes up 10 s after the host
        assert bridge.stats().plugins["steady"].exported == 0
        collector.start()
        try:
            assert wait_until(lambda: bridge.stats().plugins["steady"].exported == 400, 30)
            stats = bridge.stats().plugins["steady"]
            assert stats.dropped_total == 0 and stats.uncounted == 0

            def bodies() -> list[str]:
                return [r["body"] for r in parse_rotel_logs(collector.output()) if r["scope"] == "steady"]

            # Acknowledged by the collector is not yet written to its debug log: wait for the log too.
            wait_until(lambda: len(bodies()) >= 400, 30)
            received = bodies()
        finally:
            bridge.shutdown()
            collector.stop()
    assert received == [f"record {i}" for i in range(400)]


def test_file_sink_decodes_with_the_otlp_json_mapping_into_the_same_records(
    tmp_path: Path, host_env: Path
) -> None:
    """The embedded default writes OTLP/JSON lines that decode, via opentelemetry-proto, into the exported records."""
    script = write_plugin(tmp_path, "traced", TRACED)
    memory = MemorySink()
    with HostLogBridge() as bridge:
        assert bridge.export_settings.exporter == "file"
        process = bridge.spawn_plugin("weather", [PYTHON, str(script), str(tmp_path / "ids")])
        assert process.wait(60) == 0
        assert bridge.wait_for_plugin("weather", 10)
        assert bridge.force_flush(10_000)
        path = Path(bridge.export_settings.file_path)
    with HostLogBridge(sink=memory) as reference:
        process = reference.spawn_plugin("weather", [PYTHON, str(script), str(tmp_path / "ids2")])
        assert process.wait(60) == 0
        assert reference.wait_for_plugin("weather", 10)
        assert reference.force_flush(10_000)
    decoded = []
    for line in path.read_text().splitlines():
        request = json_line_to_request(line)
        for resource_logs in request.resource_logs:
            resource = {kv.key: kv.value for kv in resource_logs.resource.attributes}
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    decoded.append((resource, scope_logs.scope.name, record))
    records = [(res, scope, rec) for res, scope, rec in decoded if scope == "weather.api"]
    assert len(records) == 3
    ids = (tmp_path / "ids").read_text().split()
    resource, _, first = records[0]
    assert resource["service.name"].string_value == "weather"
    assert first.body.string_value == "fetched Paris"
    assert first.severity_number == 9 and first.severity_text == "INFO"
    assert first.trace_id.hex() == ids[0] and first.span_id.hex() == ids[1]
    attributes = {kv.key: kv.value for kv in first.attributes}
    assert attributes["temp"].double_value == 21.5 and attributes["count"].int_value == 3
    assert attributes["ok"].bool_value is True
    expected = [e for e in memory.entries("weather") if e.scope == "weather.api"]
    assert [r.body.string_value for _, _, r in records] == [e.body for e in expected]
    assert [{kv.key: kv.value.WhichOneof("value") for kv in r.attributes} for _, _, r in records] == [
        {k: _kind(v) for k, v in exported_attributes(e)} for e in expected
    ]
    json.loads(path.read_text().splitlines()[0])  # plain JSON, one request per line


def _kind(value: object) -> str:
    return {
        str: "string_value",
        int: "int_value",
        float: "double_value",
        bool: "bool_value",
        bytes: "bytes_value",
        list: "array_value",
        dict: "kvlist_value",
    }[type(value)]
