"""Options and help text the commands share, each declared once."""

from __future__ import annotations

import argparse
import logging
import textwrap
from collections.abc import Sequence
from typing import Any, Final

from otel_plugin_logs.config.describe import describe
from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.config.runner import RunnerConfig
from otel_plugin_logs.export.settings import PROTOCOLS

_STANDARD_ENV: Final = """\
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
_SECTION_TITLES: Final = {
    HostConfig: "bridge variables, read by the host (argument > variable > default):",
    RunnerConfig: "runner variables, read by each plugin process (variable > default):",
}


def settings_epilog(*classes: type[HostConfig] | type[RunnerConfig]) -> str:
    """The variables of ``classes`` with their defaults, then the standard OTEL_* ones."""
    sections = []
    for cls in classes:
        lines = [_SECTION_TITLES[cls]]
        seen = set()
        for _, envs, default, doc in describe(cls):
            if envs in seen or envs.endswith(("_SOCKET", "_TOKEN")) or envs == "OTEL_LOGS_EXPORTER":
                continue
            seen.add(envs)
            lines.append(f"  {envs} (default {default})")
            lines.extend("      " + text for text in textwrap.wrap(doc, 76))
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n\n" + _STANDARD_ENV


class HelpVariables(argparse.Action):
    """``--help-variables``: the full table of variables, then exit."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(settings_epilog(HostConfig, RunnerConfig), end="")
        parser.exit()


def add_destination_options(parser: argparse.ArgumentParser) -> None:
    """``--endpoint`` and ``--protocol``: where records are exported (or doctor checks)."""
    parser.add_argument("--endpoint", help="OTLP endpoint (overrides OTEL_EXPORTER_OTLP_ENDPOINT)")
    parser.add_argument("--protocol", choices=PROTOCOLS, help="OTLP protocol")


def add_level_option(parser: argparse.ArgumentParser) -> None:
    """``--level``: the lowest level shown on the console."""
    parser.add_argument("--level", default="INFO", help="lowest level shown on the console (default INFO)")


def console_level(text: str) -> int | None:
    """The level ``--level`` names, or None when it names none."""
    level = logging.getLevelName(str(text).upper())
    return level if isinstance(level, int) else None


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):  # also refuses NaN
        raise argparse.ArgumentTypeError(f"{text!r} must be a number > 0")
    return value
