"""The ``otel-plugin-logs`` command: run a plugin under a host bridge, the demo, doctor."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from ._config import ConfigError, HostConfig, RunnerConfig, describe
from ._names import PLUGIN_NAME_RULE, check_plugin_name

_log = logging.getLogger("otel_plugin_logs.cli")

_STANDARD_ENV = """\
standard OpenTelemetry variables:
  OTEL_SDK_DISABLED                 true: replay only, export nothing
  OTEL_SERVICE_NAME                 the host's name; each plugin's service.namespace
  OTEL_RESOURCE_ATTRIBUTES          key=value,... added to every plugin's resource
  OTEL_LOGS_EXPORTER                otlp | file | otlp_json_file | console | none (default: otlp if an
                                    endpoint is set, else file)
  OTEL_EXPORTER_OTLP[_LOGS]_ENDPOINT, _PROTOCOL (grpc | http/protobuf | http/json), _HEADERS,
  _TIMEOUT (seconds), _COMPRESSION (gzip | deflate | none), _INSECURE, _CERTIFICATE,
  _CLIENT_KEY, _CLIENT_CERTIFICATE
  OTEL_BLRP_SCHEDULE_DELAY, OTEL_BLRP_MAX_QUEUE_SIZE, OTEL_BLRP_MAX_EXPORT_BATCH_SIZE,
  OTEL_BLRP_EXPORT_TIMEOUT          used when the OTEL_PLUGIN_LOGS_EXPORT_* twin is unset
  OTEL_[LOGRECORD_]ATTRIBUTE_COUNT_LIMIT, OTEL_[LOGRECORD_]ATTRIBUTE_VALUE_LENGTH_LIMIT
"""


def _settings_epilog(*classes: type[HostConfig] | type[RunnerConfig]) -> str:
    lines = ["bridge variables (argument > variable > default):"]
    seen = set()
    for cls in classes:
        for _, envs, default, doc in describe(cls):
            if envs in seen or envs.endswith(("_SOCKET", "_TOKEN")) or envs == "OTEL_LOGS_EXPORTER":
                continue
            seen.add(envs)
            lines.append(f"  {envs} (default {default})")
            lines.extend("      " + text for text in textwrap.wrap(doc, 76))
    return "\n".join(lines) + "\n\n" + _STANDARD_ENV


def _plugin_name(text: str) -> str:
    try:
        return check_plugin_name(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-plugin-logs",
        description="Carry the logs of plugin subprocesses into the host's logging and OpenTelemetry.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'otel-plugin-logs COMMAND --help' for a command's options and variables.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run",
        help="run a plugin command under a host bridge and show its logs",
        description=(
            "Start a host bridge, run COMMAND as a plugin runner (Python runners get the log handler "
            "installed automatically), replay its logs on the console under plugin.<name> and export "
            "them. Exits with the command's exit code once everything was flushed."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_settings_epilog(HostConfig, RunnerConfig),
    )
    run.add_argument(
        "--plugin", "-p", required=True, type=_plugin_name, help=f"the plugin's name ({PLUGIN_NAME_RULE})"
    )
    run.add_argument("--plugin-version", help="the plugin's version (resource attribute plugin.version)")
    run.add_argument("--level", default="INFO", help="lowest level shown on the console (default INFO)")
    run.add_argument("--endpoint", help="OTLP endpoint (overrides OTEL_EXPORTER_OTLP_ENDPOINT)")
    run.add_argument("--protocol", choices=("grpc", "http/protobuf", "http/json"), help="OTLP protocol")
    run.add_argument("--stats", action="store_true", help="print the bridge's counters at the end")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")

    from ._demo import add_demo_parser, add_doctor_parser

    add_demo_parser(commands, _settings_epilog(HostConfig, RunnerConfig))
    add_doctor_parser(commands, _settings_epilog(HostConfig, RunnerConfig))
    from ._logs import add_logs_parser

    add_logs_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return _run(args, parser)
        handler = args.handler
        result: int = handler(args)
        return result
    except ConfigError as error:
        print(f"otel-plugin-logs: configuration error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(args: Any, parser: argparse.ArgumentParser) -> int:
    from ._console import install_console
    from ._host import HostLogBridge

    command = list(args.argv)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error(
            "run: give the plugin command after --, e.g. otel-plugin-logs run -p weather -- python app.py"
        )
    level = logging.getLevelName(args.level.upper())
    if not isinstance(level, int):
        parser.error(f"run: unknown level {args.level!r}")
    install_console(level)
    bridge = HostLogBridge(otlp_endpoint=args.endpoint, otlp_protocol=args.protocol)
    bridge.start()
    _log.info("logs of plugin %s go to %s", args.plugin, bridge.export_settings.destination())
    try:
        process = bridge.spawn_plugin(args.plugin, command, version=args.plugin_version, stdin=None)
    except OSError as error:
        bridge.shutdown()
        print(f"otel-plugin-logs: cannot start {command[0]!r}: {error}", file=sys.stderr)
        return 127

    def forward(signum: int, _frame: object) -> None:
        # Ctrl-C in a terminal already reached the child (same foreground process group);
        # a second SIGINT would interrupt its clean-up. Signals sent to the host alone go on.
        if signum == signal.SIGINT and _in_terminal_foreground():
            return
        process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        returncode = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    bridge.wait_for_plugin(args.plugin, 5.0)
    complete = bridge.shutdown()
    stats = bridge.stats().plugins.get(args.plugin)
    if args.stats and stats is not None:
        print(_format_stats(stats), file=sys.stderr)
    if not complete:
        _log.warning("some records of plugin %s could not be exported before the deadline", args.plugin)
    code = returncode if returncode is not None else 1
    return 128 - code if code < 0 else code


def _in_terminal_foreground() -> bool:
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError, AttributeError):
        return False


def _format_stats(stats: Any) -> str:
    dropped = ", ".join(f"{k}={v}" for k, v in sorted(stats.dropped.items())) or "none"
    return (
        f"plugin {stats.name}: emitted {stats.emitted}, replayed {stats.replayed}, "
        f"exported {stats.exported}, discarded {stats.discarded}, dropped {stats.dropped_total} ({dropped}), "
        f"pending {stats.pending}"
    )


if __name__ == "__main__":
    sys.exit(main())
