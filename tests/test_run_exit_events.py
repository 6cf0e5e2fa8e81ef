"""How `run` and the bridge end after a plugin's last record: on events, never on a timer (see also cli/)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from helpers import PYTHON, wait_until, write_plugin

from otel_plugin_logs import HostLogBridge
from otel_plugin_logs.testing import MemorySink

# Says bye (uninstall: everything sent, the connection closed), then waits for a line on stdin.
BYE_THEN_WAIT = """
import logging, sys
from otel_plugin_logs import runner
logging.getLogger("held").warning("last record")
runner.uninstall()
sys.stdin.readline()
"""

# Waits until its records are acknowledged, with its connection still open, then for a line
# on stdin; says bye only at its exit.
ACKED_THEN_WAIT = """
import logging, sys
from otel_plugin_logs import runner
logging.getLogger("open").warning("last record")
runner.installed_handler().wait_acked(60_000)
open(sys.argv[1], "w").write("acked")
sys.stdin.readline()
"""

QUICK = """
import logging
log = logging.getLogger("quick")
log.setLevel(logging.INFO)
for i in range(20):
    log.info("record %d", i)
"""


def test_records_settled_comes_with_the_bye_before_the_process_ends(tmp_path: Path) -> None:
    """A runner that said bye has its records settled while its process still runs."""
    script = write_plugin(tmp_path, "held", BYE_THEN_WAIT)
    sink = MemorySink()
    with HostLogBridge(sink=sink) as bridge:
        process = bridge.spawn_plugin("held", [PYTHON, str(script)], stdin=subprocess.PIPE)
        assert process.records_settled.wait(60)
        assert process.running
        assert [e.body for e in sink.entries("held")] == ["last record"]
        assert process.popen.stdin is not None
        process.popen.stdin.close()
        assert process.wait(60) == 0


def test_records_settled_waits_for_the_bye(tmp_path: Path) -> None:
    """Acknowledged records of an open connection are not `records_settled`; the exit's bye is."""
    script = write_plugin(tmp_path, "open", ACKED_THEN_WAIT)
    marker = tmp_path / "acked"
    with HostLogBridge(sink=MemorySink()) as bridge:
        process = bridge.spawn_plugin("open", [PYTHON, str(script), str(marker)], stdin=subprocess.PIPE)
        assert wait_until(marker.exists, 60)
        assert not process.records_settled.is_set()
        assert process.popen.stdin is not None
        process.popen.stdin.close()
        assert process.wait(60) == 0
        assert process.records_settled.is_set()


def test_run_does_not_wait_for_the_schedule_delays(tmp_path: Path, host_env: Path) -> None:
    """With the runner's and the exporter's schedule delays at 60 s, `run` still exports all and exits."""
    script = write_plugin(tmp_path, "quick", QUICK)
    env = {
        **os.environ,
        "OTEL_PLUGIN_LOGS_EXPORT_SCHEDULE_DELAY_MILLIS": "60000",
        "OTEL_PLUGIN_LOGS_RUNNER_SCHEDULE_DELAY_MILLIS": "60000",
    }
    argv = [PYTHON, "-m", "otel_plugin_logs", "run", "--stats", "-p", "quick", "--", PYTHON, str(script)]
    # Well within one of the delays: a shutdown that waited for either would time out here.
    result = subprocess.run(argv, capture_output=True, text=True, timeout=45, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "exported 20, discarded 0, dropped 0 (none), pending 0" in result.stderr


def test_run_shows_each_record_once_before_the_summary(tmp_path: Path, host_env: Path) -> None:
    """The console's held records show once (shown early or at the end), all before the stats line."""
    script = write_plugin(tmp_path, "quick", QUICK)
    argv = [PYTHON, "-m", "otel_plugin_logs", "run", "--stats", "-p", "quick", "--", PYTHON, str(script)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stderr.splitlines()
    shown = [line for line in lines if "record " in line and "quick" in line]
    assert [line.rsplit("record ", 1)[1] for line in shown] == [str(i) for i in range(20)]
    summary = next(i for i, line in enumerate(lines) if line.startswith("plugin quick: emitted 20"))
    assert summary > lines.index(shown[-1])
