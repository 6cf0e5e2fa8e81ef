"""What `HostLogBridge` does to the plugins it spawned: stopped at shutdown, settled by `wait()`."""

from __future__ import annotations

import signal
from pathlib import Path

import psutil
import pytest
from helpers import PYTHON, CaptureHandler, process_gone, wait_until, write_plugin

from otel_plugin_logs import HostLogBridge
from otel_plugin_logs.testing import MemorySink

FOREVER = """
import logging, time
logging.getLogger("forever").warning("started")
while True:
    time.sleep(0.05)
"""

STUBBORN = """
import logging, signal, time
log = logging.getLogger("stubborn")
signal.signal(signal.SIGTERM, lambda *_: log.warning("SIGTERM ignored"))
log.warning("started")
while True:
    time.sleep(0.05)
"""


def test_leaving_the_with_block_stops_a_running_plugin(tmp_path: Path, capture: CaptureHandler) -> None:
    """A plugin still running when the `with HostLogBridge()` block ends is terminated and reaped."""
    script = write_plugin(tmp_path, "forever", FOREVER)
    with HostLogBridge(sink=MemorySink()) as bridge:
        process = bridge.spawn_plugin("forever", [PYTHON, str(script)])
        assert capture.wait_for(lambda records: any(r.getMessage() == "started" for r in records))
    assert process_gone(process.pid)
    assert bridge.stats().plugins["forever"].exits == (-signal.SIGTERM,)


def test_shutdown_kills_a_plugin_that_ignores_sigterm(
    tmp_path: Path, capture: CaptureHandler, caplog: pytest.LogCaptureFixture
) -> None:
    """A plugin ignoring SIGTERM gets SIGKILL after the kill timeout; shutdown says so."""
    script = write_plugin(tmp_path, "stubborn", STUBBORN)
    bridge = HostLogBridge(sink=MemorySink(), kill_timeout_millis=300).start()
    process = bridge.spawn_plugin("stubborn", [PYTHON, str(script)])
    assert capture.wait_for(lambda records: any(r.getMessage() == "started" for r in records))
    bridge.shutdown(10_000)
    assert process_gone(process.pid) and process.killed
    assert any("killed them (SIGKILL): stubborn" in r.getMessage() for r in caplog.records)
    assert any(r.getMessage() == "SIGTERM ignored" for r in capture.records)


def test_shutdown_reaches_the_plugins_own_children(tmp_path: Path) -> None:
    """A spawned plugin has its own process group: shutdown stops the processes it started too."""
    pid_file = tmp_path / "grandchild.pid"
    script = write_plugin(
        tmp_path,
        "parent",
        f"""
    import subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    open({str(pid_file)!r}, "w").write(str(child.pid))
    child.wait()
    """,
    )
    with HostLogBridge(sink=MemorySink()) as bridge:
        bridge.spawn_plugin("parent", [PYTHON, str(script)])
        assert wait_until(lambda: pid_file.exists() and pid_file.read_text() != "", 60)
    grandchild = int(pid_file.read_text())
    try:
        assert wait_until(lambda: process_gone(grandchild), 10)
    finally:
        if not process_gone(grandchild):
            psutil.Process(grandchild).kill()


def test_wait_returns_when_everything_the_plugin_sent_is_settled(tmp_path: Path) -> None:
    """Right after `PluginProcess.wait()`, stats show every record of the plugin exported, none pending."""
    script = write_plugin(
        tmp_path,
        "quick",
        """
    import logging
    log = logging.getLogger("quick")
    log.setLevel(logging.INFO)
    for i in range(300):
        log.info("record %d", i)
    """,
    )
    sink = MemorySink()
    with HostLogBridge(sink=sink, export_schedule_delay_millis=2000) as bridge:
        for _ in range(3):
            process = bridge.spawn_plugin("quick", [PYTHON, str(script)])
            assert process.wait(60) == 0
            stats = bridge.stats().plugins["quick"]
            assert stats.pending == 0 and stats.exported == stats.emitted
        assert len(sink.entries("quick")) == 900


def test_wait_for_a_plugin_that_still_runs_returns_none(tmp_path: Path) -> None:
    """`wait(timeout)` on a running plugin returns None once the timeout is over."""
    script = write_plugin(tmp_path, "forever", FOREVER)
    with HostLogBridge(sink=MemorySink()) as bridge:
        process = bridge.spawn_plugin("forever", [PYTHON, str(script)])
        assert process.wait(0.2) is None and process.running


def test_wait_does_not_wait_for_a_failing_exporter(tmp_path: Path) -> None:
    """With the exporter failing, wait() returns at the exit; the records stay pending in the export queue."""
    script = write_plugin(tmp_path, "quick", "import logging\nlogging.getLogger('q').warning('one')\n")
    sink = MemorySink()
    sink.fail = True
    # A settling that waited for this exporter would block for the whole (huge) shutdown timeout.
    with HostLogBridge(sink=sink, shutdown_timeout_millis=3_600_000) as bridge:
        process = bridge.spawn_plugin("quick", [PYTHON, str(script)])
        assert process.wait() == 0
        assert bridge.stats().plugins["quick"].pending == 1
        sink.fail = False
        assert wait_until(lambda: bridge.stats().plugins["quick"].exported == 1, 60)
