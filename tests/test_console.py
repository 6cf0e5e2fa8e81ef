"""The CLI console: aligned, coloured only on a terminal, safe against hostile plugin text, sampled."""

from __future__ import annotations

import io
import logging
import os
import re
import time
from pathlib import Path

import pytest
from helpers import PYTHON, CaptureHandler, MemorySink, wait_until, write_plugin
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_plugin_logs import HostLogBridge
from otel_plugin_logs.cli.console import PluginConsoleFormatter, PluginConsoleHandler, install_console
from otel_plugin_logs.cli.console_order import TimeOrderedRelease
from otel_plugin_logs.cli.terminal import StatusLine, safe_output, use_colour
from otel_plugin_logs.export.otlp import Entry
from otel_plugin_logs.host.replay import Replayer

ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def replayed(
    plugin: str,
    body: str,
    *,
    logger: str = "app",
    level: int = logging.INFO,
    attributes: dict[str, object] | None = None,
    trace_id: bytes | None = None,
    stacktrace: str | None = None,
) -> logging.LogRecord:
    """A record as the bridge replays it (built by the real Replayer)."""
    now = time.time_ns()
    entry = Entry(
        1,
        now,
        now,
        9,
        logging.getLevelName(level),
        body,
        logger,
        {**(attributes or {}), **({"exception.stacktrace": stacktrace} if stacktrace else {})},
        trace_id,
        b"\x01" * 8 if trace_id else None,
        1 if trace_id else 0,
    )
    otel = {"plugin": plugin, "plugin_version": None, "runner_pid": 4242, "resource": {}}
    replayer = Replayer("plugin", plugin)
    return replayer.make_record(replayer.logger_for(logger).name, entry, level, stacktrace, otel)


def test_no_escape_codes_when_the_stream_is_not_a_terminal() -> None:
    """Output to a file or pipe is plain text: no colour codes at any level, host or plugin."""
    stream = io.StringIO()
    handler = install_console(logging.DEBUG, stream)
    logging.getLogger("plugin").handle(
        replayed("weather", "hello", level=logging.ERROR, trace_id=b"\xab" * 16)
    )
    logging.getLogger("host.app").critical("host says %s", "hi")
    handler.flush()
    text = stream.getvalue()
    assert "hello" in text and "host says hi" in text and "trace=abababab" in text
    assert "\x1b" not in text


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    """A terminal gets colour; NO_COLOR, TERM=dumb or a non-terminal stream get none."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert use_colour(Terminal())
    assert not use_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Terminal())
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not use_colour(Terminal())


def test_terminal_output_is_coloured(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a terminal the level and plugin name are coloured."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    stream = Terminal()
    install_console(logging.INFO, stream)
    logging.getLogger("plugin").handle(replayed("weather", "sunny", level=logging.WARNING))
    assert "\x1b[33mWARN" in stream.getvalue()


def test_columns_are_aligned_across_plugins_and_host() -> None:
    """The message starts at the same column whatever the plugin, logger and level."""
    formatter = PluginConsoleFormatter(plugin_width=9, logger_width=14)
    lines = [
        formatter.format(replayed("weather", "MSG one", logger="weather.forecast.very.long.name")),
        formatter.format(replayed("crawler", "MSG two", logger="c", level=logging.CRITICAL)),
        formatter.format(
            logging.LogRecord("otel_plugin_logs.demo", logging.WARNING, "", 0, "MSG three", (), None)
        ),
    ]
    assert len({line.index("MSG") for line in lines}) == 1
    assert "weather.forec…" in lines[0]
    assert " demo " in lines[2]  # the package's own loggers are shown without the package prefix


def test_key_attributes_shown_and_internal_ones_hidden() -> None:
    """Plugin extras are shown as key=value; code/thread/exception attributes are not."""
    record = replayed(
        "weather",
        "forecast",
        attributes={"city": "Zürich", "code.line.number": 3, "thread.name": "Main", "long": "x" * 100},
    )
    line = PluginConsoleFormatter().format(record)
    assert "city=Zürich" in line and "code.line" not in line and "thread.name" not in line
    assert "long=" + "x" * 39 + "…" in line


def test_hostile_text_is_escaped_in_every_field(monkeypatch: pytest.MonkeyPatch) -> None:
    """Newlines, CR and escape sequences from a plugin are shown escaped, never executed, on a colour terminal too."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    stream = Terminal()
    install_console(logging.INFO, stream)
    record = replayed(
        "weather",
        "ok\n12:00:00.000 ERROR host      bridge  forged\x1b[2J\x1b[H\r",
        logger="evil\nlogger",
        attributes={"k\x1b]0;title\x07": "v\n\x1b[31m"},
        stacktrace="Traceback\n  boom \x1b[2J\rmore\nValueError: \x1b]8;;http://x\x07",
    )
    logging.getLogger("plugin").handle(record)
    text = ANSI.sub("", stream.getvalue())  # the console's own colour codes
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    lines = text.rstrip("\n").split("\n")
    assert len(lines) == 5  # the record, its second message line, three stack lines: all behind the gutter
    assert lines[0].endswith(" ok k\\x1b]0;title\\x07=v\\n\\x1b[31m")
    assert lines[1].startswith("    │ 12:00:00.000 ERROR") and lines[1].count("forged") == 1
    assert all(line.startswith("    │ ") for line in lines[1:])


def test_plugin_messages_through_a_real_bridge_cannot_forge_lines(tmp_path: Path, host_env: Path) -> None:
    """A runner logging '\\n' and '\\x1b[2J' gets one console line per record and no escape code."""
    script = write_plugin(
        tmp_path,
        "evil",
        """
        import logging
        logging.basicConfig(level=logging.INFO)
        log = logging.getLogger("evil")
        log.info("first\\nINFO  other    forged line")
        log.warning("\\x1b[2J\\x1b[Hscreen cleared?", extra={"x": "\\x1b[31mred"})
        log.info("bell\\x07 and carriage\\rreturn")
        """,
    )
    stream = io.StringIO()
    install_console(logging.INFO, stream)
    with HostLogBridge(sink=MemorySink()) as bridge:
        process = bridge.spawn_plugin("evil", [PYTHON, str(script)])
        assert process.wait(30) == 0
        assert bridge.wait_for_plugin("evil", 10)
    text = stream.getvalue()
    plugin_lines = [
        line for line in text.splitlines() if line[13:].startswith(("INFO  evil ", "WARN  evil "))
    ]
    # The second line of the first message is under the gutter; then the bridge's exit notice.
    assert len(plugin_lines) == 3 and len(text.splitlines()) == 5, text
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    assert plugin_lines[0].endswith(" first") and "\n    │ INFO  other    forged line\n" in text
    assert "\\x1b[2J\\x1b[Hscreen cleared?" in plugin_lines[1] and "x=\\x1b[31mred" in plugin_lines[1]


def test_stack_traces_are_capped_to_their_last_lines() -> None:
    """max_stack_lines keeps the innermost lines and says how many were left out."""
    stack = "\n".join(f"line {i}" for i in range(30))
    text = PluginConsoleFormatter(max_stack_lines=5).format(replayed("p", "failed", stacktrace=stack))
    lines = text.split("\n")
    assert lines[1].endswith("… 25 earlier lines") and lines[-1].endswith("line 29") and len(lines) == 7


def test_sampling_hides_a_chatty_plugins_info_records_but_counts_them() -> None:
    """Above the per-plugin line budget INFO records are counted, not shown; warnings and other plugins still show."""
    stream = io.StringIO()
    handler = PluginConsoleHandler(stream, max_lines_per_second=3)
    handler.setFormatter(PluginConsoleFormatter())
    for i in range(200):
        handler.handle(replayed("crawler", f"page {i}"))
    handler.handle(replayed("crawler", "server error", level=logging.WARNING))
    for i in range(3):
        handler.handle(replayed("weather", f"forecast {i}"))
    shown_crawler = handler.shown["crawler"]
    assert 1 <= shown_crawler <= 10  # the budget, plus what refilled while the loop ran
    assert handler.hidden["crawler"] == 201 - shown_crawler
    assert handler.shown["weather"] == 3 and "weather" not in handler.hidden
    handler.announce_hidden()
    text = stream.getvalue()
    assert "server error" in text and "forecast 2" in text
    assert f"{handler.hidden['crawler']:,} of crawler: more records not shown here" in text


def test_sampling_is_off_by_default() -> None:
    """install_console as `run` uses it shows every record."""
    stream = io.StringIO()
    handler = install_console(logging.INFO, stream)
    for i in range(100):
        logging.getLogger("plugin").handle(replayed("crawler", f"page {i}"))
    assert handler.shown["crawler"] == 100 and not handler.hidden
    assert len(stream.getvalue().splitlines()) == 100


def test_status_line_only_on_a_terminal_and_kept_below_log_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """The live line is never written to a non-terminal; on a terminal it is cleared and redrawn around records."""
    monkeypatch.setenv("TERM", "xterm")
    plain = io.StringIO()
    status = StatusLine(plain)
    status.update("12 records/s")
    status.clear()
    assert not status.active and plain.getvalue() == ""

    terminal = Terminal()
    status = StatusLine(terminal)
    handler = PluginConsoleHandler(terminal, status=status)
    handler.setFormatter(PluginConsoleFormatter())
    status.update("12 records/s")
    handler.handle(replayed("weather", "sunny"))
    status.clear()
    text = terminal.getvalue()
    assert text.startswith("\r\x1b[K12 records/s\r\x1b[K")  # drawn, then cleared for the record
    assert "sunny\n12 records/s\r\x1b[K" in text  # redrawn below it, cleared at the end


def test_a_multi_line_message_is_one_record_with_its_lines_under_the_gutter() -> None:
    """uvicorn's "Exception in ASGI application\\n" loses its final newline; further lines are indented."""
    formatter = PluginConsoleFormatter()
    single = formatter.format(replayed("web", "Exception in ASGI application\n"))
    assert single.endswith(" Exception in ASGI application") and "\n" not in single
    lines = formatter.format(replayed("web", "first\r\nsecond\n\nfourth\ttab", attributes={"k": 1})).split(
        "\n"
    )
    assert lines[0].endswith(" first k=1")
    assert lines[1:] == ["    │ second", "    │ ", "    │ fourth\\ttab"]


def test_an_ascii_stream_gets_ascii_marks_and_escaped_text() -> None:
    """On a stream that cannot encode '│' or '…' (PYTHONIOENCODING=ascii) the console writes ASCII, never raises."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    safe_output(stream)
    install_console(logging.INFO, stream, plugin_width=4)
    record = replayed("a-long-plugin", "Zürich ☃", stacktrace="Traceback\nValueError: ☃\n")
    logging.getLogger("plugin").handle(record)
    stream.flush()
    text = raw.getvalue().decode("ascii")
    assert "a..." in text and "Z\\xfcrich \\u2603" in text
    assert text.splitlines()[1:] == ["    | Traceback", "    | ValueError: \\u2603"]


def test_a_replayed_traceback_has_no_blank_line_under_a_stdlib_formatter(
    tmp_path: Path, host_env: Path
) -> None:
    """A host handler with a plain logging.Formatter ends a plugin's exception record with the exception line."""
    script = write_plugin(
        tmp_path,
        "failing",
        """
        import logging
        try:
            raise ValueError("bad input")
        except ValueError:
            logging.getLogger("app").exception("it failed")
        """,
    )
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    logging.getLogger("plugin").addHandler(handler)
    with HostLogBridge(sink=MemorySink()) as bridge:
        assert bridge.spawn_plugin("failing", [PYTHON, str(script)]).wait(30) == 0
        assert bridge.wait_for_plugin("failing", 10)
    text = stream.getvalue()
    assert "plugin.failing.app it failed\nTraceback (most recent call last):\n" in text
    assert "ValueError: bad input\n" in text and "\n\n" not in text


def test_held_records_come_out_in_time_order() -> None:
    """With reorder_millis a record that arrives late but happened first is shown first."""
    stream = io.StringIO()
    handler = PluginConsoleHandler(stream, reorder_millis=60_000)
    handler.setFormatter(PluginConsoleFormatter())
    late, early = replayed("p", "stderr line"), replayed("p", "logged before it")
    early.created = late.created - 0.1
    handler.handle(late)
    handler.handle(early)
    assert stream.getvalue() == ""  # held: the window has not passed
    handler.flush()
    assert [line.split()[-1] for line in stream.getvalue().splitlines()] == ["it", "line"]
    handler.close()


def test_held_records_are_shown_once_their_window_passed() -> None:
    """Without a flush, each record is released by the console's own thread after the window."""
    stream = io.StringIO()
    handler = PluginConsoleHandler(stream, reorder_millis=20)
    handler.setFormatter(PluginConsoleFormatter())
    for i in range(3):
        handler.handle(replayed("p", f"record {i}"))
    try:
        assert wait_until(lambda: len(stream.getvalue().splitlines()) == 3, 10)
    finally:
        handler.close()


def test_release_order_follows_the_items_time_not_their_arrival() -> None:
    """TimeOrderedRelease with a clock that stands still: nothing is due, drain gives oldest first."""
    released: list[str] = []
    order = TimeOrderedRelease(1.0, released.extend, clock=lambda: 100.0)
    for at, name in ((5.0, "c"), (3.0, "a"), (4.0, "b")):
        order.push(at, name)
    assert order.held() == 3 and released == []
    order.close()
    assert released == ["a", "b", "c"]


def test_a_stderr_line_prints_after_the_records_logged_before_it(tmp_path: Path, host_env: Path) -> None:
    """A runner's records come in batches, its stderr at once: the reordering console shows them as they happened."""
    script = write_plugin(
        tmp_path,
        "mixed",
        """
        import logging, sys
        logging.getLogger("app").warning("logged first")
        sys.stderr.write("written second\\n")
        sys.stderr.flush()
        """,
    )
    stream = io.StringIO()
    # A window far longer than any batch delay on a loaded machine; flush() ends it.
    handler = install_console(logging.INFO, stream, reorder_millis=30_000)
    with HostLogBridge(sink=MemorySink()) as bridge:
        assert bridge.spawn_plugin("mixed", [PYTHON, str(script)]).wait(30) == 0
        assert bridge.wait_for_plugin("mixed", 10)
    handler.flush()
    text = stream.getvalue()
    assert text.index("logged first") < text.index("written second"), text
    handler.close()


def test_the_hosts_asyncio_debug_record_does_not_reach_user_handlers(host_env: Path) -> None:
    """A host logging at DEBUG sees nothing from asyncio when a bridge starts ("Using selector")."""
    capture = CaptureHandler()
    root = logging.getLogger()
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    with HostLogBridge(sink=MemorySink()):
        pass
    assert not [r for r in capture.records if r.name.startswith("asyncio")]


def test_a_runner_that_ends_without_connecting_gets_a_hint(
    tmp_path: Path, host_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """python -I ignores the bootstrap: at its exit (before the 10 s warning) the host says why it may be."""
    script = write_plugin(tmp_path, "isolated", "import logging\nlogging.warning('lost')\n")
    caplog.set_level(logging.INFO, logger="otel_plugin_logs")
    with HostLogBridge(sink=MemorySink()) as bridge:
        assert bridge.spawn_plugin("isolated", [PYTHON, "-I", str(script)]).wait(30) == 0
    (hint,) = [r.getMessage() for r in caplog.records if "without connecting" in r.getMessage()]
    assert "plugin isolated" in hint and "-I" in hint and "PYTHONPATH" in hint and "Python process" in hint
    assert not [r for r in caplog.records if "has not connected" in r.getMessage()]


def test_an_error_in_the_bootstrap_is_one_line(
    tmp_path: Path, host_env: Path, capture: CaptureHandler
) -> None:
    """A package that fails to import with a TypeError (as on an old Python) gives one stderr line, no traceback."""
    fake = tmp_path / "shadow" / "otel_plugin_logs"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise TypeError(\"unsupported operand type(s) for |: 'type' and 'type'\")\n"
    )
    script = write_plugin(tmp_path, "plain", "print('still runs')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "shadow")}
    with HostLogBridge(sink=MemorySink()) as bridge:
        assert bridge.spawn_plugin("plain", [PYTHON, str(script)], env=env).wait(30) == 0
    lines = [r.getMessage() for r in capture.records if r.name == "plugin.plain.stderr"]
    assert len(lines) == 1, lines
    assert lines[0].startswith("[otel-plugin-logs] log handler not installed (Python 3.")
    assert lines[0].endswith("TypeError: unsupported operand type(s) for |: 'type' and 'type'")


_texts = st.text(max_size=30) | st.sampled_from(["", "ok", "a\nb", "x\x1b[2J", "tab\there", "é€😀", "\u202e"])
_values = (
    st.none() | st.booleans() | st.integers() | st.floats() | _texts | st.lists(st.integers(), max_size=3)
)


@settings(max_examples=300, deadline=None)
@given(
    body=_texts,
    plugin=_texts,
    logger=_texts,
    level=st.sampled_from([logging.DEBUG, logging.INFO, logging.WARNING, 35, logging.CRITICAL]),
    attributes=st.dictionaries(
        _texts | st.sampled_from(["code.line.number", "thread.name", "user_id"]), _values, max_size=8
    ),
    traced=st.booleans(),
    colour=st.booleans(),
)
def test_a_replayed_record_reads_as_format_fields_writes_it(
    body: str, plugin: str, logger: str, level: int, attributes: dict[str, object], traced: bool, colour: bool
) -> None:
    """The replayed-record fast path (cached columns and attribute texts) writes format_fields' exact text."""
    formatter = PluginConsoleFormatter(colour=colour, max_attributes=3)
    record = replayed(
        plugin,
        body,
        logger=logger,
        level=level,
        attributes=attributes,
        trace_id=b"\x07" * 16 if traced else None,
    )
    info = record.otel
    expected = formatter.format_fields(
        record.created,
        record.levelname,
        info.plugin,
        info.logger_name,
        info.body,
        info.attributes,
        info.trace_id or "",
        None,
    )
    assert formatter.format(record) == expected
    assert formatter.format(record) == expected  # and again, from its caches


class CountingStream(io.StringIO):
    """A text stream that counts its writes and flushes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.flushes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_held_records_are_written_once_per_release_with_the_text_of_one_write_per_record() -> None:
    """Records released together are one write and one flush, with the text a handler writing each record would."""
    records = [replayed("p", f"record {i}", attributes={"n": i}) for i in range(50)]
    stream = CountingStream()
    handler = PluginConsoleHandler(stream, reorder_millis=60_000)
    handler.setFormatter(PluginConsoleFormatter())
    direct = io.StringIO()
    reference = PluginConsoleHandler(direct)
    reference.setFormatter(PluginConsoleFormatter())
    for record in records:
        handler.handle(record)
        reference.handle(record)
    handler.flush()
    try:
        assert stream.getvalue() == direct.getvalue()
        assert stream.writes == 1 and stream.flushes <= 2  # the run's own flush, and flush()'s
    finally:
        handler.close()
        reference.close()
