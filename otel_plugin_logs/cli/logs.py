"""``otel-plugin-logs logs``: read the embedded file sink as ``journalctl`` reads the journal.

Records are printed with the console formatter of ``run`` and ``demo``, filtered as they
stream past (nothing is loaded whole: ``-n`` keeps only the last N matches), or as one OTLP
record per line for ``jq``, or counted (``--stats``). Corrupt and partial lines are skipped
and counted on stderr, so a damaged sink still shows everything else.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Final

from otel_plugin_logs.cli.console import PluginConsoleFormatter
from otel_plugin_logs.cli.logs_filter import Filter, parse_severity, parse_time, positive_lines
from otel_plugin_logs.cli.logs_read import (
    SINK_FILE_NAME,
    LineReader,
    LineTest,
    ReadCounters,
    SinkRecord,
    follow,
    in_time_order,
    read_files,
    records_of,
    sink_files,
)
from otel_plugin_logs.cli.terminal import ASCII_SYMBOLS, safe_output, symbols_for, use_colour
from otel_plugin_logs.conventions import (
    BRIDGE_COUNT_ATTRIBUTE,
    BRIDGE_EVENT_ATTRIBUTE,
    BRIDGE_REASON_ATTRIBUTE,
    BRIDGE_SCOPE_NAME,
)
from otel_plugin_logs.wire.records import EXCEPTION_STACKTRACE

_DROP_EVENTS: Final = ("dropped", "suppressed", "gap")
_LEVEL_NAMES: Final = (
    (21, "CRITICAL"),
    (17, "ERROR"),
    (13, "WARNING"),
    (9, "INFO"),
    (5, "DEBUG"),
    (1, "TRACE"),
)
_DEFAULT_FOLLOW_LINES: Final = 10
# Export batches of different plugins interleave in the sink up to a few hundred ms apart.
_ORDER_WINDOW_NANOS: Final = 2_000_000_000

_DESCRIPTION: Final = f"""\
Print the records of the embedded OTLP/JSON file sink (where records go when no OTLP endpoint
is set): the current file and its rotated backups, oldest first, in the console format of
'run'. PATH is another sink file or a directory holding {SINK_FILE_NAME}; the default is
the one OTEL_PLUGIN_LOGS_FILE_DIR names. Filters combine (all must match).
"""

_EPILOG: Final = """\
examples:
  otel-plugin-logs logs --plugin payments --level ERROR
  otel-plugin-logs logs -f                      the last 10 records, then new ones as they come
  otel-plugin-logs logs --since 10m --grep timeout
  otel-plugin-logs logs --json | jq -r .body.stringValue
  otel-plugin-logs logs --stats

--json writes each record as its OTLP/JSON logRecord with two more keys, "resource" and
"scope", as the sink holds them. Corrupt lines and a partial last line are skipped and
counted on stderr. Exit status: 0, 1 when there is no sink to read, 2 for invalid options.
"""


def add_logs_parser(commands: Any) -> None:
    logs = commands.add_parser(
        "logs",
        help="print the records of the embedded file sink (filter, follow, JSON, stats)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    logs.add_argument("path", nargs="?", help=f"a sink file, or a directory with {SINK_FILE_NAME}")
    logs.add_argument(
        "--plugin", "-p", action="append", default=[], metavar="NAME", help="only this plugin (repeatable)"
    )
    logs.add_argument(
        "--level", "-l", type=parse_severity, metavar="LEVEL", help="only this severity and above"
    )
    logs.add_argument(
        "--since", "-S", type=parse_time, metavar="WHEN", help="records at or after: 10m, 2h, or a time"
    )
    logs.add_argument(
        "--until", "-U", type=parse_time, metavar="WHEN", help="records before: 10m, 2h, or a time"
    )
    logs.add_argument("--trace", metavar="TRACE_ID", help="only records of this trace (a prefix is enough)")
    logs.add_argument(
        "--grep", "-g", metavar="TEXT", help="message or stack trace contains TEXT (lowercase: any case)"
    )
    logs.add_argument("--logger", metavar="PREFIX", help="only this logger and its children")
    logs.add_argument(
        "--follow", "-f", action="store_true", help="keep printing new records (survives rotation)"
    )
    logs.add_argument(
        "--lines", "-n", type=positive_lines, metavar="N", help="only the last N matching records"
    )
    shape = logs.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="one OTLP/JSON record per line")
    shape.add_argument("--stats", action="store_true", help="records per plugin and level, drops by reason")
    logs.set_defaults(handler=run_logs)


# --- output ----------------------------------------------------------------------------------


def _level_name(record: SinkRecord) -> str:
    if record.severity_text:
        return record.severity_text
    return next((name for floor, name in _LEVEL_NAMES if record.severity_number >= floor), "NOTSET")


class JsonShaper:
    """One OTLP/JSON record per line: its logRecord with the resource and scope it came under.

    The resource of a sink line is shared by its records: encoded once per line, not per record.
    """

    def __init__(self) -> None:
        self._resources: dict[int, tuple[dict[str, Any], str]] = {}  # id -> (kept alive, text)

    def __call__(self, record: SinkRecord) -> str:
        key = id(record.resource)
        known = self._resources.get(key)
        if known is None or known[0] is not record.resource:
            if len(self._resources) > 64:
                self._resources.clear()
            known = (record.resource, _dumps(record.resource))
            self._resources[key] = known
        head = f'{{"resource":{known[1]},"scope":{_dumps({"name": record.scope})}'
        rest = _dumps(record.raw)
        return f"{head},{rest[1:]}\n" if len(rest) > 2 else f"{head}}}\n"


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(slots=True)
class Tally:
    """What ``--stats`` prints: records per plugin and level, the bridge's drops by reason."""

    records: Counter[tuple[str, str]] = field(default_factory=Counter)
    drops: Counter[tuple[str, str]] = field(default_factory=Counter)
    notices: Counter[str] = field(default_factory=Counter)

    def add(self, record: SinkRecord) -> None:
        if record.scope != BRIDGE_SCOPE_NAME:
            self.records[(record.plugin, _level_name(record))] += 1
            return
        self.notices[record.plugin] += 1
        event = record.attributes.get(BRIDGE_EVENT_ATTRIBUTE)
        count = record.attributes.get(BRIDGE_COUNT_ATTRIBUTE)
        if event in _DROP_EVENTS and isinstance(count, int):
            self.drops[(record.plugin, str(record.attributes.get(BRIDGE_REASON_ATTRIBUTE)))] += count

    def render(self) -> str:
        levels = sorted({level for _, level in self.records}, key=_level_order)
        plugins = sorted({plugin for plugin, _ in self.records} | set(self.notices))
        headers = ["plugin", *levels, "total", "notices"]
        rows = [
            [
                plugin,
                *(f"{self.records[(plugin, level)]:,}" for level in levels),
                f"{sum(n for (p, _), n in self.records.items() if p == plugin):,}",
                f"{self.notices[plugin]:,}",
            ]
            for plugin in plugins
        ]
        rows.append(
            [
                "total",
                *(f"{sum(n for (_, lv), n in self.records.items() if lv == level):,}" for level in levels),
                f"{sum(self.records.values()):,}",
                f"{sum(self.notices.values()):,}",
            ]
        )
        widths = [max(len(row[i]) for row in (headers, *rows)) for i in range(len(headers))]
        out = [
            "  ".join(f"{c:<{widths[i]}}" if i == 0 else f"{c:>{widths[i]}}" for i, c in enumerate(r))
            for r in (headers, *rows)
        ]
        out.append("")
        if self.drops:
            out.append("records the bridge dropped or suppressed (from its notices), by reason:")
            for (plugin, reason), count in sorted(self.drops.items()):
                out.append(f"  {plugin:<{widths[0]}}  {reason:<20} {count:>10,}")
            by_reason: Counter[str] = Counter()
            for (_, reason), count in self.drops.items():
                by_reason[reason] += count
            out.append("  " + ", ".join(f"{reason} {count:,}" for reason, count in sorted(by_reason.items())))
        else:
            out.append("no drop notices: the bridge dropped nothing it had to report")
        return "\n".join(out)


def _level_order(name: str) -> int:
    return next((-floor for floor, level in _LEVEL_NAMES if level == name), 0)


# --- running ---------------------------------------------------------------------------------


def default_sink_path() -> str:
    from otel_plugin_logs.config.fields import resolve
    from otel_plugin_logs.config.host import HostConfig

    config, _ = resolve(HostConfig)
    return os.path.join(config.file_dir, SINK_FILE_NAME)


def _history(
    path: str, counters: ReadCounters, keep: LineTest, *, keep_open: bool
) -> tuple[Iterator[SinkRecord], list[LineReader]]:
    """The sink's records so far; with ``keep_open`` the current file's reader is handed back."""
    files = sink_files(path)
    base = os.path.join(path, SINK_FILE_NAME) if os.path.isdir(path) else path
    if not keep_open or not files or files[-1] != base:
        return read_files(files, counters, keep), []
    current = LineReader.open(base)  # opened before reading: the follow goes on from its end
    backups = read_files(files[:-1], counters, keep)

    def chained() -> Iterator[SinkRecord]:
        yield from backups
        yield from records_of(current, counters, keep)

    return chained(), [current]


def _selected(
    args: argparse.Namespace, path: str, wanted: Filter, keep: LineTest, counters: ReadCounters
) -> tuple[Iterable[SinkRecord], list[LineReader]]:
    """The matching records so far, in time order, the last ``-n`` only; and what ``-f`` goes on with."""
    lines = args.lines if args.lines is not None else (_DEFAULT_FOLLOW_LINES if args.follow else None)
    history, open_readers = _history(path, counters, keep, keep_open=args.follow)
    matching: Iterable[SinkRecord] = in_time_order(
        (r for r in history if wanted.matches(r)), _ORDER_WINDOW_NANOS
    )
    if lines is not None:
        matching = deque(matching, maxlen=lines) if lines else ()
    return matching, open_readers


def run_logs(args: argparse.Namespace, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    stream = out or safe_output(sys.stdout)
    errors = err or sys.stderr
    path = os.path.expanduser(args.path) if args.path else default_sink_path()
    if not args.follow and not sink_files(path):
        print(
            f"otel-plugin-logs logs: no sink at {path} (records go there when no OTLP endpoint is set; "
            "give a PATH or set OTEL_PLUGIN_LOGS_FILE_DIR)",
            file=errors,
        )
        return 1
    wanted = Filter.from_args(args)
    counters = ReadCounters()
    keep = wanted.line_test()
    matching, open_readers = _selected(args, path, wanted, keep, counters)
    tally = Tally()
    render = None if args.stats else _renderer(args, stream)
    batched = _Batched(stream)

    def show(record: SinkRecord) -> None:
        if render is None:
            tally.add(record)
        else:
            batched.write(render(record))

    try:
        for record in matching:
            show(record)
        batched.flush()
        if args.follow:
            start = open_readers[0] if open_readers else None
            base = os.path.join(path, SINK_FILE_NAME) if os.path.isdir(path) else path
            new = (
                r for r in follow(base, counters, start=start, keep=keep) if r is None or wanted.matches(r)
            )
            for record in in_time_order(new, _ORDER_WINDOW_NANOS):
                show(record)
                batched.flush()  # following: each record as soon as it is let out
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 0
    finally:
        for reader in open_readers:
            reader.close()
    with contextlib.suppress(BrokenPipeError):
        batched.flush()
    if args.stats:
        print(tally.render(), file=stream)
    _say_skipped(counters, errors)
    return 0


class _Batched:
    """Lines written in chunks: one write per line would be a system call per line on a pipe."""

    def __init__(self, stream: IO[str], max_chars: int = 1 << 18) -> None:
        self.stream = stream
        self.max_chars = max_chars
        self._parts: list[str] = []
        self._chars = 0

    def write(self, line: str) -> None:
        self._parts.append(line)
        self._chars += len(line)
        if self._chars >= self.max_chars:
            self.flush()

    def flush(self) -> None:
        if self._parts:
            text, self._parts, self._chars = "".join(self._parts), [], 0
            self.stream.write(text)
        self.stream.flush()


def _renderer(args: argparse.Namespace, stream: IO[str]) -> Callable[[SinkRecord], str]:
    if args.json:
        return JsonShaper()
    formatter = PluginConsoleFormatter(
        colour=use_colour(stream), plugin_width=10, ascii_only=symbols_for(stream) is ASCII_SYMBOLS
    )

    def text(record: SinkRecord) -> str:
        stack = record.attributes.get(EXCEPTION_STACKTRACE)
        return (
            formatter.format_fields(
                record.time_unix_nano / 1e9,
                _level_name(record),
                record.plugin,
                record.scope,
                record.body,
                record.attributes,
                record.trace_id,
                stack if isinstance(stack, str) else None,
            )
            + "\n"
        )

    return text


def _say_skipped(counters: ReadCounters, errors: IO[str]) -> None:
    if counters.corrupt_lines:
        print(
            f"otel-plugin-logs logs: skipped {counters.corrupt_lines:,} corrupt line(s); "
            f"the first: {counters.first_corrupt}",
            file=errors,
        )
    if counters.partial_lines:
        print(
            f"otel-plugin-logs logs: skipped {counters.partial_lines:,} partial last line(s) "
            "(being written, or left by a host that was killed)",
            file=errors,
        )


def _quiet_broken_pipe() -> None:
    # `logs | head` closed the pipe: stop without the interpreter's own complaint at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
