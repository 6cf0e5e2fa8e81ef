"""Counters of the bridge, per plugin, and the snapshot ``HostLogBridge.stats()`` returns."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

MAX_EXITS_KEPT = 256  # exit codes kept per plugin: a plugin restarted forever must not grow the host


@dataclass
class PluginCounters:
    """Mutable counters of one plugin, updated under the bridge's lock."""

    # Of runner streams that ended and were released: what they accepted and what they dropped.
    retired_emitted: int = 0
    retired_dropped: Counter[str] = field(default_factory=Counter)
    received: int = 0  # unique records that reached the host
    # Records received twice: after a reconnect (discarded), or after a host restart when the
    # killed host may already have exported them (exported again: delivery is at least once).
    duplicates: int = 0
    replayed: int = 0
    exported: int = 0
    discarded: int = 0  # not exported because export is off (OTEL_LOGS_EXPORTER=none)
    host_dropped: Counter[str] = field(default_factory=Counter)
    stderr_lines: int = 0
    stderr_suppressed: int = 0
    connections: int = 0
    bad_input: Counter[str] = field(default_factory=Counter)
    exits: deque[int] = field(default_factory=lambda: deque(maxlen=MAX_EXITS_KEPT))
    notices: int = 0


@dataclass(frozen=True)
class PluginStats:
    """A snapshot of one plugin's counters.

    ``dropped`` merges the runner's reasons (prefixed ``runner_``) and the host's. The
    invariant the tests check is ``emitted == exported + discarded + dropped_total + pending``.
    """

    name: str
    emitted: int
    received: int
    duplicates: int
    replayed: int
    exported: int
    discarded: int
    dropped: dict[str, int]
    pending: int
    stderr_lines: int
    connections: int
    bad_input: dict[str, int]
    exits: tuple[int, ...]  # of its runners spawned by the bridge, the last 256
    notices: int = 0  # the bridge's own records (drop warnings, exits) exported on this plugin's resource

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @property
    def uncounted(self) -> int:
        """Records emitted that are neither delivered, dropped with a reason, nor pending."""
        return self.emitted - self.exported - self.discarded - self.dropped_total - self.pending


@dataclass(frozen=True)
class BridgeStats:
    """A snapshot of the whole bridge."""

    plugins: dict[str, PluginStats]
    exporter: str
    queue_records: int
    queue_bytes: int
    export_failing: bool
    last_export_error: str
    rejected_connections: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "exporter": self.exporter,
            "queue_records": self.queue_records,
            "queue_bytes": self.queue_bytes,
            "export_failing": self.export_failing,
            "last_export_error": self.last_export_error,
            "rejected_connections": dict(self.rejected_connections),
            "plugins": {
                name: {
                    "emitted": p.emitted,
                    "received": p.received,
                    "duplicates": p.duplicates,
                    "replayed": p.replayed,
                    "exported": p.exported,
                    "discarded": p.discarded,
                    "dropped": dict(p.dropped),
                    "pending": p.pending,
                    "uncounted": p.uncounted,
                    "stderr_lines": p.stderr_lines,
                    "connections": p.connections,
                    "bad_input": dict(p.bad_input),
                    "exits": list(p.exits),
                    "notices": p.notices,
                }
                for name, p in self.plugins.items()
            },
        }
