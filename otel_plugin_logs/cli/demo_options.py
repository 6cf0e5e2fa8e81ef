"""The demo's options: which plugins, for how long, how fast; parsed before the demo is imported."""

from __future__ import annotations

import argparse
import re
from typing import Any, Final

from otel_plugin_logs.cli.options import add_destination_options, add_level_option, positive_float

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

# --- argument parsers -------------------------------------------------------------------------


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0 seconds (0: until Ctrl-C)")
    return value


def add_demo_parser(commands: Any, epilog: str) -> None:
    """``otel-plugin-logs demo``; ``epilog`` lists the variables."""
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
        type=positive_float,
        default=DEFAULT_RATE,
        metavar="RECORDS",
        help=f"records/s of each normal plugin (default {DEFAULT_RATE:g}); crawler bursts 100x that",
    )
    demo.add_argument("--seed", type=int, help="seed of the plugins' random choices (default: a new one)")
    add_destination_options(demo)
    add_level_option(demo)
    demo.add_argument(
        "--summary-json", metavar="FILE", help="also write the summary as JSON to FILE (for scripts)"
    )
    demo.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from otel_plugin_logs.cli.demo import run_demo

    return run_demo(args)


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
