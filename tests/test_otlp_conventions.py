"""OpenTelemetry conventions the bridge follows: resource variables, a plugin's own SDK, detectors."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path
from typing import ClassVar

import pytest
from helpers import PYTHON, Collector, MemorySink, parse_rotel_logs, wait_until, write_plugin

from otel_plugin_logs import ConfigError, HostLogBridge
from otel_plugin_logs.wire.records import severity_number

QUIET = """
import logging
logging.getLogger("quiet").warning("one record")
"""

# The resource the plugin's own SDK builds from the environment the bridge gave it.
SDK_RESOURCE = """
import json, sys
from opentelemetry.sdk.resources import Resource
with open(sys.argv[1], "w") as out:
    json.dump(dict(Resource.create().attributes), out)
"""

# Under opentelemetry-instrument (whose sitecustomize runs instead of the bridge's: the
# handler comes from the package's opentelemetry_pre_instrument entry point) and the SDK the
# instrumentation configured, with a span around one record.
INSTRUMENTED = """
import logging, sys
from opentelemetry import trace
log = logging.getLogger("instrumented")
with trace.get_tracer("instrumented").start_as_current_span("work"):
    log.warning("inside a span")
trace.get_tracer_provider().force_flush()
with open(sys.argv[1], "w") as out:
    out.write(" ".join(type(h).__module__ + "." + type(h).__name__ for h in logging.getLogger().handlers))
"""


def _resources(sink: MemorySink, plugin: str) -> list[dict[str, object]]:
    return [r.attributes for r, e in sink.items if e.seq and r.attributes.get("plugin.name") == plugin]


def _run_quiet(bridge: HostLogBridge, tmp_path: Path, name: str) -> None:
    script = write_plugin(tmp_path, "quiet", QUIET)
    assert bridge.spawn_plugin(name, [PYTHON, str(script)]).wait(60) == 0
    assert bridge.wait_for_plugin(name, 20)
    assert bridge.force_flush(10_000)


def test_resource_attribute_values_are_percent_decoded(
    tmp_path: Path, host_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_RESOURCE_ATTRIBUTES values are percent-decoded as the SDK does: team=a%2Cb is 'a,b'."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=a%2Cb, owner = x%3Dy%20z ,,")
    sink = MemorySink()
    with HostLogBridge(sink=sink) as bridge:
        _run_quiet(bridge, tmp_path, "weather")
    (attributes, *_) = _resources(sink, "weather")
    assert attributes["team"] == "a,b" and attributes["owner"] == "x=y z"


def test_resource_attributes_without_a_key_fail_at_start_naming_the_variable(
    host_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OTEL_RESOURCE_ATTRIBUTES entry that is not key=value is refused at start-up, naming it."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=bots,oops")
    with pytest.raises(ConfigError, match="OTEL_RESOURCE_ATTRIBUTES has an invalid entry 'oops'"):
        HostLogBridge().start()


def test_runner_environment_gives_the_plugin_sdk_the_host_name_intact(
    tmp_path: Path, host_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The appended service.namespace is percent-encoded: the plugin's SDK reads 'bot,eu=1 %' back."""
    monkeypatch.setenv("OTEL_SERVICE_NAME", "bot,eu=1 %")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=a%2Cb")
    script = write_plugin(tmp_path, "sdk_resource", SDK_RESOURCE)
    out = tmp_path / "resource.json"
    with HostLogBridge(sink=MemorySink()) as bridge:
        assert bridge.spawn_plugin("weather", [PYTHON, str(script), str(out)]).wait(60) == 0
    resource = json.loads(out.read_text())
    assert resource["service.namespace"] == "bot,eu=1 %"
    assert resource["team"] == "a,b" and resource["service.name"] == "weather"


def test_configured_resource_detectors_add_host_name(
    tmp_path: Path, host_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_EXPERIMENTAL_RESOURCE_DETECTORS=host,os adds host.name and os.type, not the host's process.*."""
    monkeypatch.setenv("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "host,os,process")
    sink = MemorySink()
    with HostLogBridge(sink=sink) as bridge:
        _run_quiet(bridge, tmp_path, "weather")
    (attributes, *_) = _resources(sink, "weather")
    assert attributes["host.name"] == socket.gethostname() and attributes["os.type"] == "linux"
    assert attributes["process.pid"] != os.getpid() and "process.executable.path" not in attributes


def test_unknown_resource_detector_fails_at_start_naming_it(
    host_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A detector name the SDK does not know is refused at start-up with the installed names."""
    monkeypatch.setenv("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "host,nosuch")
    with pytest.raises(ConfigError, match=r"unknown detector\(s\) nosuch: installed are .*host"):
        HostLogBridge().start()


def _instrumented_run(tmp_path: Path, collector: Collector, own_export: bool) -> tuple[MemorySink, str]:
    instrument = shutil.which("opentelemetry-instrument", path=os.path.dirname(PYTHON))
    assert instrument is not None, "opentelemetry-instrument is in the test extra"
    script = write_plugin(tmp_path, "instrumented", INSTRUMENTED)
    handlers = tmp_path / "handlers.txt"
    sink = MemorySink()
    with HostLogBridge(sink=sink, plugin_log_export=own_export) as bridge:
        process = bridge.spawn_plugin("weather", [instrument, PYTHON, str(script), str(handlers)])
        assert process.wait(120) == 0
        assert bridge.wait_for_plugin("weather", 20)
        assert bridge.force_flush(10_000)
    return sink, handlers.read_text()


@pytest.mark.collector
def test_instrumented_plugin_exports_its_spans_but_not_its_logs(
    tmp_path: Path, host_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under opentelemetry-instrument a plugin's logs reach the collector once (the bridge's), its spans too."""
    with Collector(tmp_path / "rotel", debug_log=("logs", "traces")) as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.grpc_endpoint)
        monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp")  # what the host itself runs with
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        sink, handlers = _instrumented_run(tmp_path, collector, own_export=False)
        assert wait_until(lambda: "Span #0" in collector.output(), 20)
        assert "instrumentation.logging" not in handlers and "LoggingHandler" not in handlers
        assert [e.body for e in sink.entries("weather")] == ["inside a span"]
        assert [r for r in parse_rotel_logs(collector.output()) if r["scope"] == "instrumented"] == []


@pytest.mark.collector
def test_plugin_log_export_opt_out_lets_the_plugin_export_its_logs(
    tmp_path: Path, host_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With OTEL_PLUGIN_LOGS_PLUGIN_LOG_EXPORT=true the plugin's own SDK exports its logs as it would alone."""
    with Collector(tmp_path / "rotel", debug_log=("logs", "traces")) as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.grpc_endpoint)
        monkeypatch.setenv("OTEL_LOGS_EXPORTER", "otlp")
        monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
        _, handlers = _instrumented_run(tmp_path, collector, own_export=True)
        assert "LoggingHandler" in handlers
        assert wait_until(
            lambda: any(r["scope"] == "instrumented" for r in parse_rotel_logs(collector.output())), 20
        )


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Keeps the content type and body of each POST; answers 200."""

    posts: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.posts.append((self.headers.get("Content-Type", ""), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def test_http_json_protocol_posts_otlp_json_with_its_content_type(tmp_path: Path, host_env: Path) -> None:
    """OTEL_EXPORTER_OTLP_PROTOCOL=http/json posts application/json OTLP/JSON (hex ids, string int64s)."""
    _Recorder.posts = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}/v1/logs"
        with HostLogBridge(otlp_endpoint=endpoint, otlp_protocol="http/json") as bridge:
            assert bridge.sink_description.startswith("OTLP/HTTP/JSON")
            _run_quiet(bridge, tmp_path, "weather")
    finally:
        server.shutdown()
        server.server_close()
    content_types = {content_type for content_type, _ in _Recorder.posts}
    assert content_types == {"application/json"}
    records = [
        record
        for _, body in _Recorder.posts
        for resource_logs in json.loads(body)["resourceLogs"]
        for scope_logs in resource_logs["scopeLogs"]
        for record in scope_logs["logRecords"]
        if scope_logs["scope"]["name"] == "quiet"
    ]
    assert [r["body"] for r in records] == [{"stringValue": "one record"}]
    assert records[0]["severityNumber"] == 13 and isinstance(records[0]["timeUnixNano"], str)


def test_otlp_json_file_exporter_writes_otlp_json_lines_to_stdout(tmp_path: Path, host_env: Path) -> None:
    """OTEL_LOGS_EXPORTER=otlp_json_file: `run` writes each export request as one OTLP/JSON line on stdout."""
    script = write_plugin(tmp_path, "quiet", QUIET)
    cli = shutil.which("otel-plugin-logs", path=os.path.dirname(PYTHON))
    assert cli is not None
    env = {**os.environ, "OTEL_LOGS_EXPORTER": "otlp_json_file"}
    result = subprocess.run(
        [cli, "run", "--plugin", "weather", "--", PYTHON, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"resourceLogs"')]
    bodies = [
        record["body"]["stringValue"]
        for line in lines
        for resource_logs in line["resourceLogs"]
        for scope_logs in resource_logs["scopeLogs"]
        for record in scope_logs["logRecords"]
        if scope_logs["scope"]["name"] == "quiet"
    ]
    assert bodies == ["one record"]
    assert not (host_env / "plugin-logs.otlp.jsonl").exists()


EVENTS = """
import logging
logging.getLogger().setLevel(logging.INFO)
log = logging.getLogger("shop")
log.info("order placed", extra={"event.name": "shop.order_placed", "order": 7})
log.info("plain record")
"""


def test_plugin_event_name_and_record_uid_reach_the_export_request(tmp_path: Path, host_env: Path) -> None:
    """extra={"event.name": ...} is exported as eventName; every record gets its own log.record.uid."""
    script = write_plugin(tmp_path, "events", EVENTS)
    with HostLogBridge() as bridge:
        assert bridge.spawn_plugin("shop", [PYTHON, str(script)]).wait(60) == 0
        assert bridge.wait_for_plugin("shop", 20)
        assert bridge.force_flush(10_000)
        path = Path(bridge.export_settings.file_path)
    records = [
        record
        for line in path.read_text().splitlines()
        for resource_logs in json.loads(line)["resourceLogs"]
        for scope_logs in resource_logs["scopeLogs"]
        if scope_logs["scope"]["name"] == "shop"
        for record in scope_logs["logRecords"]
    ]
    placed, plain = records
    assert placed["eventName"] == "shop.order_placed" and "eventName" not in plain
    keys = [kv["key"] for kv in placed["attributes"]]
    assert "event.name" not in keys and "order" in keys
    uids = [
        {kv["key"]: kv["value"] for kv in r["attributes"]}["log.record.uid"]["stringValue"] for r in records
    ]
    assert len(set(uids)) == 2 and all(len(uid) == 32 for uid in uids)


def _numbers(cell: str) -> list[int]:
    """'10, 11, 12 (10 is DEBUG)' -> [10, 11, 12]; '13-19' -> [13, 19] (a range's ends)."""
    cell = cell.split("(", 1)[0]
    return [int(n) for n in re.findall(r"\d+", cell)]


def test_readme_severity_table_is_the_mapping_the_bridge_applies() -> None:
    """Every row of the README's severity table holds for every stdlib level number it covers."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    table = readme[readme.index("| stdlib `levelno` | `severity_number` | OTel name |") :]
    lines = table.split("\n\n", 1)[0].splitlines()[2:]
    rows = [line.split("|")[1:3] for line in lines]
    covered: set[int] = set()
    for levels_cell, numbers_cell in rows:
        levels, numbers = _numbers(levels_cell), _numbers(numbers_cell)
        if "-" in levels_cell.split("(", 1)[0]:
            span = range(levels[0], levels[1] + 1)
            mapped = [severity_number(level) for level in span]
            assert mapped == sorted(mapped) and {mapped[0], mapped[-1]} <= set(
                range(numbers[0], numbers[-1] + 1)
            )
            assert mapped[0] == numbers[0] and mapped[-1] == numbers[-1], levels_cell
        else:
            span = range(levels[0], levels[-1] + 1)
            assert [severity_number(level) for level in levels] == numbers, levels_cell
        covered.update(span)
    assert covered == set(range(101))
