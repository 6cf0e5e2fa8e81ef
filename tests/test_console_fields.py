"""The console fed the bridge's entries (no LogRecord) shows exactly what it shows of LogRecords,
and every other host handler, filter or patched logger still gets the LogRecords of before."""

from __future__ import annotations

import io
import logging
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import PYTHON, CaptureHandler, write_plugin

from otel_plugin_logs.cli.console import PluginConsoleFormatter, PluginConsoleHandler
from otel_plugin_logs.export.otlp import Entry
from otel_plugin_logs.host.replay import Replayer
from otel_plugin_logs.host.replay_routes import BuiltRecord, ReplayBatch

STACK = (
    "Traceback (most recent call last):\n"
    '  File "plugin.py", line 3, in <module>\n'
    "    raise ValueError(x)\n"
    "ValueError: bad \x1b[31mvalue\nsecond line of the message\n"
)
OTEL = {"plugin": "p", "plugin_version": "1.0", "runner_pid": 4242, "resource": {"service.name": "svc"}}


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


class CountingConsole(PluginConsoleHandler):
    """The console, counting the batches it is given as entries."""

    def __init__(self, stream: io.StringIO, **options: Any) -> None:
        super().__init__(stream, **options)
        self.batches = 0

    def handle_replayed(self, batch: ReplayBatch) -> None:
        self.batches += 1
        super().handle_replayed(batch)


def entry(
    seq: int,
    body: str,
    *,
    level: str = "INFO",
    scope: str = "app",
    attributes: dict[str, Any] | None = None,
    at_ns: int | None = None,
    trace_id: bytes | None = None,
) -> Entry:
    now = at_ns if at_ns is not None else 1_700_000_000_123_456_789 + seq * 1_000_000
    return Entry(
        seq,
        now,
        now,
        9,
        level,
        body,
        scope,
        dict(attributes or {}),
        trace_id,
        b"\x02" * 8 if trace_id else None,
        1,
    )


def varied() -> list[BuiltRecord]:
    """Records of every kind the console has a way of its own to show."""
    return [
        (entry(1, "plain message"), logging.INFO, None),
        (entry(2, "café ünïcode ✓ 日本語", scope="app.sub", attributes={"user": "é"}), logging.INFO, None),
        (
            entry(3, "bell\x07 esc\x1b[2J cr\r tab\t", scope="ev\x1bil", attributes={"x": "\x1b[31m", "n": 1}),
            logging.WARNING,
            None,
        ),
        (entry(4, "first\nINFO  forged line\r\nthird\n"), logging.INFO, None),
        (entry(5, "failed", level="ERROR", attributes={"exception.stacktrace": STACK}), logging.ERROR, STACK),
        (entry(6, "failed, stack only in the build", level="ERROR"), logging.ERROR, STACK),
        (entry(7, "notice", level="NOTICE"), 25, None),
        (entry(8, "trace", level="TRACE"), 5, None),
        (entry(9, "critical", level="CRITICAL", trace_id=b"\xab" * 16), logging.CRITICAL, None),
        (entry(10, "no level text", level=""), logging.INFO, None),
        (entry(11, "hostile level", level="WA\x1bRN"), logging.WARNING, None),
        (entry(12, "values", attributes={"flag": True, "one": 1, "ratio": 1.5, "list": [1, "a"], "long": "v" * 90}),
         logging.INFO, None),
        (entry(13, "hidden keys", attributes={"code.file.path": "/x.py", "thread.name": "T", "k": "v"}),
         logging.DEBUG, None),
        (entry(14, "", scope=""), logging.INFO, None),
    ]  # fmt: skip


@pytest.fixture
def consoles() -> Iterator[list[PluginConsoleHandler]]:
    """Consoles a test makes; closed after it (their release threads stop)."""
    made: list[PluginConsoleHandler] = []
    yield made
    for handler in made:
        handler.close()


def console_on(
    made: list[PluginConsoleHandler], prefix: str, *, colour: bool = False, rate: float = 0.0, level: int = 1
) -> CountingConsole:
    """A console on ``prefix`` as `run` sets one up (held in time order), records at any level."""
    handler = CountingConsole(
        Terminal() if colour else io.StringIO(), max_lines_per_second=rate, reorder_millis=60_000
    )
    handler.setFormatter(PluginConsoleFormatter(colour=colour, max_stack_lines=3))
    handler.setLevel(level)
    made.append(handler)
    logger = logging.getLogger(prefix)
    logger.handlers[:] = [handler]
    logger.setLevel(1)
    logger.propagate = False
    return handler


def shown(handler: PluginConsoleHandler) -> str:
    handler.flush()
    stream = handler.stream
    assert isinstance(stream, io.StringIO)
    return stream.getvalue()


def replay_both(
    made: list[PluginConsoleHandler], name: str, batches: list[list[BuiltRecord]], **options: Any
) -> tuple[CountingConsole, CountingConsole]:
    """The batches replayed into a console alone (entries) and one behind a logger filter
    that lets everything through (LogRecords): the stdlib ignores a parent logger's filters."""
    fast = console_on(made, f"{name}fields", **options)
    slow = console_on(made, f"{name}records", **options)
    logging.getLogger(f"{name}records.p").addFilter(lambda record: True)
    for prefix in (f"{name}fields", f"{name}records"):
        replayer = Replayer(prefix, "p")
        for batch in batches:
            replayer.replay_all(batch, OTEL)
    return fast, slow


@pytest.mark.parametrize("colour", [False, True])
def test_the_console_shows_entries_as_it_shows_their_records(
    consoles: list[PluginConsoleHandler], colour: bool
) -> None:
    """Plain, non-ASCII, control characters, multi-line, stacks, odd levels: the same bytes."""
    fast, slow = replay_both(consoles, f"same{colour}", [varied()], colour=colour)
    assert fast.batches == 1 and slow.batches == 0
    assert shown(fast) == shown(slow) and shown(fast).count("\n") > len(varied())
    assert fast.shown == slow.shown == {"p": len(varied())}


def test_a_rate_limited_plugin_shows_and_counts_the_same(consoles: list[PluginConsoleHandler]) -> None:
    """Sampling hides the same INFO records, keeps every WARNING and counts alike."""
    batch = [(entry(seq, f"chatty {seq}"), logging.INFO, None) for seq in range(1, 11)]
    batch[6] = (entry(7, "warned", level="WARNING"), logging.WARNING, None)
    fast, slow = replay_both(consoles, "rate", [batch, batch[:3]], rate=2.0)
    assert shown(fast) == shown(slow)
    assert "warned" in shown(fast) and "chatty 9" not in shown(fast)
    assert fast.shown == slow.shown and fast.hidden == slow.hidden == {"p": 10}


def test_plugins_interleaved_in_time_come_out_in_time_order_either_way(
    consoles: list[PluginConsoleHandler],
) -> None:
    """Two plugins' batches, each late for the other's records, come out oldest first."""
    start = 1_700_000_000_000_000_000
    texts = []
    for kind, with_filter in (("fields", False), ("records", True)):
        handler = console_on(consoles, f"order{kind}")
        for plugin in ("a", "b"):
            if with_filter:
                logging.getLogger(f"order{kind}.{plugin}").addFilter(lambda record: True)
        replayers = {plugin: Replayer(f"order{kind}", plugin) for plugin in ("a", "b")}
        for first in range(0, 40, 10):
            for plugin, offset in (("b", 5), ("a", 0)):
                batch = [
                    (entry(at, f"{plugin} {at}", at_ns=start + at * 1_000_000), logging.INFO, None)
                    for at in range(first + offset, first + offset + 5)
                ]
                replayers[plugin].replay_all(batch, {**OTEL, "plugin": plugin})
        texts.append(shown(handler))
    assert texts[0] == texts[1]
    bodies = [" ".join(line.split()[-2:]) for line in texts[0].splitlines()]
    assert bodies == [f"{'a' if at % 10 < 5 else 'b'} {at}" for at in range(40)]


def test_a_handler_on_the_plugins_logger_gets_the_records_replay_always_made(
    consoles: list[PluginConsoleHandler], tmp_path: Path
) -> None:
    """A FileHandler and a capturing handler next to the console: full LogRecords, as before."""
    console = console_on(consoles, "user")
    capture = CaptureHandler()
    log_file = tmp_path / "plugin.log"
    file_handler = logging.FileHandler(log_file, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(funcName)s:%(message)s"))
    logging.getLogger("user.p").handlers[:] = [capture, file_handler]
    replayer = Replayer("user", "p")
    replayer.replay_all(varied(), OTEL)
    file_handler.close()
    reference = Replayer("user", "p")
    expected = [
        reference.make_record(reference.logger_for(e.scope).name, e, lv, st, OTEL) for e, lv, st in varied()
    ]
    # Formatting sets record.message, as the FileHandler did on the records the capture holds.
    assert log_file.read_text(encoding="utf-8") == "".join(file_handler.format(r) + "\n" for r in expected)
    assert [r.__dict__ for r in capture.records] == [r.__dict__ for r in expected]
    assert console.batches == 0 and shown(console).count("plain message") == 1


def test_caplog_sees_the_replayed_records(
    consoles: list[PluginConsoleHandler], caplog: pytest.LogCaptureFixture
) -> None:
    """pytest's caplog on the root logger, next to the console: every record, with record.otel."""
    console = console_on(consoles, "caplogged")
    logging.getLogger("caplogged").propagate = True
    caplog.set_level(1)
    Replayer("caplogged", "p").replay_all(varied(), OTEL)
    replayed = [r for r in caplog.records if r.name.startswith("caplogged.")]
    assert [r.otel.seq for r in replayed] == [e.seq for e, _, _ in varied()]
    assert console.batches == 0 and "plain message" in shown(console)


def test_a_filter_on_the_records_logger_still_decides_what_the_console_shows(
    consoles: list[PluginConsoleHandler],
) -> None:
    """A filter on the logger a record is replayed on sees every record and hides what it refuses."""
    console = console_on(consoles, "filtered")
    seen: list[str] = []

    def refuse_secrets(record: logging.LogRecord) -> bool:
        seen.append(record.getMessage())
        return "secret" not in record.getMessage()

    logging.getLogger("filtered.p.app").addFilter(refuse_secrets)
    batch = [(entry(1, "open"), logging.INFO, None), (entry(2, "a secret"), logging.INFO, None)]
    Replayer("filtered", "p").replay_all(batch, OTEL)
    assert seen == ["open", "a secret"]
    assert "open" in shown(console) and "secret" not in shown(console)


def test_a_filter_on_the_console_still_sees_log_records(consoles: list[PluginConsoleHandler]) -> None:
    """A filter on the console handler gets LogRecords, and what it refuses is not shown."""
    console = console_on(consoles, "handlerfilter")
    console.addFilter(lambda record: "secret" not in record.getMessage())
    batch = [(entry(1, "open"), logging.INFO, None), (entry(2, "a secret"), logging.INFO, None)]
    Replayer("handlerfilter", "p").replay_all(batch, OTEL)
    assert console.batches == 0
    assert "open" in shown(console) and "secret" not in shown(console)


def test_a_patched_call_handlers_still_sees_every_record(
    consoles: list[PluginConsoleHandler], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Who replaces Logger.callHandlers gets each LogRecord; the console shows the same text."""
    fast, _ = replay_both(consoles, "unpatched", [varied()])
    console = console_on(consoles, "patched")
    seen: list[int] = []
    original = logging.Logger.callHandlers

    def call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
        seen.append(record.otel.seq)
        original(self, record)

    monkeypatch.setattr(logging.Logger, "callHandlers", call_handlers)
    Replayer("patched", "p").replay_all(varied(), OTEL)
    assert seen == [e.seq for e, _, _ in varied()]
    assert console.batches == 0 and shown(console) == shown(fast)


def test_a_handler_that_wants_only_warnings_leaves_the_rest_to_the_fast_path(
    consoles: list[PluginConsoleHandler],
) -> None:
    """Records below a user handler's level skip the LogRecord; the ones it takes get one."""
    console = console_on(consoles, "mixed")
    capture = CaptureHandler()
    capture.setLevel(logging.WARNING)
    logging.getLogger("mixed.p").addHandler(capture)
    Replayer("mixed", "p").replay_all(varied(), OTEL)
    fast, _ = replay_both(consoles, "mixedref", [varied()])
    assert [r.levelno for r in capture.records] == [lv for _, lv, _ in varied() if lv >= logging.WARNING]
    assert console.batches > 0 and shown(console) == shown(fast)


def test_a_failing_format_is_reported_with_its_log_record(
    consoles: list[PluginConsoleHandler], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record the console cannot format goes to handleError as the LogRecord replay makes."""
    console = console_on(consoles, "failing")
    reported: list[logging.LogRecord] = []
    monkeypatch.setattr(console, "handleError", reported.append)
    batch = [
        (entry(1, "fine"), logging.INFO, None),
        (entry(2, "bad", attributes={"k": Unprintable()}), logging.INFO, None),
    ]
    Replayer("failing", "p").replay_all(batch, OTEL)
    assert [r.getMessage() for r in reported] == ["bad"] and reported[0].name == "failing.p.app"
    assert "fine" in shown(console) and "bad" not in shown(console)


def test_a_console_that_writes_at_once_gets_log_records_and_shows_the_same(
    consoles: list[PluginConsoleHandler],
) -> None:
    """Without a reorder window the console takes LogRecords as ever; its text is the held console's."""
    fast, _ = replay_both(consoles, "atonceref", [varied()])
    direct = CountingConsole(io.StringIO())
    direct.setFormatter(PluginConsoleFormatter(max_stack_lines=3))
    consoles.append(direct)
    logger = logging.getLogger("atonce")
    logger.handlers[:] = [direct]
    logger.setLevel(1)
    logger.propagate = False
    Replayer("atonce", "p").replay_all(sorted(varied(), key=lambda built: built[0].time), OTEL)
    assert direct.batches == 0 and shown(direct) == shown(fast)


class EmitsItsOwnWay(CountingConsole):
    """A console whose emit a user replaced: it must see every LogRecord."""

    def __init__(self, stream: io.StringIO, **options: Any) -> None:
        super().__init__(stream, **options)
        self.emitted: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.emitted.append(record)
        super().emit(record)


def test_a_console_subclass_with_its_own_emit_gets_log_records(consoles: list[PluginConsoleHandler]) -> None:
    """A subclass that replaces emit is given LogRecords, one per record, and shows the same text."""
    fast, _ = replay_both(consoles, "ownemitref", [varied()])
    own = EmitsItsOwnWay(io.StringIO(), reorder_millis=60_000)
    own.setFormatter(PluginConsoleFormatter(max_stack_lines=3))
    consoles.append(own)
    logger = logging.getLogger("ownemit")
    logger.handlers[:] = [own]
    logger.setLevel(1)
    logger.propagate = False
    Replayer("ownemit", "p").replay_all(varied(), OTEL)
    assert own.batches == 0 and [r.otel.seq for r in own.emitted] == [e.seq for e, _, _ in varied()]
    assert shown(own) == shown(fast)


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")


PLUGIN = """
import logging, sys
logging.basicConfig(level=logging.DEBUG)
log = logging.getLogger("worker")
logging.addLevelName(25, "NOTICE")
log.info("plain")
log.info("café ✓ 日本語")
log.warning("bell\\x07 esc\\x1b[2J cr\\r", extra={"x": "\\x1b[31m", "n": 1})
log.info("first\\nINFO  forged line\\nthird")
log.log(25, "a notice")
logging.getLogger("worker.io").debug("below the console's level")
try:
    raise ValueError("bad \\x1b[31mvalue")
except ValueError:
    log.exception("failed")
for n in range(200):
    log.info("record %d", n, extra={"n": n})
"""
_CLOCK = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} ", re.MULTILINE)
_PID = re.compile(r"\(pid \d+\)")


def run_plugin(tmp_path: Path, *head: str) -> str:
    """`run` of the plugin, its console text without the clock column and the plugin's pid."""
    script = write_plugin(tmp_path, "varied", PLUGIN)
    command = [*head, "run", "-p", "varied", "--", PYTHON, str(script)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return _PID.sub("(pid)", _CLOCK.sub("", result.stderr))


def test_run_shows_a_real_plugin_as_it_does_through_log_records(tmp_path: Path, host_env: Path) -> None:
    """The real `run` CLI: the same console text, whether the console reads entries or LogRecords."""
    as_run = run_plugin(tmp_path, PYTHON, "-m", "otel_plugin_logs")
    # A pass-through filter on the root logger changes nothing for the stdlib but keeps the bridge
    # on LogRecords all the way.
    with_filter = (
        "import logging, runpy, sys; logging.getLogger().addFilter(lambda record: True); "
        "sys.argv[0] = 'otel-plugin-logs'; runpy.run_module('otel_plugin_logs', run_name='__main__')"
    )
    through_records = run_plugin(tmp_path, PYTHON, "-c", with_filter)
    assert "record 199" in as_run and "a notice" in as_run and "ValueError" in as_run
    assert as_run == through_records
