"""One plugin floods (issue #6, case 6): it is rate limited with exact notices; the others lose nothing."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

from helpers import PYTHON, CaptureHandler, write_plugin
from reliability_support import STEADY_RUNNER, CountingSink, describe, drained, settled, wait_for

from otel_plugin_logs import HostLogBridge

FLOOD = """
import json, logging, sys, time
from otel_plugin_logs import runner
logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False  # a plugin tuned for speed
handler = runner.installed_handler()
log = logging.getLogger("flood")
log.setLevel(logging.INFO)
info = log.info
count = int(sys.argv[2])
start = time.perf_counter()
for i in range(count):
    info("flood %d", i)
elapsed = time.perf_counter() - start
acked = handler.wait_acked(int(sys.argv[3]))  # suppressed records are acked too
complete = handler.shutdown()
with open(sys.argv[1], "w") as out:
    json.dump({"rate": count / elapsed, "acked": acked, **handler.stats()}, out)
"""

SUPPRESSED = re.compile(r"^suppressed (\d+) records of plugin (\S+) ")


def test_flooding_plugin_is_rate_limited_with_exact_notices_and_others_lose_nothing(
    tmp_path: Path, host_env: Path, record_property: Any
) -> None:
    """A 150k-record flood: suppressed beyond its budget, one 'suppressed N' notice per report with N exact; two steady plugins lose 0."""
    rate, burst, interval = 5000.0, 5000, 0.5
    flood_script = write_plugin(tmp_path, "flood", FLOOD)
    steady_script = write_plugin(tmp_path, "steady", STEADY_RUNNER)
    warnings = CaptureHandler()
    bridge_logger = logging.getLogger("otel_plugin_logs.bridge")
    bridge_logger.addHandler(warnings)
    sink = CountingSink()
    reports: list[list[str]] = []
    seen = 0

    def on_report(final: bool) -> None:
        nonlocal seen
        messages = [r.getMessage() for r in warnings.records[seen:]]
        seen += len(messages)
        reports.append([m for m in messages if "of plugin flood" in m])

    bridge = HostLogBridge(
        sink=sink,
        rate_limit_records_per_second=rate,
        rate_limit_burst_records=burst,
        report_interval_millis=int(interval * 1000),
        on_report=on_report,
    )
    bridge.start()
    try:
        calm = [
            bridge.spawn_plugin(
                name, [PYTHON, str(steady_script), str(tmp_path / f"{name}.json"), name, "300", "1500"]
            )
            for name in ("calm-a", "calm-b")
        ]
        started = time.monotonic()
        flood = bridge.spawn_plugin(
            "flood", [PYTHON, str(flood_script), str(tmp_path / "flood.json"), "150000", "1000"]
        )
        assert flood.wait(120) == 0
        assert all(process.wait(60) == 0 for process in calm)
        for name in ("flood", "calm-a", "calm-b"):
            assert wait_for(lambda name=name: drained(bridge, name), 60), name
        assert bridge.force_flush(10_000)
        live = bridge.stats().plugins["flood"]
        elapsed = time.monotonic() - started
    finally:
        bridge.shutdown(5000)
        bridge_logger.removeHandler(warnings)
    stats = bridge.stats()
    flood_stats = stats.plugins["flood"]
    runner = json.loads((tmp_path / "flood.json").read_text())
    record_property("flood_emit_rate", round(runner["rate"]))
    record_property("flood_dropped", flood_stats.dropped)
    record_property("flood_exported", flood_stats.exported)

    suppressed = flood_stats.dropped.get("rate_limited", 0)
    assert suppressed > 0, describe(flood_stats)
    assert flood_stats.emitted == runner["accepted"] == 150_000
    assert settled(flood_stats) and flood_stats.exported + flood_stats.dropped_total == 150_000, describe(
        flood_stats
    )
    assert flood_stats.exported <= burst + rate * elapsed  # the budget, measured generously
    assert live.exported == flood_stats.exported

    per_report = [[int(m.group(1)) for n in call if (m := SUPPRESSED.match(n))] for call in reports]
    assert all(len(counts) <= 1 for counts in per_report), reports  # at most one notice per interval
    notices = [count for counts in per_report for count in counts]
    assert sum(notices) == suppressed  # N exact: the notices add up to every suppressed record
    exported_counts = [
        a["bridge.count"] for p, a in sink.notices if p == "flood" and a["bridge.event"] == "suppressed"
    ]
    assert exported_counts == notices[: len(exported_counts)]  # the notice after shutdown is only logged
    assert exported_counts, "the suppression notices are exported on the plugin's resource"

    for name in ("calm-a", "calm-b"):
        calm_stats = stats.plugins[name]
        assert calm_stats.emitted == calm_stats.exported == 1500 and calm_stats.dropped == {}, describe(
            calm_stats
        )
        assert sink.unique(name) == set(range(1, 1501))
        assert json.loads((tmp_path / f"{name}.json").read_text())["dropped"] == {}


def test_every_record_of_a_flood_is_acknowledged(tmp_path: Path, host_env: Path) -> None:
    """Suppressed records are settled too: the flooding runner ends with nothing unacknowledged."""
    flood_script = write_plugin(tmp_path, "flood", FLOOD)
    with HostLogBridge(
        sink=CountingSink(), rate_limit_records_per_second=100, rate_limit_burst_records=100
    ) as bridge:
        flood = bridge.spawn_plugin(
            "flood", [PYTHON, str(flood_script), str(tmp_path / "flood.json"), "5000", "3000"]
        )
        assert flood.wait(120) == 0
    runner = json.loads((tmp_path / "flood.json").read_text())
    assert runner["acked_seq"] == runner["accepted"] == 5000 and runner["unacked_bytes"] == 0, runner
