"""The console handler and formatter on the paths `run` takes: held lines, filters, cached texts."""

from __future__ import annotations

import io
import logging

from test_console import replayed

from otel_plugin_logs.cli.console import PluginConsoleFormatter, PluginConsoleHandler


def _expected(formatter: PluginConsoleFormatter, record: logging.LogRecord) -> str:
    info = record.otel  # type: ignore[attr-defined]
    return formatter.format_fields(
        record.created,
        record.levelname,
        info.plugin,
        info.logger_name,
        info.body,
        info.attributes,
        info.trace_id or "",
        None,
    )


def test_records_with_other_keys_get_their_own_attributes_from_one_formatter() -> None:
    """Texts kept per set of keys: records alternating key sets and values each read as format_fields."""
    records = [
        replayed("p", "a", attributes={"code.line.number": 1, "user": 1, "city": "berlin"}),
        replayed("p", "b", attributes={"city": "paris", "user": 2}),
        replayed("p", "c", attributes={"code.line.number": 1, "user": 3, "city": "berlin"}),
        replayed("p", "d", attributes={"thread.name": "Main"}),
        replayed("p", "e", attributes={}),
        replayed("p", "f", attributes={str(i): i for i in range(9)}),
    ]
    for colour in (False, True):
        formatter = PluginConsoleFormatter(colour=colour, max_attributes=3)
        reference = PluginConsoleFormatter(colour=colour, max_attributes=3)
        for _ in range(2):
            assert [formatter.format(r) for r in records] == [_expected(reference, r) for r in records]


def test_a_record_a_filter_refuses_is_not_shown() -> None:
    """Filters on the console handler still decide, held lines or not."""
    for reorder_millis in (0, 60_000):
        stream = io.StringIO()
        handler = PluginConsoleHandler(stream, reorder_millis=reorder_millis)
        handler.setFormatter(PluginConsoleFormatter())
        handler.addFilter(lambda record: "secret" not in record.getMessage())
        assert handler.handle(replayed("p", "a secret")) is False
        assert handler.handle(replayed("p", "shown")) is True
        handler.flush()
        handler.close()
        assert [line.split()[-1] for line in stream.getvalue().splitlines()] == ["shown"]


def test_held_lines_read_as_lines_written_at_once_colour_and_all() -> None:
    """A held console (as run sets it up) writes the text of a console writing each record at once."""
    records = [replayed("p", f"record {i}", attributes={"n": i % 3}) for i in range(20)]
    records.append(
        replayed("q", "with a stack", stacktrace="Traceback (most recent call last):\nValueError: x")
    )
    held, direct = io.StringIO(), io.StringIO()
    handlers = [PluginConsoleHandler(held, reorder_millis=60_000), PluginConsoleHandler(direct)]
    for handler in handlers:
        handler.setFormatter(PluginConsoleFormatter(colour=True))
        for record in records:
            handler.handle(record)
        handler.close()
    assert held.getvalue() == direct.getvalue() and held.getvalue().count("\n") > len(records)
