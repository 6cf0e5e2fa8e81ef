"""`otel-plugin-logs logs` on a sink written by a real demo run: filters, --json, --stats, -n."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import PYTHON

from otel_plugin_logs.conventions import BRIDGE_SCOPE_NAME
from otel_plugin_logs.export.otlp import json_line_to_request

SINK_FILE = "plugin-logs.otlp.jsonl"


@dataclass(frozen=True, slots=True)
class Held:
    """One record of the sink as the protobuf parser (not the code under test) reads it."""

    plugin: str
    scope: str
    severity_number: int
    severity_text: str
    body: str
    trace_id: str
    time_unix_nano: int


@dataclass(frozen=True, slots=True)
class DemoSink:
    directory: Path
    env: dict[str, str]
    records: list[Held]
    summary: dict[str, Any]


def read_sink(path: Path) -> list[Held]:
    held = []
    for line in path.read_text(encoding="utf-8").splitlines():
        request = json_line_to_request(line)
        for resource_logs in request.resource_logs:
            resource = {kv.key: kv.value.string_value for kv in resource_logs.resource.attributes}
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    held.append(
                        Held(
                            resource["service.name"],
                            scope_logs.scope.name,
                            record.severity_number,
                            record.severity_text,
                            record.body.string_value,
                            record.trace_id.hex(),
                            record.time_unix_nano,
                        )
                    )
    return held


def clean_env(sink_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_PLUGIN_LOGS_FILE_DIR"] = str(sink_dir)
    env.pop("NO_COLOR", None)
    return env


@pytest.fixture(scope="module")
def demo_sink(tmp_path_factory: pytest.TempPathFactory) -> DemoSink:
    """A sink written by a real `otel-plugin-logs demo` run (4 plugins, 6 s)."""
    root = tmp_path_factory.mktemp("demo")
    env = clean_env(root / "sink")
    summary = root / "summary.json"
    argv = [PYTHON, "-m", "otel_plugin_logs", "demo", "--duration", "6", "--seed", "1"]
    process = subprocess.Popen(
        [*argv, "--summary-json", str(summary)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr[-3000:]
    return DemoSink(root / "sink", env, read_sink(root / "sink" / SINK_FILE), json.loads(summary.read_text()))


def logs(sink: DemoSink, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "otel_plugin_logs", "logs", *options],
        env=sink.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def record_lines(output: str) -> list[str]:
    """The first line of each record (continuation lines start with the gutter)."""
    return [line for line in output.splitlines() if line and not line.startswith("    ")]


def test_errors_of_one_plugin_are_exactly_those_the_sink_holds(demo_sink: DemoSink) -> None:
    """`logs --plugin payments --level ERROR` (default sink from the environment) prints each such record once."""
    result = logs(demo_sink, "--plugin", "payments", "--level", "ERROR")
    assert result.returncode == 0 and result.stderr == ""
    expected = [r for r in demo_sink.records if r.plugin == "payments" and r.severity_number >= 17]
    lines = record_lines(result.stdout)
    assert len(lines) == len(expected) >= 1  # failed charges (seed 1) and the crash, as far as it got
    assert all(line[13:].startswith(("ERROR payments ", "CRIT  payments ")) for line in lines)
    assert "    │ Traceback (most recent call last):" in result.stdout


def test_every_record_is_printed_in_time_order(demo_sink: DemoSink) -> None:
    """Without filters each record of the sink is one record line, oldest first."""
    result = logs(demo_sink, str(demo_sink.directory))
    lines = record_lines(result.stdout)
    assert len(lines) == len(demo_sink.records)
    clocks = [line[:12] for line in lines]
    assert clocks == sorted(clocks)


def test_json_lines_load_one_otlp_record_each(demo_sink: DemoSink) -> None:
    """Each --json line is one OTLP/JSON logRecord with its resource and scope."""
    result = logs(demo_sink, "--json", "--plugin", "weather")
    shaped = [json.loads(line) for line in result.stdout.splitlines()]
    expected = [r for r in demo_sink.records if r.plugin == "weather"]
    assert len(shaped) == len(expected) > 0
    first = shaped[0]
    assert {"timeUnixNano", "severityNumber", "body", "resource", "scope"} <= set(first)
    names = {kv["key"]: kv["value"] for kv in first["resource"]["attributes"]}
    assert names["service.name"] == {"stringValue": "weather"}
    bodies = Counter(record["body"]["stringValue"] for record in shaped)
    assert bodies == Counter(r.body for r in expected)


def test_stats_count_records_per_plugin_and_level(demo_sink: DemoSink) -> None:
    """--stats prints, per plugin, its records by level and the bridge's notices (payments' crash)."""
    result = logs(demo_sink, "--stats")
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line.strip()}
    headers = rows["plugin"]
    for plugin in demo_sink.summary["plugins"]:
        mine = [r for r in demo_sink.records if r.plugin == plugin and r.scope != BRIDGE_SCOPE_NAME]
        row = dict(zip(headers, rows[plugin], strict=True))
        assert row["total"] == f"{len(mine):,}"
        assert row["INFO"] == f"{sum(1 for r in mine if r.severity_text == 'INFO'):,}"
        notices = sum(1 for r in demo_sink.records if r.plugin == plugin and r.scope == BRIDGE_SCOPE_NAME)
        assert row["notices"] == f"{notices:,}"  # payments' exit with code 1, when it crashed in time
    assert "no drop notices" in result.stdout


def test_trace_prefix_selects_the_records_of_one_trace(demo_sink: DemoSink) -> None:
    """--trace with the 8 characters the console shows finds every record of that trace."""
    trace = next(r.trace_id for r in demo_sink.records if r.trace_id)
    result = logs(demo_sink, "--trace", trace[:8])
    lines = record_lines(result.stdout)
    assert len(lines) == sum(1 for r in demo_sink.records if r.trace_id == trace) >= 1
    assert all(line.endswith(f"trace={trace[:8]}") for line in lines)


def test_grep_and_logger_filter_by_text_and_logger_prefix(demo_sink: DemoSink) -> None:
    """--grep in lowercase ignores case; --logger takes a logger and its children."""
    grep = logs(demo_sink, "--grep", "lisbon")
    assert len(record_lines(grep.stdout)) == sum(1 for r in demo_sink.records if "lisbon" in r.body.lower())
    logger = logs(demo_sink, "--logger", "inventory")
    assert len(record_lines(logger.stdout)) == sum(
        1 for r in demo_sink.records if r.scope.startswith("inventory")
    )


def test_since_and_until_take_durations_and_timestamps(demo_sink: DemoSink) -> None:
    """--since 1h keeps everything just written; --until a time before the run keeps nothing."""
    assert len(record_lines(logs(demo_sink, "--since", "1h").stdout)) == len(demo_sink.records)
    assert logs(demo_sink, "--until", "2001-01-01T00:00:00").stdout == ""
    bad = logs(demo_sink, "--since", "yesterday")
    assert bad.returncode == 2 and "neither a duration" in bad.stderr and "Traceback" not in bad.stderr


def test_lines_keeps_the_last_n_matching_records(demo_sink: DemoSink) -> None:
    """-n 5 prints the five newest records of the filter."""
    result = logs(demo_sink, "-n", "5", "--plugin", "inventory")
    newest = sorted((r for r in demo_sink.records if r.plugin == "inventory"), key=lambda r: r.time_unix_nano)
    lines = record_lines(result.stdout)
    assert len(lines) == 5
    assert [line.split("inventory.sync")[1].split()[0] for line in lines] == [r.body for r in newest[-5:]]


def test_a_missing_sink_is_one_clear_error(tmp_path: Path, demo_sink: DemoSink) -> None:
    """No sink at the path: exit 1 with a sentence naming it, no traceback."""
    result = logs(demo_sink, str(tmp_path / "nothing-here"))
    assert result.returncode == 1
    assert "no sink at" in result.stderr and "Traceback" not in result.stderr
