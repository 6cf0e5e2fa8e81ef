"""Fixtures of the reliability suite: a host bridge with a memory sink, text output, an honest bystander."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import PYTHON, CaptureHandler, MemorySink, write_plugin
from reliability_support import BYSTANDER, TEXT_FORMAT, Host

from otel_plugin_logs import HostLogBridge, PluginProcess


@pytest.fixture
def host(host_env: Path, capture: CaptureHandler) -> Iterator[Host]:
    """A started bridge with a MemorySink, a plain-text handler on `plugin` and a handler seeing every record."""
    text = io.StringIO()
    text_handler = logging.StreamHandler(text)
    text_handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    plugin_logger = logging.getLogger("plugin")
    plugin_logger.addHandler(text_handler)
    everything = CaptureHandler()
    root = logging.getLogger()
    root.addHandler(everything)
    sink = MemorySink()
    bridge = HostLogBridge(sink=sink)
    bridge.start()
    try:
        yield Host(bridge, sink, text, everything)
    finally:
        bridge.shutdown(5000)
        root.removeHandler(everything)
        plugin_logger.removeHandler(text_handler)


@pytest.fixture
def bystander(host: Host, tmp_path: Path) -> PluginProcess:
    """An honest plugin logging 200 records while the test misbehaves next to it."""
    script = write_plugin(tmp_path, "bystander", BYSTANDER)
    return host.bridge.spawn_plugin("bystander", [PYTHON, str(script)])
