"""The export stage: configuration from OTEL_* variables, bounded queue, failures, loops and duplicates."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import PYTHON, CaptureHandler, wait_until, write_plugin

from otel_plugin_logs import ConfigError, HostLogBridge, ReplayedRecordFilter
from otel_plugin_logs.config.fields import resolve
from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.export.settings import resolve_export
from otel_plugin_logs.export.sinks import Outcome
from otel_plugin_logs.testing import MemorySink

BURST = """
import logging, sys
logging.basicConfig(level=logging.INFO)
for i in range(int(sys.argv[1])):
    logging.getLogger("burst").info("record %d", i)
"""


def _run(bridge: HostLogBridge, tmp_path: Path, name: str, count: int, *, settle: bool = True) -> None:
    script = write_plugin(tmp_path, "burst", BURST)
    process = bridge.spawn_plugin(name, [PYTHON, str(script), str(count)])
    assert process.wait(120, settle=settle) == 0
    assert bridge.wait_for_plugin(name, 20)


def test_invalid_variable_fails_at_start_naming_it(host_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad value, of the host's or its runners' settings, is refused at start-up, naming the variable."""
    monkeypatch.setenv("OTEL_PLUGIN_LOGS_EXPORT_MAX_QUEUE_RECORDS", "lots")
    with pytest.raises(
        ConfigError, match="OTEL_PLUGIN_LOGS_EXPORT_MAX_QUEUE_RECORDS='lots' is invalid: expected an integer"
    ):
        HostLogBridge()
    monkeypatch.delenv("OTEL_PLUGIN_LOGS_EXPORT_MAX_QUEUE_RECORDS")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/thrift")
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL='http/thrift' is invalid"):
        HostLogBridge()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_TIMEOUT"):
        HostLogBridge()
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TIMEOUT")
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "zipkin")
    with pytest.raises(ConfigError, match="OTEL_LOGS_EXPORTER='zipkin'"):
        HostLogBridge()
    monkeypatch.delenv("OTEL_LOGS_EXPORTER")
    monkeypatch.setenv("OTEL_PLUGIN_LOGS_KEEP_CONSOLE", "maybe")  # a runner setting: runners inherit it
    with pytest.raises(
        ConfigError, match="OTEL_PLUGIN_LOGS_KEEP_CONSOLE='maybe' is invalid: expected true or false"
    ):
        HostLogBridge()


def test_argument_beats_variable_beats_default(host_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each setting comes from the argument, else its variable, else the default; the source is recorded."""
    monkeypatch.setenv("OTEL_PLUGIN_LOGS_EXPORT_MAX_QUEUE_RECORDS", "500")
    monkeypatch.setenv("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "64")
    config, resolved = resolve(HostConfig, {"report_interval_millis": 250})
    assert config.export_max_queue_records == 500
    assert resolved.sources["export_max_queue_records"] == (
        "env",
        "OTEL_PLUGIN_LOGS_EXPORT_MAX_QUEUE_RECORDS",
    )
    assert config.export_max_batch_records == 64  # the standard OTEL_BLRP_* twin when ours is unset
    assert resolved.sources["export_max_batch_records"] == ("env", "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE")
    assert config.report_interval_millis == 250
    assert resolved.sources["report_interval_millis"] == ("argument", "")
    assert resolved.sources["shutdown_timeout_millis"] == ("default", "")
    config, _ = resolve(HostConfig, {"export_max_queue_records": 7})
    assert config.export_max_queue_records == 7


def test_exporter_selection_follows_the_standard_variables(host_env: Path) -> None:
    """No endpoint: file sink; an endpoint: OTLP; OTEL_LOGS_EXPORTER and OTEL_SDK_DISABLED select explicitly."""
    config, _ = resolve(HostConfig, environ={"OTEL_PLUGIN_LOGS_FILE_DIR": "/tmp/x"})
    assert resolve_export(config, {}).exporter == "file"
    settings = resolve_export(config, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"})
    assert (settings.exporter, settings.protocol, settings.endpoint) == (
        "otlp",
        "grpc",
        "http://collector:4317",
    )
    settings = resolve_export(
        config,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        },
    )
    assert settings.endpoint == "http://collector:4318/v1/logs"
    settings = resolve_export(
        config,
        {
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://logs:9999/custom",
            "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf",
        },
    )
    assert settings.endpoint == "http://logs:9999/custom"
    assert (
        resolve_export(
            config, {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}
        ).exporter
        == "none"
    )
    for name in ("console", "none", "file"):
        config, _ = resolve(HostConfig, environ={"OTEL_LOGS_EXPORTER": name})
        assert resolve_export(config, {"OTEL_LOGS_EXPORTER": name}).exporter == name


def test_resource_carries_host_resource_attributes(
    tmp_path: Path, host_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME shape every plugin's resource; service.name is the plugin."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging,team=bots")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "mybot")
    sink = MemorySink()
    with HostLogBridge(sink=sink) as bridge:
        _run(bridge, tmp_path, "weather", 3)
        assert bridge.force_flush(10_000)
    resources = {r.key: r for r, e in sink.items if e.seq}
    (resource,) = resources.values()
    attributes = resource.attributes
    assert attributes["service.name"] == "weather" and attributes["service.namespace"] == "mybot"
    assert attributes["deployment.environment.name"] == "staging" and attributes["team"] == "bots"
    assert attributes["telemetry.sdk.language"] == "python"


def test_permanently_failing_exporter_counts_every_undelivered_record(
    tmp_path: Path, host_env: Path, capture: CaptureHandler
) -> None:
    """An exporter that never succeeds: the host keeps serving, its queue stays bounded, drops equal what was lost."""
    sink = MemorySink()
    sink.fail = True
    with HostLogBridge(
        sink=sink,
        export_max_queue_records=1000,
        export_max_queue_bytes=1024 * 1024,
        export_retry_max_backoff_millis=50,
    ) as bridge:
        _run(bridge, tmp_path, "doomed", 20_000)
        depth = bridge.stats()
        assert depth.queue_records <= 1000 and depth.queue_bytes <= 1024 * 1024
        assert depth.export_failing and "told to fail" in depth.last_export_error
        bridge.shutdown(1000)
        stats = bridge.stats().plugins["doomed"]
    assert len(capture.plugin_records("doomed")) == 20_000  # replay is not held back by export trouble
    assert stats.emitted == 20_000 and stats.exported == 0
    assert stats.dropped_total == 20_000
    assert stats.dropped["export_queue_full"] >= 19_000
    assert stats.dropped["export_queue_full"] + stats.dropped.get("shutdown_unexported", 0) == 20_000
    assert stats.uncounted == 0 and sink.attempts > 1


def test_shutdown_counts_a_batch_still_exporting_at_its_deadline(tmp_path: Path, host_env: Path) -> None:
    """A sink that is still busy when the shutdown deadline passes: shutdown() says not everything went out."""

    release = threading.Event()

    class StuckSink(MemorySink):
        def export(self, items: Any, timeout_seconds: float) -> Outcome:
            release.wait(30)  # a collector that takes longer than the whole shutdown
            return super().export(items, timeout_seconds)

    sink = StuckSink()
    bridge = HostLogBridge(sink=sink, export_schedule_delay_millis=10).start()
    try:
        _run(bridge, tmp_path, "slow", 50, settle=False)  # settling would wait for the stuck sink
        assert wait_until(lambda: bridge.stats().queue_records == 50, 10)  # in the sink's hands
        started = time.monotonic()
        assert bridge.shutdown(500) is False
        assert time.monotonic() - started < 5
    finally:
        release.set()
    assert wait_until(lambda: bridge.stats().plugins["slow"].exported == 50, 10)  # it went out late


def test_refused_requests_are_counted_as_rejected_not_retried(tmp_path: Path, host_env: Path) -> None:
    """A permanent refusal (say HTTP 400) drops that request at once, counted as export_rejected."""
    sink = MemorySink()
    sink.fail = True
    sink.permanent = True
    with HostLogBridge(sink=sink) as bridge:
        _run(bridge, tmp_path, "refused", 300)
        assert wait_until(lambda: bridge.stats().plugins["refused"].dropped.get("export_rejected") == 300, 10)
        stats = bridge.stats().plugins["refused"]
    assert stats.exported == 0 and stats.uncounted == 0


def test_drops_are_reported_once_per_interval(
    tmp_path: Path, host_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Drops produce one WARNING per plugin per interval, naming the plugin, the count and the reason."""
    sink = MemorySink()
    sink.fail = True
    with HostLogBridge(
        sink=sink, export_max_queue_records=100, report_interval_millis=300, export_plugin_share_percent=100
    ) as bridge:  # no room kept for other plugins: the one plugin may fill all 100
        _run(bridge, tmp_path, "noisy", 2000)
        time.sleep(0.8)
        warnings = [
            r.getMessage()
            for r in caplog.records
            if r.name == "otel_plugin_logs.bridge" and "dropped" in r.getMessage()
        ]
        bridge.shutdown(500)
    assert (
        warnings
        and warnings[0].startswith("dropped ")
        and "of plugin noisy: export_queue_full" in warnings[0]
    )
    total = sum(int(w.split()[1]) for w in warnings if "export_queue_full" in w)
    assert total == 1900


def _otel_logging_handler(kind: str, provider: Any) -> logging.Handler:
    import warnings

    if kind == "sdk":  # deprecated since SDK 1.40, still recognised
        from opentelemetry.sdk._logs import LoggingHandler as SdkHandler

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return SdkHandler(logger_provider=provider)
    from opentelemetry.instrumentation.logging.handler import LoggingHandler

    if kind == "subclass":

        class AppHandler(LoggingHandler):
            pass

        return AppHandler(logger_provider=provider)
    return LoggingHandler(logger_provider=provider)


@pytest.mark.parametrize(("kind", "where"), [("instrumentation", ""), ("sdk", ""), ("subclass", "plugin")])
def test_host_otel_handler_does_not_export_plugin_records_twice(
    tmp_path: Path, host_env: Path, kind: str, where: str
) -> None:
    """An OTel LoggingHandler (instrumentation-logging's, the SDK's, a subclass) on root or on the replay
    prefix gets a filter that keeps replayed plugin records out."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    exporter = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    host_handler = _otel_logging_handler(kind, provider)
    logging.getLogger(where).addHandler(host_handler)
    logging.getLogger().setLevel(logging.INFO)
    try:
        with HostLogBridge(sink=MemorySink()) as bridge:
            assert any(isinstance(f, ReplayedRecordFilter) for f in host_handler.filters)
            logging.getLogger(where or "host.app").info("the host's own record")
            _run(bridge, tmp_path, "weather", 5)
    finally:
        logging.getLogger(where).removeHandler(host_handler)
    bodies = [r.log_record.body for r in exporter.get_finished_logs()]
    assert "the host's own record" in bodies
    assert not any(str(b).startswith("record ") for b in bodies)


def test_exporter_warnings_during_an_outage_never_enter_the_pipeline(tmp_path: Path, host_env: Path) -> None:
    """With the collector down the SDK exporter logs warnings; they stay host logs and are never exported."""
    from benchmarks._common import free_port

    capture = CaptureHandler()
    root = logging.getLogger()
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    endpoint = f"http://127.0.0.1:{free_port()}"
    with HostLogBridge(
        otlp_endpoint=endpoint, export_retry_max_backoff_millis=100, export_timeout_millis=500
    ) as bridge:
        _run(bridge, tmp_path, "weather", 50)
        time.sleep(1.5)
        stats = bridge.stats()
        bridge.shutdown(500)
        final = bridge.stats().plugins["weather"]
    sdk_messages = [r for r in capture.records if r.name.startswith("opentelemetry")]
    assert stats.export_failing
    assert all(getattr(r, "otel", None) is None for r in sdk_messages)
    assert final.exported == 0 and final.dropped == {"shutdown_unexported": 50}
    assert (
        len(
            [
                r
                for r in capture.records
                if getattr(r, "otel", None) is not None and r.otel.plugin == "weather"
            ]
        )
        == 50
    )


def test_console_exporter_prints_records_through_the_sdk(
    tmp_path: Path, host_env: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """OTEL_LOGS_EXPORTER=console prints each record as the SDK's console exporter formats it."""
    monkeypatch.setenv("OTEL_LOGS_EXPORTER", "console")
    with HostLogBridge() as bridge:
        _run(bridge, tmp_path, "weather", 2)
        assert bridge.force_flush(10_000)
    out = capfd.readouterr().out
    assert out.count('"body": "record ') == 2 and '"service.name": "weather"' in out


def test_sdk_disabled_replays_but_exports_nothing(
    tmp_path: Path, host_env: Path, monkeypatch: pytest.MonkeyPatch, capture: CaptureHandler
) -> None:
    """OTEL_SDK_DISABLED=true: records still replay locally; none are exported, and they are counted as discarded."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    with HostLogBridge() as bridge:
        _run(bridge, tmp_path, "weather", 10)
        stats = bridge.stats().plugins["weather"]
    assert len(capture.plugin_records("weather")) == 10
    assert stats.exported == 0 and stats.discarded == 10 and stats.uncounted == 0
    assert not os.path.exists(host_env)


def test_notice_produced_at_shutdown_is_exported(tmp_path: Path, host_env: Path) -> None:
    """A plugin rate-limited just before it exits: `run` exports the 'suppressed 20' notice to the sink too."""
    script = write_plugin(tmp_path, "burst", BURST)
    cli = os.path.join(os.path.dirname(PYTHON), "otel-plugin-logs")
    env = {
        **os.environ,
        "OTEL_PLUGIN_LOGS_RATE_LIMIT_RECORDS_PER_SECOND": "1",
        "OTEL_PLUGIN_LOGS_RATE_LIMIT_BURST_RECORDS": "2",
    }
    result = subprocess.run(
        [cli, "run", "--plugin", "flood", "--", PYTHON, str(script), "22"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "suppressed 20 records of plugin flood" in result.stderr
    sink_file = host_env / "plugin-logs.otlp.jsonl"
    notices = [
        record
        for line in sink_file.read_text().splitlines()
        for resource_logs in json.loads(line)["resourceLogs"]
        for scope_logs in resource_logs["scopeLogs"]
        if scope_logs["scope"]["name"] == "otel_plugin_logs.bridge"
        for record in scope_logs["logRecords"]
    ]
    assert [n["body"]["stringValue"] for n in notices] == [
        "suppressed 20 records of plugin flood (rate limit 1 records/s)"
    ]
    assert notices[0]["eventName"] == "otel_plugin_logs.bridge.suppressed"


def test_declarative_config_file_is_said_to_be_ignored_by_doctor_and_at_start(
    tmp_path: Path, host_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """OTEL_CONFIG_FILE set: `doctor` and the bridge's start-up both say plainly that it is not read."""
    from otel_plugin_logs.cli.main import main

    config_file = tmp_path / "otel.yaml"
    config_file.write_text("file_format: '1.0'\n")
    monkeypatch.setenv("OTEL_CONFIG_FILE", str(config_file))
    assert main(["doctor", "--no-send"]) == 0
    assert f"note: OTEL_CONFIG_FILE={config_file} is ignored" in capsys.readouterr().out
    warnings = CaptureHandler()
    logging.getLogger("otel_plugin_logs").addHandler(warnings)
    try:
        with HostLogBridge(sink=MemorySink()):
            pass
    finally:
        logging.getLogger("otel_plugin_logs").removeHandler(warnings)
    said = [r.getMessage() for r in warnings.records if r.levelno == logging.WARNING]
    assert any(f"OTEL_CONFIG_FILE={config_file} is ignored" in text for text in said)
