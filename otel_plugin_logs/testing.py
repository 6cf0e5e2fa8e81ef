"""Test doubles for code built on otel-plugin-logs (as httpx has ``MockTransport``).

``MemorySink`` stands in for the export destination of a ``HostLogBridge``::

    from otel_plugin_logs import HostLogBridge
    from otel_plugin_logs.testing import MemorySink

    sink = MemorySink()
    with HostLogBridge(sink=sink) as bridge:
        bridge.spawn_plugin("weather", [sys.executable, "weather.py"]).wait()
    assert any(entry.body == "forecast ready" for entry in sink.entries("weather"))

``InMemoryTransport`` stands in for the host on the runner's side: a ``RunnerLogHandler``
given one keeps the frames it would have sent.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import NamedTuple

from otel_plugin_logs.conventions import RESOURCE_PLUGIN_NAME
from otel_plugin_logs.export.items import Item
from otel_plugin_logs.export.otlp import Entry, ResourceInfo
from otel_plugin_logs.export.sinks import Outcome
from otel_plugin_logs.runner.transport import InMemoryTransport

__all__ = ["ExportedRecord", "InMemoryTransport", "MemorySink"]


class ExportedRecord(NamedTuple):
    """One record a ``MemorySink`` was given, with the resource of its plugin."""

    resource: ResourceInfo
    entry: Entry


class MemorySink:
    """A ``Sink`` keeping every record it is given, in order, in ``items``.

    Set ``fail`` to make exports fail (retryably: the bridge keeps the batch and retries;
    with ``permanent`` too, the batch is refused for good and dropped). ``attempts`` counts
    every export call, failed or not. Safe to read from the test while the bridge exports.
    """

    description = "memory"

    def __init__(self) -> None:
        self.items: list[ExportedRecord] = []
        self.fail = False
        self.permanent = False
        self.attempts = 0
        self._lock = threading.Lock()

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome:
        with self._lock:
            self.attempts += 1
            if self.fail:
                error = "memory sink told to fail"
                return Outcome.rejected(error) if self.permanent else Outcome.errored(error)
            self.items.extend(ExportedRecord(item.resource, item.entry) for item in items)
        return Outcome.delivered()

    def shutdown(self) -> None:
        return None

    def entries(self, plugin: str | None = None, *, records_only: bool = True) -> list[Entry]:
        """The records kept, of one plugin or all; ``records_only``: without the bridge's notices
        and the plugins' stderr lines (their sequence number is 0)."""
        with self._lock:
            return [
                record.entry
                for record in self.items
                if (plugin is None or record.resource.attributes.get(RESOURCE_PLUGIN_NAME) == plugin)
                and (not records_only or record.entry.seq > 0)
            ]
