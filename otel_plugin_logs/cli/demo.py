"""``otel-plugin-logs demo``: a host with realistic plugins.

The demo is what a new user runs first, so it starts fast, ends by itself and finishes with a
table of what happened to every record, from the bridge's own counters (``demo_summary``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, Final

from otel_plugin_logs.cli.demo_options import plugin_names
from otel_plugin_logs.cli.demo_summary import DemoSummary, plugin_kind
from otel_plugin_logs.cli.options import (
    console_level,
)
from otel_plugin_logs.cli.terminal import StatusLine, safe_output, symbols_for
from otel_plugin_logs.config.resource import with_resource_attributes
from otel_plugin_logs.conventions import DEFAULT_HOST_SERVICE_NAME, GRAFANA_URL, JAEGER_URL

_log = logging.getLogger("otel_plugin_logs.demo")

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

# --- the demo -------------------------------------------------------------------------------


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
        summary = DemoSummary.build(
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
            f"otel_plugin_logs.demo_plugins.{plugin_kind(name)}",
            "--rate",
            f"{self.rate:g}",
        ]
        crash_after = 0.0
        if plugin_kind(name) == "payments":
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
    level = console_level(args.level)
    if level is None:
        print(f"otel-plugin-logs demo: unknown level {args.level!r}", file=sys.stderr)
        return 2
    return _Demo(args, names, level).run()
