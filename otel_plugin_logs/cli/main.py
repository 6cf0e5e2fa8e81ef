"""The ``otel-plugin-logs`` command: run a plugin under a host bridge, the demo, doctor, logs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from otel_plugin_logs.config.errors import ConfigError
from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.config.runner import RunnerConfig


def _parser() -> argparse.ArgumentParser:
    from otel_plugin_logs import __version__
    from otel_plugin_logs.cli.demo_options import add_demo_parser
    from otel_plugin_logs.cli.doctor import add_doctor_parser
    from otel_plugin_logs.cli.logs import add_logs_parser
    from otel_plugin_logs.cli.options import settings_epilog
    from otel_plugin_logs.cli.run import add_run_parser

    parser = argparse.ArgumentParser(
        prog="otel-plugin-logs",
        description="Carry the logs of plugin subprocesses into the host's logging and OpenTelemetry.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'otel-plugin-logs COMMAND --help' for a command's options and variables.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_run_parser(commands)
    variables = settings_epilog(HostConfig, RunnerConfig)
    add_demo_parser(commands, variables)
    add_doctor_parser(commands, variables)
    add_logs_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command with ``argv`` (default: this process's arguments); returns its exit status.

    As the process's entry point (``argv`` None), ``run`` tunes the process's garbage
    collector (``run.tune_gc_for_run``) and ends the process itself as soon as everything is
    flushed (``run.exit_now``) rather than returning into interpreter teardown.
    """
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # The command's own parser: its usage, not the top-level one, says what it accepts.
        getattr(args, "subparser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if args.command == "run":
            from otel_plugin_logs.cli.run import exit_now, run_command

            code = run_command(args, args.subparser, own_process=argv is None)
            if argv is None:
                exit_now(code)
            return code
        result: int = args.handler(args)
        return result
    except ConfigError as error:
        print(f"otel-plugin-logs: configuration error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
