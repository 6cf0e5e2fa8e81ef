"""The bridge's own voice: rate-limited warnings, drop reports, and the notices it exports.

One WARNING per plugin per report interval for new drops, and the same text exported as a
record of the plugin's resource. The bridge's logger is never one a replayed record passes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.conventions import (
    BRIDGE_COUNT_ATTRIBUTE,
    BRIDGE_EVENT_ATTRIBUTE,
    BRIDGE_REASON_ATTRIBUTE,
    BRIDGE_SCOPE_NAME,
)
from otel_plugin_logs.export.items import Item
from otel_plugin_logs.export.otlp import Entry
from otel_plugin_logs.export.pipeline import ExportPipeline
from otel_plugin_logs.host.ledger import Ledger
from otel_plugin_logs.host.stats import BridgeStats, PluginStats
from otel_plugin_logs.host.streams import DROP_GAP, DROP_RATE_LIMITED, PluginState
from otel_plugin_logs.wire.records import INT64_MAX

_log = logging.getLogger("otel_plugin_logs.bridge")

ReportHook = Callable[[bool], None]  # called after each report, with ``final``


@dataclass(frozen=True, slots=True)
class Notice:
    """One drop report of one plugin: logged, and exported on the plugin's resource."""

    plugin: PluginState
    event: str  # dropped, gap, suppressed, runner_exit
    reason: str
    count: int
    text: str


class Reporter:
    def __init__(
        self,
        config: HostConfig,
        lock: threading.RLock,
        ledger: Ledger,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_report: ReportHook | None = None,
    ) -> None:
        self._config = config
        self._lock = lock
        self._ledger = ledger
        self._clock = clock
        self._on_report = on_report
        self._warned: dict[tuple[str, str], float] = {}
        self.pipeline: ExportPipeline | None = None  # set once the bridge has started
        self.sink_description = ""

    @property
    def interval_seconds(self) -> float:
        return self._config.report_interval_millis / 1000.0

    def warn_once(self, plugin: str, reason: str, message: str, *args: Any) -> None:
        """The bridge's own warnings, at most one per plugin and reason per report interval."""
        now = self._clock()
        with self._lock:
            last = self._warned.get((plugin, reason))
            if last is not None and now - last < self.interval_seconds:
                return
            self._warned[(plugin, reason)] = now
        _log.warning(message, *args)

    def report(self, *, final: bool) -> None:
        """Log and export what was dropped since the last report; say so while export fails."""
        for notice in self._new_drops():
            _log.warning("%s", notice.text)
            self.export_notice(notice)
        if not final:
            self._warn_failing_export()
        if self._on_report is not None:
            self._on_report(final)

    def _new_drops(self) -> list[Notice]:
        notices = []
        with self._lock:
            for plugin in self._ledger.plugins.values():
                totals = self._ledger.dropped_totals(plugin)
                for reason, total in sorted(totals.items()):
                    delta = total - plugin.reported[reason]
                    if delta > 0:
                        plugin.reported[reason] = total
                        notices.append(self._drop_notice(plugin, reason, delta))
        return notices

    def _drop_notice(self, plugin: PluginState, reason: str, delta: int) -> Notice:
        if reason == DROP_RATE_LIMITED:
            rate = self._config.rate_limit_records_per_second
            text = f"suppressed {delta} records of plugin {plugin.name} (rate limit {rate:g} records/s)"
            return Notice(plugin, "suppressed", reason, delta, text)
        event = "gap" if reason == DROP_GAP else "dropped"
        return Notice(
            plugin, event, reason, delta, f"dropped {delta} records of plugin {plugin.name}: {reason}"
        )

    def _warn_failing_export(self) -> None:
        pipeline = self.pipeline
        if pipeline is None or pipeline.failing_since is None:
            return
        waiting, _ = pipeline.depth()
        _log.warning(
            "export to %s failing for %.0f s (%s); %d records waiting",
            self.sink_description,
            time.monotonic() - pipeline.failing_since,
            pipeline.last_error,
            waiting,
        )

    def export_notice(self, notice: Notice) -> None:
        pipeline = self.pipeline
        resource = notice.plugin.last_resource
        if pipeline is None or resource is None:
            return
        now = time.time_ns()
        entry = Entry(
            0,
            now,
            now,
            13,
            "WARNING",
            notice.text,
            BRIDGE_SCOPE_NAME,
            {
                BRIDGE_EVENT_ATTRIBUTE: notice.event,
                BRIDGE_REASON_ATTRIBUTE: notice.reason,
                BRIDGE_COUNT_ATTRIBUTE: max(0, min(notice.count, INT64_MAX)),  # an OTLP int is 64-bit
            },
            None,
            None,
            0,
            event_name=f"{BRIDGE_SCOPE_NAME}.{notice.event}",
        )
        if pipeline.offer([Item.of(resource, entry)]):
            _log.debug("bridge notice not exported (export queue full or stopped): %s", notice.text)
            return
        with self._lock:
            notice.plugin.counters.notices += 1


def bridge_stats(
    ledger: Ledger,
    pipeline: ExportPipeline | None,
    depth: tuple[int, int],
    exporter: str,
    rejected: Mapping[str, int],
) -> BridgeStats:
    """A snapshot of every counter (ledger lock held; ``depth`` is the export queue's, read before)."""
    return BridgeStats(
        plugins={name: plugin_stats(ledger, plugin) for name, plugin in ledger.plugins.items()},
        exporter=exporter,
        queue_records=depth[0],
        queue_bytes=depth[1],
        export_failing=pipeline is not None and pipeline.failing_since is not None,
        last_export_error=pipeline.last_error if pipeline is not None else "",
        rejected_connections=dict(rejected),
    )


def plugin_stats(ledger: Ledger, plugin: PluginState) -> PluginStats:
    counters = plugin.counters
    dropped = ledger.dropped_totals(plugin)
    emitted = counters.retired_emitted
    in_runner = 0
    for stream in plugin.streams.values():
        emitted += stream.accepted - stream.base
        if not stream.closed:
            in_runner += stream.in_runner
    return PluginStats(
        name=plugin.name,
        emitted=emitted,
        received=counters.received,
        duplicates=counters.duplicates,
        replayed=counters.replayed,
        exported=counters.exported,
        discarded=counters.discarded,
        dropped={k: v for k, v in dropped.items() if v},
        pending=plugin.pending + in_runner,
        stderr_lines=counters.stderr_lines,
        connections=counters.connections,
        bad_input=dict(counters.bad_input),
        exits=tuple(counters.exits),
        notices=counters.notices,
    )
