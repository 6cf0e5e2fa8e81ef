"""One record, one line, in a host's plain stdlib handler (issue 13, item 5)."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path

from helpers import PYTHON, write_plugin
from reliability_support import drained, wait_for

from otel_plugin_logs import HostLogBridge

FORGER = r"""
import logging
logging.basicConfig(level=logging.INFO)
log = logging.getLogger("forger")
log.info("hello\nCRITICAL:plugin.other:forged in a message")
try:
    raise ValueError("boom\nCRITICAL:plugin.other:forged\nERROR:root:forged too\n\rWARNING:x:y")
except ValueError:
    log.exception("it failed\nCRITICAL:plugin.other:forged in the exception's message")
"""

RECORD_START = re.compile(r"^[A-Z]+:[\w.]+:")


def test_a_plugin_exception_cannot_forge_lines_in_a_basicconfig_host(tmp_path: Path, host_env: Path) -> None:
    """Under the stdlib's BASIC_FORMAT, only the plugin's two records start a line; forged lines stay inside them, indented or escaped."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    plugin_logger = logging.getLogger("plugin")
    plugin_logger.addHandler(handler)
    level = plugin_logger.level
    plugin_logger.setLevel(logging.INFO)
    try:
        with HostLogBridge() as bridge:
            process = bridge.spawn_plugin("forger", [PYTHON, str(write_plugin(tmp_path, "forger", FORGER))])
            assert process.wait(60) == 0
            assert wait_for(lambda: drained(bridge, "forger"), 30)
    finally:
        plugin_logger.removeHandler(handler)
        plugin_logger.setLevel(level)
    lines = out.getvalue().splitlines()
    starts = [line for line in lines if RECORD_START.match(line)]
    assert [line.split(":", 2)[:2] for line in starts] == [
        ["INFO", "plugin.forger.forger"],
        ["ERROR", "plugin.forger.forger"],
    ], lines
    assert any("forged too" in line for line in lines)  # the text is shown, just not at the margin
