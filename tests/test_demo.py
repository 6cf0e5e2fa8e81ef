"""`otel-plugin-logs demo`: real plugin runners, a readable console, and a summary that adds up."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import PYTHON, Collector, parse_rotel_logs, wait_until

from otel_plugin_logs import HostLogBridge
from otel_plugin_logs.cli.demo_options import CATALOGUE, plugin_names
from otel_plugin_logs.cli.demo_summary import DemoSummary
from otel_plugin_logs.conventions import BRIDGE_SCOPE_NAME
from otel_plugin_logs.export.otlp import json_line_to_request
from otel_plugin_logs.export.settings import ExportSettings
from otel_plugin_logs.host.stats import BridgeStats, PluginStats
from otel_plugin_logs.testing import MemorySink

NOT_PLUGIN_RECORDS = (BRIDGE_SCOPE_NAME, "stderr")  # the bridge's notices and stderr lines


def demo_argv(summary: Path, *options: str) -> list[str]:
    return [PYTHON, "-m", "otel_plugin_logs", "demo", "--summary-json", str(summary), "--seed", "1", *options]


def run_demo_until_seen(
    tmp_path: Path, texts: list[str], *options: str, after: str = "", timeout: float = 90
) -> tuple[subprocess.CompletedProcess[str], Any]:
    """A demo with --duration 0, stopped by SIGTERM once its console showed each text (after ``after``)."""
    summary = tmp_path / "summary.json"
    stderr_path = tmp_path / "demo.stderr"
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            demo_argv(summary, "--duration", "0", *options), stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        try:

            def shown() -> bool:
                text = stderr_path.read_text()
                if after:
                    start = text.find(after)
                    text = text[start + len(after) :] if start >= 0 else ""
                return all(wanted in text for wanted in texts)

            seen = wait_until(shown, timeout)
            process.send_signal(signal.SIGTERM)
            stdout, _ = process.communicate(timeout=90)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    assert seen, stderr_path.read_text()[-3000:]
    completed = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr_path.read_text())
    return completed, json.loads(summary.read_text())


def file_sink_records(sink_dir: Path) -> dict[str, list[Any]]:
    """The plugin records in the embedded OTLP/JSON file sink, per plugin.name."""
    records: dict[str, list[Any]] = defaultdict(list)
    with open(sink_dir / "plugin-logs.otlp.jsonl", encoding="utf-8") as lines:
        for line in lines:
            request = json_line_to_request(line)
            for resource_logs in request.resource_logs:
                resource = {kv.key: kv.value.string_value for kv in resource_logs.resource.attributes}
                for scope_logs in resource_logs.scope_logs:
                    if scope_logs.scope.name in NOT_PLUGIN_RECORDS:
                        continue
                    records[resource["plugin.name"]].extend(scope_logs.log_records)
    return records


def attributes(record: Any) -> dict[str, Any]:
    out = {}
    for kv in record.attributes:
        kind = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, kind) if kind else None
    return out


def test_demo_summary_equals_what_the_file_sink_holds(tmp_path: Path, host_env: Path) -> None:
    """Per plugin the summary's exported count is what the file sink holds, nothing uncounted."""
    # Until stopped, payments crashes after 20 s: stopped once its restart failed a charge too.
    texts = ["weather.", "inventory.", "crawler.", "could not charge"]
    result, summary = run_demo_until_seen(tmp_path, texts, after="restarting plugin payments", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary["exporter"] == "file" and summary["uncounted"] == 0
    assert summary["file_path"] == str(host_env / "plugin-logs.otlp.jsonl")
    plugins = summary["plugins"]
    assert set(plugins) == set(CATALOGUE)
    held = file_sink_records(host_env)
    for name, numbers in plugins.items():
        assert numbers["exported"] == len(held[name]) > 0, name
        assert numbers["uncounted"] == 0 and numbers["pending"] == 0
        assert numbers["emitted"] == numbers["exported"] + sum(numbers["dropped"].values())
        assert numbers["replayed"] == numbers["emitted"]
        # The table on stdout shows the same numbers.
        row = next(line.split() for line in result.stdout.splitlines() if line.split()[:1] == [name])
        assert row[1:5] == [
            f"{numbers[k]:,}" for k in ("emitted", "replayed", "shown_on_console", "exported")
        ]
    assert str(host_env / "plugin-logs.otlp.jsonl") in result.stdout
    assert "every record is accounted for" in result.stdout

    # What each plugin is there to show.
    assert all(record.trace_id for record in held["weather"])
    assert plugins["payments"]["restarts"] == 1 and plugins["payments"]["exits"] == [1, 0]
    crash = [r for r in held["payments"] if r.severity_text == "CRITICAL"]
    assert len(crash) == 1 and attributes(crash[0])["exception.type"] == "builtins.ConnectionResetError"
    # With --seed 1 the first charge of each start fails (the plugins' choices follow the seed).
    failed = [r for r in held["payments"] if attributes(r).get("exception.type") == "__main__.PaymentError"]
    assert len(failed) >= 2
    stack = attributes(failed[0])["exception.stacktrace"]
    assert "TimeoutError" in stack and "direct cause" in stack
    events = Counter(r.body.string_value for r in held["inventory"])
    assert set(events) <= {"stock_updated", "low_stock", "sync_completed"} and events["stock_updated"]
    assert {"sku", "warehouse", "quantity"} <= set(attributes(held["inventory"][0]))
    assert not {"_logger", "_name", "event"} & set(attributes(held["inventory"][0]))
    others = max(plugins[name]["emitted"] for name in ("weather", "inventory", "payments"))
    assert plugins["crawler"]["emitted"] > 10 * others
    # The burst is sampled on the console only.
    assert plugins["crawler"]["shown_on_console"] < plugins["crawler"]["replayed"] / 10
    assert "of crawler: more records not shown here (console sampling; all are exported)" in result.stderr

    # Not a terminal: no colour, no progress line.
    assert "\x1b" not in result.stderr and "\r" not in result.stderr
    assert "\x1b" not in result.stdout


@pytest.mark.collector
def test_demo_delivers_every_plugins_records_to_a_real_collector(
    tmp_path: Path, host_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With OTEL_EXPORTER_OTLP_ENDPOINT set, rotel receives every record each plugin exported."""
    with Collector(tmp_path / "rotel") as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.grpc_endpoint)
        result, summary = run_demo_until_seen(tmp_path, [f"{name}." for name in CATALOGUE])
        assert result.returncode == 0, result.stderr[-3000:]
        assert summary["exporter"] == "otlp" and summary["endpoint"] == collector.grpc_endpoint
        plugins = summary["plugins"]
        assert summary["uncounted"] == 0 and all(not p["dropped"] for p in plugins.values())

        def received() -> Counter[str]:
            return Counter(
                r["resource"].get("plugin.name")
                for r in parse_rotel_logs(collector.output())
                if r["scope"] not in NOT_PLUGIN_RECORDS
            )

        expected = Counter({name: p["exported"] for name, p in plugins.items()})
        assert all(expected[name] > 0 for name in CATALOGUE)
        assert wait_until(lambda: received() == expected, 20), (received(), expected)
    assert collector.grpc_endpoint in result.stdout and "http://localhost:16686" in result.stdout


@pytest.mark.collector
def test_weather_spans_reach_the_collector_with_the_trace_ids_of_its_logs(
    tmp_path: Path, host_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The weather plugin exports its spans as service 'weather'; every trace id its logs carry has spans."""
    with Collector(tmp_path / "rotel", debug_log=("logs", "traces")) as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.grpc_endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "plugin-host")
        result, summary = run_demo_until_seen(tmp_path, ["weather.forecast"], "--plugins", "weather")
        assert result.returncode == 0, result.stderr[-3000:]

        exported = summary["plugins"]["weather"]["exported"]
        assert exported > 0

        def weather_logs_and_span_trace_ids() -> tuple[list[dict[str, Any]], set[str]]:
            output = collector.output()
            chunks = re.split(r"(?m)^(?=Resource(?:Log|Spans) #)", output)
            log_text = "".join(chunk for chunk in chunks if not chunk.startswith("ResourceSpans #"))
            logs = [r for r in parse_rotel_logs(log_text) if r["scope"] not in NOT_PLUGIN_RECORDS]
            return logs, set(re.findall(r"Span #\d+\n\s+Trace ID\s+: ([0-9a-f]{32})", output))

        def all_arrived() -> bool:
            logs, span_ids = weather_logs_and_span_trace_ids()
            traced = {r["trace_id"] for r in logs if r["scope"] == "weather.forecast"}
            return len(logs) == exported and traced <= span_ids

        assert wait_until(all_arrived, 20)
        logs, _ = weather_logs_and_span_trace_ids()
        output = collector.output()
        spans_at = output.index("ResourceSpans #")
        assert "service.name: Str(weather)" in output[spans_at:]
        assert "service.namespace: Str(plugin-host)" in output[spans_at:]
        assert all(r["resource"]["service.namespace"] == "plugin-host" for r in logs)


def test_sigterm_stops_the_plugins_flushes_and_prints_the_summary(tmp_path: Path, host_env: Path) -> None:
    """A demo running until stopped ends on SIGTERM with its summary, status 0 and nothing lost."""
    summary_path = tmp_path / "summary.json"
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen(
            demo_argv(summary_path, "--duration", "0", "--plugins", "weather,crawler"),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            assert wait_until(lambda: all(n in stderr_path.read_text() for n in ("crawler.", "weather.")), 30)
            process.send_signal(signal.SIGTERM)
            stdout, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, stderr_path.read_text()[-3000:]
    assert "Summary: demo interrupted by SIGTERM" in stdout
    summary = json.loads(summary_path.read_text())
    assert summary["interrupted_by"] == "SIGTERM" and summary["uncounted"] == 0
    held = file_sink_records(host_env)
    for name in ("weather", "crawler"):
        assert summary["plugins"][name]["exported"] == len(held[name]) > 0
        assert summary["plugins"][name]["exits"] == [0]  # the plugins stopped cleanly too


def run_on_a_terminal(
    argv: list[str], timeout_seconds: float = 60.0, interrupt_after: bytes = b""
) -> tuple[int, str]:
    """Run ``argv`` with a pseudo-terminal as stdin/stdout/stderr; its exit code and all it wrote.

    With ``interrupt_after``, the process gets SIGINT once it wrote that (a demo with
    --duration 0 then stops however slow the machine is).
    """
    master, slave = pty.openpty()
    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    output = b""
    deadline = time.monotonic() + timeout_seconds
    interrupted = False
    try:
        while time.monotonic() < deadline:
            if interrupt_after and not interrupted and interrupt_after in output:
                process.send_signal(signal.SIGINT)
                interrupted = True
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the process exited and closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
    return process.wait(10), output.decode("utf-8", "replace")


def test_progress_and_colour_only_on_a_terminal(
    tmp_path: Path, host_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal the console is coloured and a live records/s line is drawn (and cleared before the summary)."""
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    argv = demo_argv(tmp_path / "summary.json", "--duration", "0", "--plugins", "weather,inventory")
    code, text = run_on_a_terminal(argv, interrupt_after=b"records/s")
    assert code == 0
    assert "\x1b[32mINFO" in text  # coloured level
    assert "records/s" in text and "\r\x1b[K" in text
    summary_at = text.index("Summary: demo interrupted by SIGINT")
    assert "records/s" not in text[summary_at:]


def test_no_color_turns_colour_off_on_a_terminal(
    tmp_path: Path, host_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NO_COLOR keeps a terminal's console free of colour codes."""
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm")
    code, text = run_on_a_terminal(
        demo_argv(tmp_path / "summary.json", "--duration", "0", "--plugins", "inventory"),
        interrupt_after=b"stock_updated",
    )
    assert code == 0
    assert "\x1b[3" not in text and "stock_updated" in text


def test_plugins_option_takes_names_instances_or_a_count() -> None:
    """--plugins accepts 'all', a count (cycling with -N suffixes), or names; unknown names are refused."""
    assert plugin_names("all") == list(CATALOGUE)
    assert plugin_names("2") == ["weather", "inventory"]
    assert plugin_names("6") == [*CATALOGUE, "weather-2", "inventory-2"]
    assert plugin_names("crawler, weather-2") == ["crawler", "weather-2"]
    for bad in ("nope", "weather,weather", "0", "weather-0"):
        with pytest.raises(ValueError, match="--plugins"):
            plugin_names(bad)


def test_bad_options_exit_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown plugin or level is reported before anything starts."""
    from otel_plugin_logs.cli.main import main

    assert main(["demo", "--plugins", "nope"]) == 2
    assert "unknown plugin 'nope'" in capsys.readouterr().err
    assert main(["demo", "--level", "LOUD"]) == 2
    with pytest.raises(SystemExit):
        main(["demo", "--rate", "0"])


def test_summary_reports_uncounted_records_and_fails() -> None:
    """Records neither exported, dropped nor pending make the summary say so and the exit status 1."""
    stats = BridgeStats(
        plugins={
            "weather": PluginStats("weather", 10, 9, 0, 9, 7, 0, {"export_queue_full": 1}, 0, 0, 1, {}, (0,))
        },
        exporter="file x",
        queue_records=0,
        queue_bytes=0,
        export_failing=False,
        last_export_error="",
        rejected_connections={},
    )

    bridge = SimpleNamespace(
        export_settings=ExportSettings("file", file_path="/tmp/x.jsonl"), sink_description="file /tmp/x.jsonl"
    )
    summary = DemoSummary.build(stats, bridge, {}, {"weather": 9}, {}, 1.0)
    assert summary.uncounted == 2
    text = summary.render()
    assert "records unaccounted for" in text and "weather +2" in text
    assert "dropped by weather: export_queue_full 1" in text


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_each_demo_plugin_runs_on_its_own(name: str, host_env: Path) -> None:
    """A demo plugin is an ordinary program: without a host it logs to stderr and stops cleanly on SIGINT."""
    written = host_env.parent / f"{name}.stderr"
    with open(written, "w") as stderr_file:
        process = subprocess.Popen(
            [PYTHON, "-m", f"otel_plugin_logs.demo_plugins.{name}", "--rate", "20", "--seed", "1"],
            stderr=stderr_file,
        )
    try:
        # SIGINT once it logs: before that it may still be importing, which is no clean stop.
        assert wait_until(lambda: "INFO:" in written.read_text(), 60), written.read_text()
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0, written.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert "KeyboardInterrupt" not in written.read_text()


def test_inventory_without_structlog_logs_the_same_events(tmp_path: Path, host_env: Path) -> None:
    """Without structlog the inventory plugin sends the same bodies and attributes through extra=."""
    blocker = tmp_path / "no_structlog"
    blocker.mkdir()
    (blocker / "structlog.py").write_text("raise ImportError('structlog is not installed here')\n")
    sink = MemorySink()
    env = dict(os.environ, PYTHONPATH=str(blocker))
    with HostLogBridge(sink=sink) as bridge:
        process = bridge.spawn_plugin(
            "inventory",
            [PYTHON, "-m", "otel_plugin_logs.demo_plugins.inventory", "--rate", "40", "--seed", "3"],
            env=env,
        )
        assert wait_until(lambda: len(sink.entries("inventory")) >= 10, 30)
        process.terminate()
        assert process.wait(30) == 0
        bridge.wait_for_plugin("inventory", 10)
    entries = sink.entries("inventory")
    assert {e.body for e in entries} <= {"stock_updated", "low_stock", "sync_completed"}
    assert {"sku", "warehouse", "quantity"} <= set(entries[0].attributes)


def test_an_ascii_only_output_gets_ascii_marks(tmp_path: Path, host_env: Path) -> None:
    """PYTHONIOENCODING=ascii: no UnicodeEncodeError; the summary and console use ASCII marks, status 0."""
    summary = tmp_path / "summary.json"
    result = subprocess.run(
        demo_argv(summary, "--duration", "2", "--plugins", "weather,payments"),
        capture_output=True,
        timeout=90,
        check=False,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
    )
    stdout, stderr = result.stdout.decode("ascii"), result.stderr.decode("ascii")  # raises if not ASCII
    assert result.returncode == 0, stderr[-3000:]
    assert "UnicodeEncodeError" not in stderr and "Error in sitecustomize" not in stderr
    assert "  ok: every record is accounted for: emitted = exported + discarded + dropped + pending" in stdout
    assert "  --------  -------" in stdout


def test_summary_states_the_balance_rule_of_the_readme_and_points_to_logs() -> None:
    """The summary's rule names discarded as README does, and says how to read the file sink."""
    stats = BridgeStats(
        plugins={"weather": PluginStats("weather", 9, 9, 0, 9, 9, 0, {}, 0, 0, 0, {}, (0,))},
        exporter="file x",
        queue_records=0,
        queue_bytes=0,
        export_failing=False,
        last_export_error="",
        rejected_connections={},
    )
    bridge = SimpleNamespace(
        export_settings=ExportSettings("file", file_path="/tmp/sink dir/plugin-logs.otlp.jsonl"),
        sink_description="file",
    )
    text = DemoSummary.build(stats, bridge, {}, {"weather": 9}, {}, 1.0).render()
    assert "emitted = exported + discarded + dropped + pending" in text
    assert "otel-plugin-logs logs '/tmp/sink dir'" in text and "json.tool" not in text
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "emitted = exported + discarded + dropped + pending" in readme


def test_doctor_on_an_ascii_only_output_uses_ascii_marks(host_env: Path) -> None:
    """`doctor` under PYTHONIOENCODING=ascii prints its checks with ASCII marks instead of failing."""
    result = subprocess.run(
        [PYTHON, "-m", "otel_plugin_logs", "doctor", "--no-send"],
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
    )
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")[-2000:]
    stdout = result.stdout.decode("ascii")
    assert stdout.rstrip().endswith("ok: all checks passed") and "  ok: the configuration is valid" in stdout
