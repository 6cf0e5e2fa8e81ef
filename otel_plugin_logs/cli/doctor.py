"""``otel-plugin-logs doctor``: the resolved configuration, where each value came from, and checks.

It tries the configured destination (an OTLP endpoint must accept a test record; the file
sink's directory must be writable) and says what to fix when a check fails.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any, Final

from otel_plugin_logs.cli.doctor_checks import Check, file_check, fixes_for, probe, runtime_dir_check
from otel_plugin_logs.cli.options import add_destination_options, positive_float
from otel_plugin_logs.cli.terminal import Symbols, safe_output, symbols_for
from otel_plugin_logs.config.describe import describe
from otel_plugin_logs.config.errors import ConfigError
from otel_plugin_logs.config.fields import resolve
from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.config.runner import RunnerConfig
from otel_plugin_logs.conventions import DEFAULT_HOST_SERVICE_NAME
from otel_plugin_logs.export.settings import ExportSettings, resolve_export

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


def add_doctor_parser(commands: Any, epilog: str) -> None:
    """``otel-plugin-logs doctor``; ``epilog`` lists the variables."""
    doctor = commands.add_parser(
        "doctor",
        help="print the resolved configuration and check the export destination",
        description=_DOCTOR_DESCRIPTION,
        epilog=_DOCTOR_EXIT + epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_destination_options(doctor)
    doctor.add_argument(
        "--timeout",
        type=positive_float,
        default=3.0,
        metavar="SECONDS",
        help="how long the test record may take (default 3)",
    )
    doctor.add_argument(
        "--no-send", action="store_true", help="do not send a test record, only show the configuration"
    )
    doctor.set_defaults(handler=run_doctor)


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


@dataclass(slots=True)
class _Report:
    """Doctor's output stream and the symbols it can show."""

    stream: IO[str]
    symbols: Symbols

    def say(self, text: str = "") -> None:
        print(text, file=self.stream)


def run_doctor(args: argparse.Namespace, out: IO[str] | None = None) -> int:
    """Print the configuration and the checks; 0 all passed, 1 one failed, 2 the configuration is invalid."""
    from otel_plugin_logs import __version__

    stream = out or safe_output(sys.stdout)
    report = _Report(stream, symbols_for(stream))
    env = os.environ
    report.say(f"otel-plugin-logs {__version__} doctor  (Python {sys.version.split()[0]}, {sys.executable})")
    report.say()
    _print_environment(report, env)
    try:
        config, sources = resolve(HostConfig, {}, env)
        runner_config, runner_sources = resolve(RunnerConfig, {}, env)
        settings = resolve_export(config, env, endpoint=args.endpoint, protocol=args.protocol)
    except ConfigError as error:
        report.say(f"{report.symbols.cross} the configuration is invalid: {error}")
        report.say("  fix or unset that variable; 'otel-plugin-logs doctor --help' lists every variable")
        return 2
    _print_export(report, settings, sources, _protocol_source(args, env))
    report.say("Host bridge settings:")
    for text in _settings_table(HostConfig, config, sources, skip=("exporter",)):
        report.say(text)
    report.say()
    report.say("Runner settings (plugins started from this environment inherit them):")
    for text in _settings_table(RunnerConfig, runner_config, runner_sources, skip=("socket_path", "token")):
        report.say(text)
    report.say()
    service = env.get("OTEL_SERVICE_NAME", "").strip() or DEFAULT_HOST_SERVICE_NAME
    checks = [
        Check(True, "the configuration is valid"),
        runtime_dir_check(config),
        *_destination_checks(settings, args, service),
    ]
    return _print_checks(report, checks)


def _print_environment(report: _Report, env: Mapping[str, str]) -> None:
    set_vars = sorted(name for name in env if name.startswith("OTEL_"))
    report.say("OTEL_* variables set in this environment:")
    for name in set_vars:
        report.say(f"  {name}={_masked(name, env[name])}")
    if not set_vars:
        report.say("  (none: every setting has its default)")
    report.say()


def _print_export(report: _Report, settings: ExportSettings, sources: Any, protocol_source: str) -> None:
    report.say("Export (argument > OTEL_* variable > default):")
    exporter_source, exporter_env = sources.sources["exporter"]
    if exporter_source == "env":
        why = f"env {exporter_env}"
    elif settings.sdk_disabled:
        why = "env OTEL_SDK_DISABLED"
    elif settings.exporter == "otlp":
        why = "an OTLP endpoint is set"
    else:
        why = "default: no OTLP endpoint is set"
    report.say(f"  exporter   {settings.exporter:<32}  {why}")
    if settings.exporter == "otlp":
        source = settings.endpoint_source
        origin = source if source in ("argument", "default") else f"env {source}"
        report.say(f"  protocol   {settings.protocol:<32}  {protocol_source}")
        report.say(f"  endpoint   {settings.endpoint:<32}  {origin}")
    if settings.exporter == "file":
        report.say(f"  file       {settings.file_path}")
    for note in settings.notes:
        report.say(f"  note: {note}")
    report.say()


def _destination_checks(settings: ExportSettings, args: argparse.Namespace, service: str) -> list[Check]:
    if settings.exporter == "otlp":
        where = settings.destination()
        if args.no_send:
            return [Check(True, f"{where}: not tried (--no-send)")]
        result = probe(settings, args.timeout, service)
        if result.ok:
            return [Check(True, f"{where} accepted a test record ({result.elapsed_seconds * 1000:.0f} ms)")]
        title = f"{where} is unreachable or refused the test record: {result.detail}"
        return [Check(False, title, fixes_for(settings, result.detail))]
    if settings.exporter == "file":
        return [
            file_check(settings.file_path),
            Check(
                True,
                "no OTLP endpoint set: records stay in the file; to use the compose stack set "
                "OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4317",
            ),
        ]
    if settings.exporter == "console":
        return [Check(True, "records are printed to stdout by the SDK's console exporter")]
    return [Check(True, "export is off: records are only replayed into the host's logging")]


def _print_checks(report: _Report, checks: Sequence[Check]) -> int:
    symbols = report.symbols
    report.say("Checks:")
    for check in checks:
        report.say(f"  {symbols.check if check.ok else symbols.cross} {check.title}")
        for fix in check.fixes:
            report.say(f"      {fix}")
    failed = [check for check in checks if not check.ok]
    report.say()
    report.say(f"{symbols.cross} some checks failed" if failed else f"{symbols.check} all checks passed")
    return 1 if failed else 0
