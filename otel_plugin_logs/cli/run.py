"""``otel-plugin-logs run``: one plugin command under a host bridge, supervised, then a prompt exit."""

from __future__ import annotations

import argparse
import atexit
import gc
import logging
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, Final, NoReturn

from otel_plugin_logs.cli.options import (
    HelpVariables,
    add_destination_options,
    add_level_option,
    console_level,
)
from otel_plugin_logs.config.errors import ConfigError
from otel_plugin_logs.conventions import PLUGIN_NAME_RULE, check_plugin_name

if TYPE_CHECKING:
    from otel_plugin_logs.cli.console import PluginConsoleHandler
    from otel_plugin_logs.host.bridge import HostLogBridge
    from otel_plugin_logs.host.process import PluginProcess
    from otel_plugin_logs.host.stats import PluginStats

_log = logging.getLogger("otel_plugin_logs.cli")

_FORWARDED: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_RUN_REORDER_MILLIS: Final = 400
_REAP_POLL_SECONDS: Final = 0.05
_EXIT_FLUSH_FAILED: Final = 120  # what Python exits with when flushing stdout fails at exit
# A batch pipeline: records live in queues until exported (survivors, traversed again by each
# older generation's collection) and are freed by reference counting, not by the collector.
_RUN_GC_THRESHOLDS: Final = (10_000, 50, 100)

_RUN_EPILOG = """\
key variables (every one: 'otel-plugin-logs run --help-variables'; the values in effect and
where they come from: 'otel-plugin-logs doctor'; the README has the tables):
  OTEL_EXPORTER_OTLP_ENDPOINT           send to this collector (unset: the OTLP/JSON file sink)
  OTEL_PLUGIN_LOGS_FILE_DIR             directory of the file sink
  OTEL_PLUGIN_LOGS_KILL_TIMEOUT_MILLIS  how long the command may take to exit after a signal
                                        before it gets SIGKILL (default 5000)
  OTEL_PLUGIN_LOGS_STDERR_LEVEL         level of the command's raw stderr lines (default WARNING)
  OTEL_SDK_DISABLED                     true: show the logs, export nothing

signals: SIGTERM, SIGINT and SIGHUP are passed on to the command once (Ctrl-C in a terminal
reaches it directly); it gets SIGKILL when it has not exited within the kill timeout, or at
a second signal. The command never outlives run (README, "Supervision").

exit status: the command's exit code; 128+N when signal N ended it (137: it was killed);
126 when the command cannot be executed, 127 when it is not found; 2 for a usage or
configuration error.
"""


def _plugin_name(text: str) -> str:
    try:
        return check_plugin_name(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_run_parser(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="run a plugin command under a host bridge and show its logs",
        description=(
            "Run COMMAND as plugin NAME under a host bridge: its logs (Python: installed\n"
            "automatically; any program: its stdout and stderr) are shown on the console under\n"
            "plugin.NAME and exported. Exits with the command's exit code once all was flushed."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_RUN_EPILOG,
    )
    run.add_argument(
        "--plugin", "-p", required=True, type=_plugin_name, help=f"the plugin's name ({PLUGIN_NAME_RULE})"
    )
    run.add_argument("--plugin-version", help="the plugin's version (resource attribute plugin.version)")
    add_level_option(run)
    add_destination_options(run)
    run.add_argument("--stats", action="store_true", help="print the bridge's counters at the end")
    run.add_argument(
        "--pass-stdout",
        action="store_true",
        help="leave the command's stdout alone (default: its lines become records, like stderr)",
    )
    run.add_argument("--help-variables", action=HelpVariables, help="list every variable and exit")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    run.set_defaults(subparser=run)


def run_command(args: Any, parser: argparse.ArgumentParser, *, own_process: bool = False) -> int:
    """Run the plugin command; returns its exit code (128+N when signal N ended it).

    ``own_process``: ``run`` is the process's entry point, so it may tune the process's
    garbage collector (``tune_gc_for_run``); never in a caller's process.
    """
    from otel_plugin_logs.cli.console import install_console
    from otel_plugin_logs.host.bridge import HostLogBridge

    command = _command(args.argv, parser)
    level = console_level(args.level)
    if level is None:
        parser.error(f"unknown level {args.level!r}")
    # Records come in batches, stderr lines at once: held this long, they show in time order.
    console = install_console(level, reorder_millis=_RUN_REORDER_MILLIS)
    bridge = HostLogBridge(otlp_endpoint=args.endpoint, otlp_protocol=args.protocol)
    bridge.start()
    if own_process:
        tune_gc_for_run()
    interactive = _in_terminal_foreground()
    supervisor = _Supervisor(bridge.config.kill_timeout_millis / 1000.0, interactive)
    previous = {sig: signal.signal(sig, supervisor.on_signal) for sig in _FORWARDED}
    try:
        process = _spawn(bridge, args, command, parser, interactive)
        if isinstance(process, int):
            return process
        supervisor.attach(process)
        settings = bridge.export_settings
        read_them = " (read them with: otel-plugin-logs logs)" if settings.exporter == "file" else ""
        _log.info("logs of plugin %s go to %s%s", args.plugin, settings.destination(), read_them)
        _wait_for_exit(process, supervisor, console)
        # Not settled here: the bridge's shutdown exports what is left within its own deadline.
        returncode = process.wait(bridge.config.shutdown_timeout_millis / 1000.0, settle=False)
        complete = bridge.shutdown()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        console.flush()  # what the console still holds goes out before the stats line
    stats = bridge.stats().plugins.get(args.plugin)
    if args.stats and stats is not None:
        print(_format_stats(stats), file=sys.stderr)
    if not complete:
        _log.warning("some records of plugin %s could not be exported before the deadline", args.plugin)
    code = returncode if returncode is not None else 1
    return 128 - code if code < 0 else code


def tune_gc_for_run() -> None:
    """Keep the garbage collector off what ``run`` loaded, and let it run less often.

    Once the bridge has started, the ~35,000 objects of what it imported (pydantic's core,
    gRPC, protobuf) live as long as the process: every full collection traversed them
    again, ~50 ms each on a test machine, 4 of them in a 60,000-record burst. Frozen, they
    are left out of every collection (they are still freed by reference counting). The
    thresholds suit a pipeline whose records are freed by reference counting: a young
    collection every 10,000 allocations instead of 700, older ones hardly ever. Only for
    ``run``'s own process: a library user's application keeps its settings.
    """
    gc.freeze()
    gc.set_threshold(*_RUN_GC_THRESHOLDS)


def _wait_for_exit(process: PluginProcess, supervisor: _Supervisor, console: PluginConsoleHandler) -> None:
    """Wait for the command's end, escalating signals; show what the console holds once all is sent.

    A plugin's runner says bye in its exit functions; the interpreter's teardown after that
    takes tens of milliseconds more (measured 25-30 ms), during which the console's held
    records (up to the reorder window's worth) are formatted and shown, instead of after it.
    Every record the runner sent is in by then, so none of them can show out of order.
    """
    shown = False
    while process.running:
        process.wait_news(_REAP_POLL_SECONDS)
        if not shown and process.records_settled.is_set() and process.running:
            shown = True
            console.flush()
        supervisor.tick(time.monotonic())


def _command(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """The plugin command from what follows run's options (``--`` separates them)."""
    command = list(argv)
    if command and command[0].startswith("-") and command[0] != "--":
        parser.error(f"unrecognized arguments: {command[0]} (the plugin command goes after --)")
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error(
            "give the plugin command after --, e.g. otel-plugin-logs run -p weather -- python app.py"
        )
    return command


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` once ``run`` is done, without the interpreter's teardown.

    After the bridge has shut down (every record exported or counted, the runtime directory
    removed) and the stats are printed, nothing is left to do, yet finalizing the ~350 modules
    loaded (pydantic's core, asyncio, the encoders) took 80-200 ms more on a test machine:
    ``run``'s caller waited that long after the last record was acknowledged. The exit
    functions still run (logging's flush among them) and the standard streams are flushed, as
    at a normal exit; while a thread that is not a daemon still runs, the ordinary exit waits
    for it instead.
    """
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # closed, or replaced by None
            code = code or _EXIT_FLUSH_FAILED
    os._exit(code)


def _spawn(
    bridge: HostLogBridge, args: Any, command: list[str], parser: argparse.ArgumentParser, interactive: bool
) -> PluginProcess | int:
    """The started command, or run's exit code when it could not be started."""
    try:
        # In a terminal the command shares run's process group, so that job control (Ctrl-C,
        # Ctrl-Z, reading the terminal) works as for any foreground job; elsewhere it has its
        # own group, which run signals as a whole.
        return bridge.spawn_plugin(
            args.plugin,
            command,
            version=args.plugin_version,
            stdin=None,
            capture_stdout=not args.pass_stdout,
            new_process_group=not interactive,
            die_with_parent=True,
        )
    except ConfigError:
        bridge.shutdown()
        raise
    except ValueError as error:
        bridge.shutdown()
        parser.error(str(error))
    except OSError as error:
        bridge.shutdown()
        print(f"otel-plugin-logs: cannot run {command[0]!r}: {error.strerror or error}", file=sys.stderr)
        # As shells do: 127 when there is no such command, 126 when it cannot be executed.
        return 127 if isinstance(error, FileNotFoundError) else 126


class _Supervisor:
    """Passes run's signals on to the command once, then escalates to SIGKILL.

    ``on_signal`` runs as a signal handler: it only signals and records; ``tick`` (the main
    loop) does the printing, which is not safe inside a handler.
    """

    def __init__(self, kill_timeout_seconds: float, interactive: bool) -> None:
        self._process: PluginProcess | None = None
        self._kill_timeout_seconds = kill_timeout_seconds
        self._interactive = interactive
        self._kill_at: float | None = None
        self._first: signal.Signals | None = None
        self._again: signal.Signals | None = None
        self._killed = False

    def attach(self, process: PluginProcess) -> None:
        """The command has started: a signal that came while it was starting is passed on now."""
        self._process = process
        if self._first is not None:
            self._kill_at = time.monotonic() + self._kill_timeout_seconds
            self._forward(self._first)

    def on_signal(self, signum: int, _frame: object) -> None:
        received = signal.Signals(signum)
        process = self._process
        if process is not None and not process.running:
            return  # the command has ended: run is only flushing, within its own deadline
        if self._first is None:
            self._first = received
            if process is not None:
                self._kill_at = time.monotonic() + self._kill_timeout_seconds
                self._forward(received)
        elif self._again is None:
            self._again = received
            self._kill_at = time.monotonic()  # asked twice: do not wait any longer

    def _forward(self, received: signal.Signals) -> None:
        # Ctrl-C in a terminal already reached the command (same foreground group): a second
        # SIGINT would interrupt its clean-up.
        if self._process is not None and not (received == signal.SIGINT and self._interactive):
            self._process.send_signal(received)

    def tick(self, now: float) -> None:
        process = self._process
        if process is None or self._kill_at is None or self._killed or now < self._kill_at:
            return
        if not process.running:
            return
        self._killed = True
        process.killed = True
        process.kill()
        first = self._first.name if self._first is not None else "a signal"
        why = (
            f"a second signal ({self._again.name})"
            if self._again is not None
            else f"it did not exit {self._kill_timeout_seconds:g} s after {first}"
        )
        print(
            f"otel-plugin-logs: killing plugin {process.name} (pid {process.pid}) with SIGKILL: {why}",
            file=sys.stderr,
            flush=True,
        )


def _in_terminal_foreground() -> bool:
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


def _format_stats(stats: PluginStats) -> str:
    dropped = ", ".join(f"{k}={v}" for k, v in sorted(stats.dropped.items())) or "none"
    return (
        f"plugin {stats.name}: emitted {stats.emitted}, replayed {stats.replayed}, "
        f"exported {stats.exported}, discarded {stats.discarded}, dropped {stats.dropped_total} ({dropped}), "
        f"pending {stats.pending}"
    )
