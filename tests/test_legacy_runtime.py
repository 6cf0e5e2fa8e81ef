"""The example plugin runtime (examples/plugin_runtime) end to end, with a real collector.

One host over its own RPC, one runner on the old seed-style handler and one on
RunnerLogHandler over RpcTransport: every record of both reaches the host's console and the
collector, on its plugin's resource, and the old path's bad input is refused and counted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import PYTHON, Collector, parse_rotel_logs, wait_until

pytestmark = pytest.mark.collector

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "plugin_runtime" / "runtime_host.py"
RECORDS = 100
PLUGINS = ("oldplugin", "newplugin")


@dataclasses.dataclass
class RuntimeRun:
    summary: dict[str, Any]
    console: list[str]
    collected: list[dict[str, Any]]
    returncode: int


def expected_bodies(plugin: str) -> set[str]:
    return {
        f"record {i} of {plugin} failed" if i % 25 == 24 else f"record {i} of {plugin}"
        for i in range(RECORDS)
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> RuntimeRun:
    """Runs the example host once against a collector; its process group is killed whatever happens."""
    directory = tmp_path_factory.mktemp("runtime")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    with Collector(directory / "rotel") as collector:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = collector.grpc_endpoint
        env["OTEL_PLUGIN_LOGS_FILE_DIR"] = str(directory / "sink")
        process = subprocess.Popen(
            [PYTHON, str(EXAMPLE), "--records", str(RECORDS), "--bad-batch"],
            cwd=directory,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # the runners are its children: one group to kill
        )
        try:
            out, err = process.communicate(timeout=180)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

        def ours() -> list[dict[str, Any]]:
            return [
                r for r in parse_rotel_logs(collector.output()) if r["resource"].get("plugin.name") in PLUGINS
            ]

        wait_until(lambda: len(ours()) >= 2 * RECORDS, 60)
        collected = ours()
    lines = out.strip().splitlines()
    assert lines, f"the example host printed no summary (exit {process.returncode}): {err[-3000:]}"
    summary = json.loads(lines[-1])
    return RuntimeRun(summary, err.splitlines(), collected, process.returncode)


def test_the_runtime_ends_with_every_record_accounted_for(run: RuntimeRun) -> None:
    """Both runners exit cleanly and each plugin's counters balance with nothing lost."""
    assert run.returncode == 0, run.console[-20:]
    for plugin in PLUGINS:
        stats = run.summary["plugins"][plugin]
        assert stats["emitted"] == stats["exported"] == RECORDS, stats
        assert stats["dropped"] == {} and stats["uncounted"] == 0 and stats["pending"] == 0


@pytest.mark.parametrize(
    ("plugin", "loggers"),
    [
        ("oldplugin", ("plugin.oldplugin", "plugin.oldplugin.worker")),
        ("newplugin", ("plugin.newplugin.app", "plugin.newplugin.app.worker")),
    ],
)
def test_every_record_reaches_the_hosts_console_once(
    run: RuntimeRun, plugin: str, loggers: tuple[str, ...]
) -> None:
    """The host's console shows each record of each runner exactly once, on the plugin's loggers."""
    pattern = re.compile(
        rf"^({'|'.join(map(re.escape, loggers))}) (INFO|ERROR) (record \d+ of {plugin}( failed)?)$"
    )
    shown = [m.group(3) for m in map(pattern.match, run.console) if m]
    assert sorted(shown) == sorted(expected_bodies(plugin))


@pytest.mark.parametrize("plugin", PLUGINS)
def test_every_record_reaches_the_collector_on_its_plugins_resource(run: RuntimeRun, plugin: str) -> None:
    """The collector gets each record once, with service.name = the plugin and the runner's pid."""
    records = [r for r in run.collected if r["resource"]["service.name"] == plugin]
    assert sorted(r["body"] for r in records) == sorted(expected_bodies(plugin))
    pid = run.summary["plugins"][plugin]["pid"]
    for record in records:
        assert record["resource"]["plugin.name"] == plugin
        assert record["resource"]["service.namespace"] == "example-runtime"
        assert record["resource"]["process.pid"] == pid


@pytest.mark.parametrize("plugin", PLUGINS)
def test_exceptions_arrive_as_stack_traces(run: RuntimeRun, plugin: str) -> None:
    """log.exception() reaches the collector at ERROR with exception.stacktrace, on both paths."""
    failed = [
        r for r in run.collected if r["resource"]["service.name"] == plugin and r["body"].endswith("failed")
    ]
    assert len(failed) == RECORDS // 25
    for record in failed:
        assert record["severity_text"] == "ERROR" and record["severity_number"] == 17
        assert "ValueError: bad item" in record["attributes"]["exception.stacktrace"]
        assert "Traceback" not in record["body"]


def test_only_the_new_handler_carries_source_and_thread_attributes(run: RuntimeRun) -> None:
    """What the old payload lacks: the new runner's records have code.* and thread.* attributes, the old's none."""
    by_plugin = {p: [r for r in run.collected if r["resource"]["service.name"] == p] for p in PLUGINS}
    assert all(r["attributes"].get("code.function.name") == "run" for r in by_plugin["newplugin"])
    assert all("thread.name" in r["attributes"] for r in by_plugin["newplugin"])
    assert not any("code.function.name" in r["attributes"] for r in by_plugin["oldplugin"])


def test_a_malformed_legacy_batch_is_refused_with_a_reason_and_counted(run: RuntimeRun) -> None:
    """The old runner's bad batch: one bad_input 'malformed_batch', a one-line warning, an error reply."""
    assert run.summary["plugins"]["oldplugin"]["bad_input"] == {"malformed_batch": 1}
    assert run.summary["plugins"]["newplugin"]["bad_input"] == {}
    warnings = [line for line in run.console if line.startswith("otel_plugin_logs.bridge WARNING refused")]
    assert warnings == [
        "otel_plugin_logs.bridge WARNING refused input of plugin oldplugin from the host's RPC: "
        "malformed_batch: entries: Input should be a valid list"
    ]
    assert (
        "the host refused the bad batch: malformed_batch: entries: Input should be a valid list"
        in run.console
    )
