"""The demo's closing summary: what happened to every record of every plugin, from the bridge's counters."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from otel_plugin_logs.cli.terminal import UNICODE_SYMBOLS, Symbols
from otel_plugin_logs.conventions import GRAFANA_URL, JAEGER_URL


def plugin_kind(name: str) -> str:
    """The demo plugin an instance name runs: ``weather-2`` runs ``weather``."""
    return name.split("-", 1)[0]


@dataclass
class DemoRow:
    name: str
    emitted: int
    replayed: int
    shown: int
    exported: int
    discarded: int
    dropped: dict[str, int]
    pending: int
    uncounted: int
    restarts: int
    exits: tuple[int, ...]


@dataclass
class DemoSummary:
    rows: list[DemoRow]
    elapsed: float
    exporter: str
    destination: str
    settings: Any
    export_failing: bool
    last_export_error: str
    hidden: dict[str, int]
    interrupted: str = ""

    @classmethod
    def build(
        cls,
        stats: Any,
        bridge: Any,
        restarts: Mapping[str, int],
        shown: Mapping[str, int],
        hidden: Mapping[str, int],
        elapsed: float,
    ) -> DemoSummary:
        rows = [
            DemoRow(
                name=name,
                emitted=p.emitted,
                replayed=p.replayed,
                shown=shown.get(name, 0),
                exported=p.exported,
                discarded=p.discarded,
                dropped=dict(p.dropped),
                pending=p.pending,
                uncounted=p.uncounted,
                restarts=restarts.get(name, 0),
                exits=tuple(p.exits),
            )
            for name, p in stats.plugins.items()
        ]
        return cls(
            rows=rows,
            elapsed=elapsed,
            exporter=bridge.export_settings.exporter,
            destination=bridge.export_settings.destination(),
            settings=bridge.export_settings,
            export_failing=stats.export_failing,
            last_export_error=stats.last_export_error,
            hidden=dict(hidden),
        )

    @property
    def uncounted(self) -> int:
        return sum(abs(row.uncounted) for row in self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "elapsed_seconds": round(self.elapsed, 3),
            "interrupted_by": self.interrupted or None,
            "exporter": self.exporter,
            "destination": self.destination,
            "file_path": self.settings.file_path or None,
            "endpoint": self.settings.endpoint or None,
            "uncounted": self.uncounted,
            "plugins": {
                row.name: {
                    "emitted": row.emitted,
                    "replayed": row.replayed,
                    "shown_on_console": row.shown,
                    "exported": row.exported,
                    "discarded": row.discarded,
                    "dropped": row.dropped,
                    "pending": row.pending,
                    "uncounted": row.uncounted,
                    "restarts": row.restarts,
                    "exits": list(row.exits),
                }
                for row in self.rows
            },
        }

    def render(self, symbols: Symbols = UNICODE_SYMBOLS) -> str:
        headers = ("plugin", "emitted", "replayed", "shown", "exported", "dropped", "pending", "restarts")
        table: list[tuple[str, ...]] = []
        for row in self.rows:
            table.append(
                (
                    row.name,
                    f"{row.emitted:,}",
                    f"{row.replayed:,}",
                    f"{row.shown:,}",
                    f"{row.exported:,}",
                    f"{sum(row.dropped.values()):,}",
                    f"{row.pending:,}",
                    f"{row.restarts}",
                )
            )
        total = (
            "total",
            f"{sum(r.emitted for r in self.rows):,}",
            f"{sum(r.replayed for r in self.rows):,}",
            f"{sum(r.shown for r in self.rows):,}",
            f"{sum(r.exported for r in self.rows):,}",
            f"{sum(sum(r.dropped.values()) for r in self.rows):,}",
            f"{sum(r.pending for r in self.rows):,}",
            f"{sum(r.restarts for r in self.rows)}",
        )
        widths = [max(len(line[i]) for line in (headers, *table, total)) for i in range(len(headers))]

        def line(cells: Sequence[str]) -> str:
            first = f"  {cells[0]:<{widths[0]}}"
            return first + "".join(f"  {cell:>{widths[i]}}" for i, cell in enumerate(cells) if i)

        ended = f"interrupted by {self.interrupted}" if self.interrupted else "finished"
        out = [
            "",
            f"Summary: demo {ended} after {self.elapsed:.1f} s, {len(self.rows)} plugins",
            "",
            line(headers),
            line([symbols.rule * w for w in widths]),
            *(line(cells) for cells in table),
            line([symbols.rule * w for w in widths]),
            line(total),
            "",
        ]
        out.extend(self._notes(symbols))
        out.extend(self._where())
        out.append("")
        return "\n".join(out)

    def _notes(self, symbols: Symbols) -> list[str]:
        notes = []
        notes.append(
            "  emitted: logged by the plugin; replayed: into this host's logging; shown: on this "
            "console; exported: delivered to the destination below."
        )
        discarded = sum(r.discarded for r in self.rows)
        if discarded:
            notes.append(f"  not exported because export is off: {discarded:,} records (counted, not lost)")
        for row in self.rows:
            if row.dropped:
                reasons = ", ".join(f"{reason} {count:,}" for reason, count in sorted(row.dropped.items()))
                notes.append(f"  dropped by {row.name}: {reasons}")
        for row in self.rows:
            crashes = [code for code in row.exits if code != 0]
            if crashes:
                described = ", ".join(f"signal {-c}" if c < 0 else f"code {c}" for c in crashes)
                notes.append(f"  {row.name} exited with {described}; restarted {row.restarts} time(s)")
        if any(self.hidden.values()):
            sampled = ", ".join(f"{name} {count:,}" for name, count in sorted(self.hidden.items()) if count)
            notes.append(f"  not shown on the console (sampled, still exported): {sampled}")
        if self.uncounted:
            lost = ", ".join(f"{r.name} {r.uncounted:+,}" for r in self.rows if r.uncounted)
            notes.append(f"  {symbols.cross} records unaccounted for (a bug: please report it): {lost}")
        else:
            # The same rule as README's, whatever the terms are today (discarded is 0 unless export is off).
            notes.append(
                f"  {symbols.check} every record is accounted for: "
                "emitted = exported + discarded + dropped + pending"
            )
        if self.export_failing:
            notes.append(f"  {symbols.cross} export was failing at the end: {self.last_export_error}")
            notes.append("    run 'otel-plugin-logs doctor' to check the endpoint")
        return notes

    def _where(self) -> list[str]:
        settings = self.settings
        out = [""]
        if self.exporter == "file":
            out.append("  Records went to the OTLP/JSON file (appended; one export request per line):")
            out.append(f"    {settings.file_path}")
            quoted = shlex.quote(os.path.dirname(settings.file_path))
            out.append(
                f"  Read them: otel-plugin-logs logs {quoted}  (--plugin payments --level ERROR, -f, --stats)"
            )
            out.append(
                "  To see them in Grafana and Jaeger: docker compose up -d otel-collector loki jaeger grafana"
            )
            out.append("    then OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317 otel-plugin-logs demo")
        elif self.exporter == "otlp":
            out.append(f"  Records went to {self.destination}.")
            out.append(f"  If that is the compose stack: Grafana {GRAFANA_URL} (dashboard Plugin logs),")
            services = ", ".join(row.name for row in self.rows if plugin_kind(row.name) == "weather")
            out.append(f"    Jaeger {JAEGER_URL} (traces of {services or 'the plugins'})")
        else:
            out.append(f"  Records went to {self.destination}.")
        return out
