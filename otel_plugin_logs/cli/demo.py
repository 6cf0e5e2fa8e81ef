"""``otel-plugin-logs demo`` (a host with realistic plugins) and ``otel-plugin-logs doctor``.

The demo is what a new user runs first, so it starts fast, ends by itself and finishes with a
table of what happened to every record, from the bridge's own counters. ``doctor`` prints the
resolved configuration with the origin of each value and tries the configured destination.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import secrets
import shlex
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Final

from otel_plugin_logs.cli.terminal import UNICODE_SYMBOLS, StatusLine, Symbols, safe_output, symbols_for
from otel_plugin_logs.config.resource import with_resource_attributes
from otel_plugin_logs.config.settings import ConfigError, HostConfig, RunnerConfig, describe, resolve
from otel_plugin_logs.conventions import DEFAULT_HOST_SERVICE_NAME, GRAFANA_URL, JAEGER_URL

_log = logging.getLogger("otel_plugin_logs.demo")

# name -> what it shows; the module otel_plugin_logs.demo_plugins.<name> is the plugin.
CATALOGUE: Final = {
    "weather": "forecasts inside OpenTelemetry spans: records carry trace ids, spans go to Jaeger",
    "inventory": "structured events (structlog's event dict when structlog is installed)",
    "payments": "exceptions with their cause; crashes once and is restarted",
    "crawler": "bursts of hundreds of records; sampled on the console, all exported",
}
_INSTANCE: Final = re.compile(r"^(?P<kind>[a-z]+)(?:-(?P<n>[1-9][0-9]{0,3}))?$")
DEFAULT_DURATION: Final = 12.0
DEFAULT_RATE: Final = 5.0
_CRASH_AFTER_UNTIL_STOPPED: Final = 20.0  # when the demo runs until Ctrl-C
_MAX_RESTARTS: Final = 3
_RESTART_DELAY_SECONDS: Final = 0.5
_STOP_GRACE_SECONDS: Final = 5.0
_TICK_SECONDS: Final = 0.1
_PROGRESS_SECONDS: Final = 0.5
_CONSOLE_LINES_PER_SECOND: Final = 4.0
_CONSOLE_STACK_LINES: Final = 20
# Longer than the runners' batch delay (50 ms, set below) plus a loaded machine's lag: stderr
# lines and the records logged before them show in the order they happened.
_CONSOLE_REORDER_MILLIS: Final = 300

_DEMO_DESCRIPTION: Final = """\
Start a host bridge and several plugin runners (real subprocesses, spawned with
HostLogBridge.spawn_plugin, so their log handler is installed automatically). Their logs stream
into this console and are exported: to the embedded OTLP/JSON file by default, to
OTEL_EXPORTER_OTLP_ENDPOINT (or --endpoint) when set. The demo ends by itself after --duration
seconds (or on Ctrl-C / SIGTERM: it stops the plugins, flushes, and still prints the summary),
with a table of what happened to every record of every plugin.

plugins:
""" + "".join(f"  {name:<10} {text}\n" for name, text in CATALOGUE.items())

_DEMO_EXIT: Final = """\
exit status: 0 when every record is accounted for (exported, or dropped and counted), 1 when
records were lost without being counted, 2 for invalid options or configuration.

console: coloured on a terminal unless NO_COLOR is set, with a live line of records/s and
queue depth; plain text, without the live line, when the output is not a terminal. The
weather plugin exports its spans itself to OTEL_EXPORTER_OTLP_ENDPOINT (or --endpoint).

"""

_DOCTOR_DESCRIPTION: Final = """\
Print the resolved configuration, each setting with where its value came from (argument,
environment variable, default), then check it: the settings parse, the runtime directory is
usable, and the export destination works (an OTLP endpoint must accept a test record; the
file sink's directory must be writable). Says what to fix when a check fails.
"""

_DOCTOR_EXIT: Final = """\
exit status: 0 when every check passed, 1 when the destination is unreachable or unusable,
2 when the configuration is invalid.

"""


# --- argument parsers -------------------------------------------------------------------------


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):  # also refuses NaN
        raise argparse.ArgumentTypeError(f"{text!r} must be a number > 0")
    return value


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0 seconds (0: until Ctrl-C)")
    return value


def add_demo_parser(commands: Any, epilog: str) -> None:
    demo = commands.add_parser(
        "demo",
        help="run a demo host with several plugins; ends by itself with a summary",
        description=_DEMO_DESCRIPTION,
        epilog=_DEMO_EXIT + epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--plugins",
        default="all",
        metavar="NAMES|COUNT",
        help=(
            "which plugins to run: comma-separated names from the list above (a suffix -2, -3... "
            "runs another instance), a count (cycles through the list), or 'all' (default)"
        ),
    )
    demo.add_argument(
        "--duration",
        type=_duration,
        default=DEFAULT_DURATION,
        metavar="SECONDS",
        help=f"how long to run (default {DEFAULT_DURATION:g}); 0: until Ctrl-C or SIGTERM",
    )
    demo.add_argument(
        "--rate",
        type=_positive_float,
        default=DEFAULT_RATE,
        metavar="RECORDS",
        help=f"records/s of each normal plugin (default {DEFAULT_RATE:g}); crawler bursts 100x that",
    )
    demo.add_argument("--seed", type=int, help="seed of the plugins' random choices (default: a new one)")
    demo.add_argument("--endpoint", help="OTLP endpoint (overrides OTEL_EXPORTER_OTLP_ENDPOINT)")
    demo.add_argument("--protocol", choices=("grpc", "http/protobuf", "http/json"), help="OTLP protocol")
    demo.add_argument("--level", default="INFO", help="lowest level shown on the console (default INFO)")
    demo.add_argument(
        "--summary-json", metavar="FILE", help="also write the summary as JSON to FILE (for scripts)"
    )
    demo.set_defaults(handler=run_demo)


def add_doctor_parser(commands: Any, epilog: str) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="print the resolved configuration and check the export destination",
        description=_DOCTOR_DESCRIPTION,
        epilog=_DOCTOR_EXIT + epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    doctor.add_argument("--endpoint", help="OTLP endpoint to check (overrides OTEL_EXPORTER_OTLP_ENDPOINT)")
    doctor.add_argument("--protocol", choices=("grpc", "http/protobuf", "http/json"), help="OTLP protocol")
    doctor.add_argument(
        "--timeout",
        type=_positive_float,
        default=3.0,
        metavar="SECONDS",
        help="how long the test record may take (default 3)",
    )
    doctor.add_argument(
        "--no-send", action="store_true", help="do not send a test record, only show the configuration"
    )
    doctor.set_defaults(handler=run_doctor)


# --- the demo -------------------------------------------------------------------------------


def plugin_names(spec: str) -> list[str]:
    """The plugin instances to run: 'all', a count, or comma-separated names (kind or kind-N)."""
    kinds = list(CATALOGUE)
    text = spec.strip().lower()
    if text in ("", "all"):
        return kinds
    if text.isdigit():
        count = int(text)
        if not 1 <= count <= 64:
            raise ValueError(f"--plugins {spec}: a count must be between 1 and 64")
        return [
            kinds[i % len(kinds)] + (f"-{i // len(kinds) + 1}" if i >= len(kinds) else "")
            for i in range(count)
        ]
    names = [part.strip() for part in text.split(",") if part.strip()]
    for name in names:
        match = _INSTANCE.match(name)
        if match is None or match["kind"] not in CATALOGUE:
            raise ValueError(f"--plugins: unknown plugin {name!r}; choose from {', '.join(kinds)}")
    if len(set(names)) != len(names):
        raise ValueError("--plugins: a name appears twice (use weather-2 for a second weather)")
    return names


def _kind(name: str) -> str:
    match = _INSTANCE.match(name)
    return match["kind"] if match else name


@dataclass
class _Slot:
    """One plugin instance of the demo and its current runner process."""

    name: str
    argv: list[str]
    crash_after: float
    process: Any = None
    starts: int = 0
    restart_at: float | None = None
    finished: bool = False  # exited 0 on its own, or gave up after too many restarts


@dataclass
class _Stop:
    """Set from signal handlers: a flag, because taking a lock there could deadlock."""

    requested: str = ""
    hurry: bool = False

    def __call__(self, signum: int, _frame: object) -> None:
        if self.requested:
            self.hurry = True
        self.requested = signal.Signals(signum).name


class _Demo:
    def __init__(self, args: argparse.Namespace, names: list[str], level: int) -> None:
        from otel_plugin_logs.cli.console import install_console
        from otel_plugin_logs.host.bridge import HostLogBridge

        self.args = args
        self.names = names
        self.duration: float = args.duration
        self.rate: float = args.rate
        self.seed: int = args.seed if args.seed is not None else secrets.randbelow(100_000)
        self.bridge = HostLogBridge(otlp_endpoint=args.endpoint, otlp_protocol=args.protocol)
        self.status = StatusLine(sys.stderr)
        self.console = install_console(
            level,
            sys.stderr,
            status=self.status,
            # Normal plugins stay below it; a burst shows its first lines, then a count.
            max_lines_per_second=max(_CONSOLE_LINES_PER_SECOND, 2 * args.rate),
            plugin_width=max(8, *(len(name) for name in names)),
            max_stack_lines=_CONSOLE_STACK_LINES,
            reorder_millis=_CONSOLE_REORDER_MILLIS,
        )
        self.stop = _Stop()
        self.slots: list[_Slot] = []
        self.restarts: dict[str, int] = dict.fromkeys(names, 0)
        self.started = 0.0
        self.elapsed = 0.0

    # --- running ------------------------------------------------------------------------

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.bridge.start()
            self._announce()
            self.started = time.monotonic()
            self.slots = [self._slot(name) for name in self.names]
            for slot in self.slots:
                self._spawn(slot)
            self._supervise()
            self.elapsed = time.monotonic() - self.started
            self._stop_plugins()
            stats = self._shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.console.flush()  # what is held for ordering, before the last note and the summary
        self.status.clear()
        self.console.announce_hidden()
        self.console.flush()
        summary = _Summary.build(
            stats, self.bridge, self.restarts, self.console.shown, self.console.hidden, self.elapsed
        )
        summary.interrupted = self.stop.requested
        out = safe_output(sys.stdout)
        print(summary.render(symbols_for(out)), file=out, flush=True)
        if self.args.summary_json:
            with open(self.args.summary_json, "w", encoding="utf-8") as out:
                json.dump(summary.as_dict(), out, indent=2)
        return 1 if summary.uncounted else 0

    def _announce(self) -> None:
        length = "until Ctrl-C" if self.duration == 0 else f"for {self.duration:g} s"
        _log.info(
            "demo: %d plugins (%s) %s, about %g records/s each; seed %d (--seed %d repeats it)",
            len(self.names),
            ", ".join(self.names),
            length,
            self.rate,
            self.seed,
            self.seed,
        )
        _log.info("records go to %s", self.bridge.export_settings.destination())
        if self.bridge.export_settings.exporter == "otlp":
            _log.info("with the compose stack up: Grafana %s, Jaeger %s", GRAFANA_URL, JAEGER_URL)

    def _slot(self, name: str) -> _Slot:
        argv = [
            sys.executable,
            "-m",
            f"otel_plugin_logs.demo_plugins.{_kind(name)}",
            "--rate",
            f"{self.rate:g}",
        ]
        crash_after = 0.0
        if _kind(name) == "payments":
            crash_after = self.duration * 0.4 if self.duration else _CRASH_AFTER_UNTIL_STOPPED
        return _Slot(name, argv, crash_after)

    def _child_env(self, name: str) -> dict[str, str]:
        env = dict(os.environ)
        # Batches every 50 ms instead of 200: the console reads as live, with little reordering.
        env.setdefault("OTEL_PLUGIN_LOGS_RUNNER_SCHEDULE_DELAY_MILLIS", "50")
        # The plugin's spans must name the same service as its logs, whatever the host is called,
        # and the same namespace (the host's name) as the bridge gives its logs.
        env["OTEL_SERVICE_NAME"] = name
        host = os.environ.get("OTEL_SERVICE_NAME", "").strip() or DEFAULT_HOST_SERVICE_NAME
        env["OTEL_RESOURCE_ATTRIBUTES"] = with_resource_attributes(
            env.get("OTEL_RESOURCE_ATTRIBUTES", ""), {"service.namespace": host}
        )
        settings = self.bridge.export_settings
        if settings.exporter == "otlp" and settings.endpoint_source == "argument":
            # --endpoint is for the plugins' spans too.
            base = settings.endpoint
            if settings.protocol.startswith("http/"):
                base = base.removesuffix("/").removesuffix("/v1/logs")
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = base
            env["OTEL_EXPORTER_OTLP_PROTOCOL"] = settings.protocol
        return env

    def _spawn(self, slot: _Slot) -> None:
        # Each start of each plugin has its own seed: a restarted plugin does not replay its past.
        seed = random.Random(f"{self.seed}:{slot.name}:{slot.starts}").randrange(2**31)
        argv = [*slot.argv, "--seed", str(seed)]
        if slot.crash_after and slot.starts == 0:
            argv += ["--crash-after", f"{slot.crash_after:g}"]
        slot.starts += 1
        slot.restart_at = None
        slot.process = self.bridge.spawn_plugin(
            slot.name, argv, version="1.0.0", env=self._child_env(slot.name)
        )
        _log.debug("started plugin %s (pid %d)", slot.name, slot.process.pid)

    def _supervise(self) -> None:
        last_progress = time.monotonic()
        last_received = 0
        while not self.stop.requested:
            now = time.monotonic()
            if self.duration and now - self.started >= self.duration:
                break
            for slot in self.slots:
                self._check(slot, now)
            if self.status.active and now - last_progress >= _PROGRESS_SECONDS:
                last_received = self._progress(now, now - last_progress, last_received)
                last_progress = now
            if all(slot.finished for slot in self.slots):
                _log.info("every plugin has finished")
                break
            time.sleep(_TICK_SECONDS)

    def _check(self, slot: _Slot, now: float) -> None:
        process = slot.process
        if slot.finished or process is None:
            return
        if slot.restart_at is not None:
            if now >= slot.restart_at:
                self._spawn(slot)
            return
        if not process.exited.is_set():
            return
        code = process.returncode
        if code == 0:
            slot.finished = True
            return
        if self.restarts[slot.name] >= _MAX_RESTARTS:
            _log.error("plugin %s failed %d times; not restarting it again", slot.name, slot.starts)
            slot.finished = True
            return
        self.restarts[slot.name] += 1
        slot.restart_at = now + _RESTART_DELAY_SECONDS
        _log.warning(
            "restarting plugin %s in %g s (restart %d of at most %d)",
            slot.name,
            _RESTART_DELAY_SECONDS,
            self.restarts[slot.name],
            _MAX_RESTARTS,
        )

    def _progress(self, now: float, interval: float, last_received: int) -> int:
        stats = self.bridge.stats()
        received = sum(p.received for p in stats.plugins.values())
        exported = sum(p.exported for p in stats.plugins.values())
        rate = (received - last_received) / interval if interval > 0 else 0.0
        elapsed = now - self.started
        clock = f"{elapsed:4.0f} s" + (f" / {self.duration:g} s" if self.duration else " (Ctrl-C stops)")
        running = sum(1 for s in self.slots if s.process is not None and not s.process.exited.is_set())
        failing = "  export failing, records wait in the queue" if stats.export_failing else ""
        self.status.update(
            f"  {symbols_for(sys.stderr).play} {clock}  {rate:7,.0f} records/s  queue {stats.queue_records:,}"
            f"  exported {exported:,}  plugins {running}/{len(self.slots)}{failing}"
        )
        return received

    # --- stopping ------------------------------------------------------------------------

    def _stop_plugins(self) -> None:
        reason = f"{self.stop.requested} received" if self.stop.requested else "time is up"
        live = [s.process for s in self.slots if s.process is not None and not s.process.exited.is_set()]
        _log.info("%s: stopping %d plugins and flushing their records", reason, len(live))
        for process in live:
            process.terminate()
        deadline = time.monotonic() + _STOP_GRACE_SECONDS
        while time.monotonic() < deadline and not self.stop.hurry:
            if all(process.exited.is_set() for process in live):
                break
            time.sleep(0.02)
        for process in live:
            if not process.exited.is_set():
                _log.warning("plugin %s (pid %d) did not stop; killing it", process.name, process.pid)
                process.kill()
        for process in live:
            process.wait(2.0)
        for name in self.names:
            self.bridge.wait_for_plugin(name, 0.5 if self.stop.hurry else 2.0)

    def _shutdown(self) -> Any:
        bridge = self.bridge
        if not self.stop.hurry and not bridge.force_flush(1000):
            stats = bridge.stats()
            why = f" ({stats.last_export_error})" if stats.last_export_error else ""
            _log.warning(
                "%s records are still waiting for %s%s; giving it up to %g s more",
                f"{stats.queue_records:,}",
                bridge.sink_description,
                why,
                bridge.config.shutdown_timeout_millis / 1000,
            )
        bridge.shutdown(1000 if self.stop.hurry else None)
        return bridge.stats()


def run_demo(args: argparse.Namespace) -> int:
    try:
        names = plugin_names(args.plugins)
    except ValueError as error:
        print(f"otel-plugin-logs demo: {error}", file=sys.stderr)
        return 2
    level = logging.getLevelName(str(args.level).upper())
    if not isinstance(level, int):
        print(f"otel-plugin-logs demo: unknown level {args.level!r}", file=sys.stderr)
        return 2
    return _Demo(args, names, level).run()


# --- the summary ------------------------------------------------------------------------


@dataclass
class _Row:
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
class _Summary:
    rows: list[_Row]
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
    ) -> _Summary:
        rows = [
            _Row(
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
            services = ", ".join(row.name for row in self.rows if _kind(row.name) == "weather")
            out.append(f"    Jaeger {JAEGER_URL} (traces of {services or 'the plugins'})")
        else:
            out.append(f"  Records went to {self.destination}.")
        return out


# --- doctor ----------------------------------------------------------------------------


@dataclass
class _Check:
    ok: bool
    title: str
    fixes: list[str] = field(default_factory=list)


def _masked(name: str, value: str) -> str:
    if "HEADERS" in name:
        keys = [pair.split("=", 1)[0].strip() for pair in value.split(",") if pair.strip()]
        return ",".join(f"{key}=<hidden>" for key in keys)
    return value


def _value(name: str, value: object) -> str:
    if name in ("level", "stderr_level") and isinstance(value, int):
        return logging.getLevelName(value)
    if value in ("", ()):
        return "(empty)"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _settings_table(
    cls: type[HostConfig] | type[RunnerConfig], config: Any, sources: Any, skip: Sequence[str] = ()
) -> list[str]:
    rows = []
    for name, envs, _, _ in describe(cls):
        if name in skip:
            continue
        source, env = sources.sources[name]
        origin = f"env {env}" if source == "env" else ("argument" if source == "argument" else "default")
        hint = "" if source != "default" else f"  ({envs.split(' / ')[0]})"
        rows.append((name, _value(name, getattr(config, name)), origin + hint))
    width = max(len(r[0]) for r in rows)
    value_width = min(40, max(len(r[1]) for r in rows))
    return [f"  {n:<{width}}  {v:<{value_width}}  {o}" for n, v, o in rows]


def _protocol_source(args: argparse.Namespace, env: Mapping[str, str]) -> str:
    if args.protocol:
        return "argument"
    for name in ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        if env.get(name, "").strip():
            return f"env {name}"
    return "default"


def _probe(settings: Any, timeout: float, service: str) -> tuple[bool, str, float]:
    """Export one test record to the configured OTLP endpoint; (ok, detail, seconds)."""
    from otel_plugin_logs.export.items import Item
    from otel_plugin_logs.export.otlp import Entry, ResourceInfo
    from otel_plugin_logs.export.otlp_sinks import OtlpGrpcSink, OtlpHttpSink

    # The SDK exporter logs each failed attempt; the check's own report says it better.
    sdk_logger = logging.getLogger("opentelemetry")
    level = sdk_logger.level
    sdk_logger.setLevel(logging.CRITICAL)
    started = time.monotonic()
    try:
        endpoint = settings.endpoint if settings.endpoint_source == "argument" else None
        if settings.protocol == "grpc":
            sink: Any = OtlpGrpcSink(endpoint, timeout)
        else:
            sink = OtlpHttpSink(endpoint, timeout, json_encoding=settings.protocol == "http/json")
        now = time.time_ns()
        entry = Entry(
            1,
            now,
            now,
            9,
            "INFO",
            "otel-plugin-logs doctor: test record",
            "otel_plugin_logs.doctor",
            {"doctor.check": "endpoint"},
            None,
            None,
            0,
        )
        resource = ResourceInfo({"service.name": "otel-plugin-logs-doctor", "service.namespace": service})
        try:
            outcome = sink.export([Item.of(resource, entry)], timeout)
        finally:
            sink.shutdown()
    except Exception as error:
        return False, f"{type(error).__name__}: {error}", time.monotonic() - started
    finally:
        sdk_logger.setLevel(level)
    elapsed = time.monotonic() - started
    if outcome.ok and outcome.rejected_records:
        return False, f"the collector refused the test record ({outcome.rejected_records} rejected)", elapsed
    return outcome.ok, outcome.error, elapsed


def _fixes(settings: Any, detail: str) -> list[str]:
    text = detail.lower()
    endpoint = settings.endpoint
    fixes = []
    port = endpoint.rsplit(":", 1)[-1].split("/", 1)[0] if ":" in endpoint.split("//", 1)[-1] else ""
    if settings.protocol == "grpc" and port == "4318":
        fixes.append("port 4318 is OTLP/HTTP by convention: set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf")
    if settings.protocol != "grpc" and port == "4317":
        fixes.append("port 4317 is OTLP/gRPC by convention: set OTEL_EXPORTER_OTLP_PROTOCOL=grpc")
    if any(word in text for word in ("unavailable", "refused", "failed to connect", "connectionerror")):
        fixes.append(f"nothing accepts connections at {endpoint}: start a collector, e.g.")
        fixes.append("  docker compose up -d otel-collector loki jaeger grafana   (from this repository)")
        fixes.append("or point OTEL_EXPORTER_OTLP_ENDPOINT at yours")
    if "deadline" in text or "timed out" in text or "timeout" in text:
        fixes.append("the endpoint did not answer in time: check the host, port, a firewall, and that")
        fixes.append("https:// is used only when the collector speaks TLS (http:// means plaintext)")
    if any(word in text for word in ("ssl", "certificate", "handshake")):
        fixes.append(
            "TLS failed: check OTEL_EXPORTER_OTLP_CERTIFICATE, or use http:// for a plaintext collector"
        )
    if any(word in text for word in ("unauthenticated", "permission_denied", "http 401", "http 403")):
        fixes.append("the collector refused the credentials: check OTEL_EXPORTER_OTLP_HEADERS")
    if "http 404" in text or "unimplemented" in text:
        fixes.append(
            "wrong path or protocol: an HTTP logs endpoint ends in /v1/logs "
            "(OTEL_EXPORTER_OTLP_LOGS_ENDPOINT is used as given); gRPC and HTTP use different ports"
        )
    if not fixes:
        fixes.append("check the collector's own logs (docker compose logs otel-collector)")
    return fixes


def _runtime_dir_check(config: HostConfig) -> _Check:
    directory = config.runtime_dir
    if not directory:
        return _Check(True, "runtime directory: a new private temporary directory per host")
    socket_path = os.path.join(directory, "bridge.sock")
    if len(socket_path.encode()) > 100:
        return _Check(
            False,
            f"runtime directory {directory}: the socket path would be too long for a Unix socket",
            ["set OTEL_PLUGIN_LOGS_RUNTIME_DIR to a shorter path"],
        )
    if os.path.isdir(directory):
        info = os.stat(directory)
        if info.st_uid != os.getuid():
            return _Check(
                False,
                f"runtime directory {directory} belongs to uid {info.st_uid}, not to this user",
                ["use a directory of your own for OTEL_PLUGIN_LOGS_RUNTIME_DIR"],
            )
        if not os.access(directory, os.W_OK | os.X_OK):
            return _Check(False, f"runtime directory {directory} is not writable", ["fix its permissions"])
        return _Check(True, f"runtime directory {directory} is usable")
    parent = _existing_parent(directory)
    if not os.access(parent, os.W_OK | os.X_OK):
        return _Check(False, f"runtime directory {directory} cannot be created ({parent} is read-only)")
    return _Check(True, f"runtime directory {directory} will be created")


def _existing_parent(path: str) -> str:
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def _file_check(path: str) -> _Check:
    directory = os.path.dirname(path) or "."
    target = directory if os.path.isdir(directory) else _existing_parent(directory)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return _Check(False, f"the file sink {path} is not writable", ["fix its permissions"])
    if not os.access(target, os.W_OK | os.X_OK):
        return _Check(
            False,
            f"the file sink's directory {directory} is not writable",
            ["set OTEL_PLUGIN_LOGS_FILE_DIR to a writable directory"],
        )
    return _Check(True, f"the file sink {path} is writable")


def run_doctor(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    from otel_plugin_logs import __version__
    from otel_plugin_logs.export.settings import resolve_export

    stream = out or safe_output(sys.stdout)
    env = os.environ
    symbols = symbols_for(stream)

    def say(text: str = "") -> None:
        print(text, file=stream)

    say(f"otel-plugin-logs {__version__} doctor  (Python {sys.version.split()[0]}, {sys.executable})")
    say()
    set_vars = sorted(name for name in env if name.startswith("OTEL_"))
    say("OTEL_* variables set in this environment:")
    for name in set_vars:
        say(f"  {name}={_masked(name, env[name])}")
    if not set_vars:
        say("  (none: every setting has its default)")
    say()
    try:
        config, sources = resolve(HostConfig, {}, env)
        runner_config, runner_sources = resolve(RunnerConfig, {}, env)
        settings = resolve_export(config, env, endpoint=args.endpoint, protocol=args.protocol)
    except ConfigError as error:
        say(f"{symbols.cross} the configuration is invalid: {error}")
        say("  fix or unset that variable; 'otel-plugin-logs doctor --help' lists every variable")
        return 2

    say("Export (argument > OTEL_* variable > default):")
    exporter_source, exporter_env = sources.sources["exporter"]
    if exporter_source == "env":
        why = f"env {exporter_env}"
    elif settings.sdk_disabled:
        why = "env OTEL_SDK_DISABLED"
    elif settings.exporter == "otlp":
        why = "an OTLP endpoint is set"
    else:
        why = "default: no OTLP endpoint is set"
    say(f"  exporter   {settings.exporter:<32}  {why}")
    if settings.exporter == "otlp":
        source = settings.endpoint_source
        origin = source if source in ("argument", "default") else f"env {source}"
        say(f"  protocol   {settings.protocol:<32}  {_protocol_source(args, env)}")
        say(f"  endpoint   {settings.endpoint:<32}  {origin}")
    if settings.exporter == "file":
        say(f"  file       {settings.file_path}")
    for note in settings.notes:
        say(f"  note: {note}")
    say()
    say("Host bridge settings:")
    for text in _settings_table(HostConfig, config, sources, skip=("exporter",)):
        say(text)
    say()
    say("Runner settings (plugins started from this environment inherit them):")
    for text in _settings_table(RunnerConfig, runner_config, runner_sources, skip=("socket_path", "token")):
        say(text)
    say()

    checks = [_Check(True, "the configuration is valid"), _runtime_dir_check(config)]
    service = env.get("OTEL_SERVICE_NAME", "").strip() or DEFAULT_HOST_SERVICE_NAME
    if settings.exporter == "otlp":
        where = settings.destination()
        if args.no_send:
            checks.append(_Check(True, f"{where}: not tried (--no-send)"))
        else:
            ok, detail, seconds = _probe(settings, args.timeout, service)
            if ok:
                checks.append(_Check(True, f"{where} accepted a test record ({seconds * 1000:.0f} ms)"))
            else:
                checks.append(
                    _Check(
                        False,
                        f"{where} is unreachable or refused the test record: {detail}",
                        _fixes(settings, detail),
                    )
                )
    elif settings.exporter == "file":
        checks.append(_file_check(settings.file_path))
        checks.append(
            _Check(
                True,
                "no OTLP endpoint set: records stay in the file; to use the compose stack set "
                "OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317",
            )
        )
    elif settings.exporter == "console":
        checks.append(_Check(True, "records are printed to stdout by the SDK's console exporter"))
    else:
        checks.append(_Check(True, "export is off: records are only replayed into the host's logging"))

    say("Checks:")
    for check in checks:
        say(f"  {symbols.check if check.ok else symbols.cross} {check.title}")
        for fix in check.fixes:
            say(f"      {fix}")
    failed = [check for check in checks if not check.ok]
    say()
    say(f"{symbols.cross} some checks failed" if failed else f"{symbols.check} all checks passed")
    return 1 if failed else 0
