"""Hostile records over the real socket (issue #6, cases 11-13): clamped, truncated or rejected; never a traceback."""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import PYTHON, write_plugin
from reliability_support import (
    TEXT_FORMAT,
    Host,
    RawRunner,
    describe,
    drained,
    no_tracebacks,
    settled,
    wait_for,
    wire_record,
)

from otel_plugin_logs import PluginProcess
from otel_plugin_logs.export.otlp import Entry
from otel_plugin_logs.host.entries import ORIGINAL_TIME_ATTRIBUTE
from otel_plugin_logs.wire.framing import encode_message
from otel_plugin_logs.wire.records import MAX_VALUE_DEPTH, TRUNCATION_MARKER

FAR_FUTURE = 2**64 - 1


def _nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth):
        value = [value]
    return value


def _depth(value: object) -> int:
    depth = 0
    while isinstance(value, list) and value:
        value = value[0]
        depth += 1
    return depth


def _bystander_intact(host: Host, bystander: PluginProcess) -> None:
    assert bystander.wait(60) == 0
    assert host.bridge.wait_for_plugin("bystander", 10)
    assert host.bridge.force_flush(10_000)
    stats = host.bridge.stats().plugins["bystander"]
    assert stats.exported == 200 and stats.dropped == {} and settled(stats), describe(stats)


@dataclass(frozen=True)
class Repaired:
    """A hostile but well-typed record: exported, repaired the way ``check`` says."""

    record: list[Any]
    check: Callable[[Entry], bool]
    replayed: bool = True  # a level clamped to 0 (NOTSET) is below every logger level


def _big_body(entry: Entry) -> bool:
    return (
        len(entry.body.encode()) <= 64 * 1024
        and entry.attributes["otel_plugin_logs.body.original_bytes"] == 2_000_000
    )


def _long_values(entry: Entry) -> bool:
    value, blob = entry.attributes["v"], entry.attributes["b"]
    return value.endswith(TRUNCATION_MARKER) and len(value) <= 4096 + 16 and len(blob) <= 4096


def _far_future(entry: Entry) -> bool:
    return entry.time == entry.observed_time and entry.attributes[ORIGINAL_TIME_ATTRIBUTE] == str(FAR_FUTURE)


def _exception(entry: Entry) -> bool:
    attributes = entry.attributes
    return len(attributes["exception.message"]) <= 4096 + 16 and len(attributes["exception.type"]) <= 256


REPAIRED = {
    "deep nesting": Repaired(
        wire_record(1, "deep", attributes={"deep": _nested(400)}),
        lambda e: _depth(e.attributes["deep"]) == MAX_VALUE_DEPTH,
    ),
    "50k attributes": Repaired(
        wire_record(1, "wide", attributes={f"k{i}": i for i in range(50_000)}),
        lambda e: len(e.attributes) <= 128 and e.dropped_attributes >= 50_000 - 128,
    ),
    "huge values": Repaired(
        wire_record(1, "long value", attributes={"v": "v" * 1_000_000, "b": b"\x00" * 1_000_000}),
        _long_values,
    ),
    "huge body": Repaired(wire_record(1, "x" * 2_000_000), _big_body),
    "nan and inf": Repaired(
        wire_record(1, "floats", attributes={"nan": math.nan, "inf": math.inf, "ninf": -math.inf}),
        lambda e: e.attributes == {"nan": "nan", "inf": "inf", "ninf": "-inf"},
    ),
    "negative time": Repaired(
        wire_record(1, "negative time", time_ns=-1, observed_ns=-5),
        lambda e: e.time > 0 and e.observed_time > 0 and e.attributes[ORIGINAL_TIME_ATTRIBUTE] == -1,
    ),
    "far-future time": Repaired(
        wire_record(1, "far future", time_ns=FAR_FUTURE, observed_ns=2**63), _far_future
    ),
    "huge int": Repaired(
        wire_record(1, "huge int", attributes={"n": 2**64 - 1}), lambda e: e.attributes["n"] == str(2**64 - 1)
    ),
    "odd level": Repaired(
        wire_record(1, "odd level", levelno=10**18, severity_number=0, severity_text="INFO\x1b[31m"),
        lambda e: e.severity_number == 24 and e.severity_text.isprintable() and "\x1b" not in e.severity_text,
    ),
    "bad ids": Repaired(
        wire_record(1, "bad ids", trace_id=b"\x01" * 3, span_id=b"\x00" * 8, flags=2**32 - 1),
        lambda e: e.trace_id is None and e.span_id is None,
    ),
    "huge exception": Repaired(
        wire_record(1, "exception", exception=["\x1b[2J" * 100, "m" * 100_000, "s\n" * 100_000]), _exception
    ),
    "empty and long keys": Repaired(
        wire_record(1, "empty key", attributes={"": 1, "k" * 10_000: 2}),
        lambda e: set(e.attributes) <= {"_", "k" * 256},
    ),
    "negative level": Repaired(
        wire_record(1, "negative level", levelno=-(2**63)),
        lambda e: e.severity_number in range(25),
        replayed=False,
    ),
}

INVALID = {
    "sequence zero": wire_record(0, "seq zero"),
    "float time": wire_record(1, "float time", time_ns=math.nan),
    "body not text": wire_record(1, 12345),
    "too short": [1, 1, 2],
    "severity 99": wire_record(1, "severity 99", severity_number=99),
    "attributes a list": wire_record(1, "attributes list", attributes=[1, 2]),
    "exception a scalar": wire_record(1, "exception scalar", exception=7),
    "not a list": "not even a list",
}


def _send_one(host: Host, record: object) -> None:
    runner = RawRunner(host.bridge.socket_path)
    assert runner.hello(host.token("hostile"))["t"] == "welcome"
    runner.batch([record], accepted=1)
    runner.bye(accepted=1)
    runner.close()
    assert wait_for(lambda: drained(host.bridge, "hostile"), 20)


def _replayed(host: Host) -> list[logging.LogRecord]:
    return [
        r
        for r in host.everything.records
        if getattr(r, "otel", None) is not None and r.otel.plugin == "hostile"
    ]


@pytest.mark.parametrize("case", REPAIRED.values(), ids=REPAIRED.keys())
def test_an_unreasonable_value_is_repaired_and_marked(
    host: Host, bystander: PluginProcess, capfd: pytest.CaptureFixture[str], case: Repaired
) -> None:
    """A hostile but well-typed record is exported repaired, replayed within bounds; no traceback; others unaffected."""
    _send_one(host, case.record)
    stats = host.bridge.stats().plugins["hostile"]
    assert stats.exported == 1 and stats.dropped == {} and settled(stats), describe(stats)
    (entry,) = host.sink.entries("hostile")
    assert case.check(entry)
    replayed = _replayed(host)
    assert len(replayed) == int(case.replayed)
    assert all(len(r.getMessage().encode()) <= 64 * 1024 * 4 for r in replayed)
    assert not no_tracebacks(host.everything.records)
    _bystander_intact(host, bystander)
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("record", INVALID.values(), ids=INVALID.keys())
def test_an_invalid_record_is_counted_not_exported(
    host: Host, bystander: PluginProcess, capfd: pytest.CaptureFixture[str], record: object
) -> None:
    """A record of the wrong shape is dropped as invalid_record, its connection kept; no traceback; others unaffected."""
    _send_one(host, record)
    stats = host.bridge.stats().plugins["hostile"]
    assert stats.exported == 0 and stats.dropped == {"invalid_record": 1}, describe(stats)
    assert stats.emitted == 1 and settled(stats) and stats.bad_input == {}
    assert not no_tracebacks(host.everything.records)
    _bystander_intact(host, bystander)
    assert "Traceback" not in capfd.readouterr().err


def test_non_utf8_text_costs_only_its_bad_bytes(host: Host, bystander: PluginProcess) -> None:
    """Invalid UTF-8 in msgpack strings (body, logger, attribute key and value) is replaced; the record and the connection survive; others unaffected."""
    runner = RawRunner(host.bridge.socket_path)
    assert runner.hello(host.token("garbled"))["t"] == "welcome"
    frame = encode_message(
        {
            "t": "batch",
            "stream": 1,
            "dropped": {},
            "accepted": 1,
            "records": [wire_record(1, "BODYMARK", logger="LOGMARK", attributes={"KEYMARK": "VALMARK"})],
        }
    )
    for mark in (b"BODYMARK", b"LOGMARK", b"KEYMARK", b"VALMARK"):
        frame = frame.replace(mark, b"\xff" + mark[1:-1] + b"\xc3")  # same length, invalid UTF-8
    runner.send_raw(frame)
    runner.batch([wire_record(2, b"\xff\xfe"), wire_record(3, "after")])  # bytes where text belongs: invalid
    runner.bye(accepted=3)
    runner.close()
    assert wait_for(lambda: drained(host.bridge, "garbled"), 20)
    stats = host.bridge.stats().plugins["garbled"]
    assert stats.bad_input == {} and stats.connections == 1
    assert stats.exported == 2 and stats.dropped == {"invalid_record": 1} and settled(stats), describe(stats)
    first, after = host.sink.entries("garbled")
    assert first.body == "\ufffdODYMAR\ufffd" and first.scope == "\ufffdOGMAR\ufffd"
    assert first.attributes == {"\ufffdEYMAR\ufffd": "\ufffdALMAR\ufffd"}
    assert after.body == "after"
    assert not no_tracebacks(host.everything.records)
    _bystander_intact(host, bystander)


def test_runner_message_with_undecodable_file_name_is_delivered_not_dropped(
    tmp_path: Path, host: Host
) -> None:
    """A message naming a non-UTF-8 file (surrogateescape) reaches the host, the bad byte replaced, not dropped as encode_error."""
    script = write_plugin(
        tmp_path,
        "fsname",
        """
        import logging, os
        log = logging.getLogger("files"); log.setLevel(logging.INFO)
        name = os.fsdecode(b"caf\\xe9.txt")
        log.info("opening %s", name, extra={"path": name})
        log.info("done")
        """,
    )
    process = host.bridge.spawn_plugin("fsname", [PYTHON, str(script)])
    assert process.wait(60) == 0 and host.bridge.wait_for_plugin("fsname", 10)
    assert host.bridge.force_flush(10_000)
    stats = host.bridge.stats().plugins["fsname"]
    assert settled(stats), describe(stats)
    assert stats.dropped == {}, describe(stats)
    first, second = (e.body for e in host.sink.entries("fsname"))
    assert first.startswith("opening caf") and first.endswith(".txt") and second == "done"
    first.encode("utf-8")  # the undecodable byte was replaced or escaped, not kept as a surrogate


def test_fields_named_like_logrecord_internals_and_format_bombs_have_no_effect(
    host: Host, bystander: PluginProcess
) -> None:
    """Attributes named getMessage, levelno, __dict__, msg, args, exc_info... stay data; '%50000000d' is shown literally."""
    runner = RawRunner(host.bridge.socket_path)
    assert runner.hello(host.token("sneaky"))["t"] == "welcome"
    bomb = "%50000000d %(x)s %s %n %%"
    internals = {
        "getMessage": "pwned",
        "levelno": 50,
        "levelname": "CRITICAL",
        "__dict__": {"msg": "pwned"},
        "__class__": "pwned",
        "msg": "%s%s%s",
        "args": [1, 2, 3],
        "exc_info": [1, 2, 3],
        "exc_text": "fake traceback",
        "stack_info": "fake stack",
        "name": "root",
        "otel": "fake",
        "message": "fake",
        "created": "yesterday",
        "process": -1,
        "processName": "host",
    }
    runner.batch(
        [
            wire_record(1, bomb, attributes=internals, logger="plugin.sneaky"),
            wire_record(2, "%(message)s %(asctime)s", levelno=20, attributes={"args": {"x": "y"}}),
        ]
    )
    runner.bye(accepted=2)
    runner.close()
    assert wait_for(lambda: drained(host.bridge, "sneaky"), 20)
    replayed = [
        r
        for r in host.everything.records
        if getattr(r, "otel", None) is not None and r.otel.plugin == "sneaky"
    ]
    assert len(replayed) == 2
    first, second = replayed
    assert first.getMessage() == bomb and second.getMessage() == "%(message)s %(asctime)s"
    for record in replayed:
        assert callable(record.getMessage) and record.args == () and record.exc_info is None
        assert record.levelno == 20 and record.levelname == "INFO"
        assert record.processName == "sneaky" and record.process == record.otel.runner_pid
        assert isinstance(record.created, float)
        for key in ("getMessage", "__dict__", "__class__", "message", "otel"):
            assert key not in record.__dict__ or key in {"otel", "message"}
        assert not isinstance(record.__dict__.get("message", ""), dict)
    assert first.name == "plugin.sneaky.plugin.sneaky" and first.exc_text is None and first.stack_info is None
    assert first.otel.attributes["getMessage"] == "pwned"
    formatted = [line for line in host.text_lines() if "|sneaky|" in line]
    assert len(formatted) == 2 and all(len(line) < 500 for line in formatted)
    assert formatted[0].endswith("|" + bomb)
    assert not no_tracebacks(host.everything.records)
    _bystander_intact(host, bystander)


CONTROLS = {
    "newline": "first line\nFAKE|plugin.admin|root: granted",
    "crlf": "first\r\nsecond\rthird",
    "csi": "\x1b[31mred\x1b[0m \x1b[2J\x1b[H",
    "osc": "\x1b]0;owned title\x07 bell",
    "c1": "\x9b31m eight-bit CSI \x85 NEL",
    "bidi": "user \u202egnp.exe\u202c \u2066isolate\u2069",
    "separators": "line\u2028separator\u2029paragraph",
    "nul": "nul\x00del\x7fbs\x08tab\tvt\x0bff\x0c",
}

CONTROL_PLUGIN = """
import logging, sys, threading
controls = {controls!r}
log = logging.getLogger("evil\\n\\x1b[2Jname\\r.\\u202epart")
log.setLevel(logging.INFO)
def work():
    for key, text in controls.items():
        log.warning("%s: %s", key, text)
    try:
        raise ValueError("\\x1b[31mboom\\nFAKE line")
    except ValueError:
        log.exception("with \\x1b[1mexception\\x1b[0m")
thread = threading.Thread(target=work, name="worker\\n\\x1b[2J")
thread.start(); thread.join()
sys.stderr.write("stderr \\x1b[31mred\\x1b[0m\\rcarriage\\x07\\n")
"""


def test_control_characters_stay_on_one_line_and_are_shown_not_executed(tmp_path: Path, host: Host) -> None:
    """CR/LF, ANSI CSI/OSC, C1, bidi and separators in messages, logger and thread names and stderr: one record, one escaped line."""
    script = write_plugin(tmp_path, "controls", CONTROL_PLUGIN.format(controls=CONTROLS))
    process = host.bridge.spawn_plugin("controls", [PYTHON, str(script)])
    assert process.wait(60) == 0 and host.bridge.wait_for_plugin("controls", 10)
    assert host.bridge.force_flush(10_000)
    assert wait_for(lambda: any("stderr" in line for line in host.text_lines()), 10)
    records = [
        r
        for r in host.everything.records
        if getattr(r, "otel", None) is not None and r.otel.plugin == "controls"
    ]
    assert len(records) == len(CONTROLS) + 2  # the messages, the exception, the stderr line
    formatter = logging.Formatter(TEXT_FORMAT)
    forbidden = {
        "\n",
        "\r",
        "\x1b",
        "\x07",
        "\x9b",
        "\x85",
        "\x00",
        "\x7f",
        "\x08",
        "\x0b",
        "\x0c",
        "\u202e",
        "\u2066",
        "\u2028",
        "\u2029",
    }
    for record in records:
        record.message = record.getMessage()
        line = formatter.formatMessage(record)  # the record's line, without a traceback
        assert not forbidden & set(line), repr(line)
        assert record.name.startswith("plugin.controls")
    text = host.text.getvalue()
    lines = text.splitlines()
    record_lines = [line for line in lines if line.split("|", 1)[0] in {"WARNING", "ERROR"}]
    assert len(record_lines) == len(CONTROLS) + 2, lines
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
    assert "\\x1b[31mred\\x1b[0m" in text and "first line\\nFAKE|plugin.admin|root: granted" in text
    assert "\\u202egnp.exe" in text and "stderr \\x1b[31mred\\x1b[0m\\rcarriage\\x07" in text
    assert "|worker\\n\\x1b[2J|" in text
    (exc,) = [r for r in records if r.exc_text]
    assert "\\x1b[31mboom" in exc.exc_text and "\x1b" not in exc.exc_text
    exported = {e.body.split(":")[0]: e.body for e in host.sink.entries("controls")}
    assert (
        exported["csi"] == "csi: " + CONTROLS["csi"]
    )  # the export keeps the body as sent; escaping is for text


def test_bridge_warnings_about_hostile_input_stay_one_line(host: Host) -> None:
    """The bridge's own warnings quoting hostile input (drop reasons, keys, kinds) cannot inject lines or escapes."""
    for attack in (
        {"t": "batch", "stream": 1, "dropped": {"\n\x1b[2Jx": -1}, "accepted": 1, "records": []},
        {"t": "\n\x1b[2JFAKE", "records": []},
        {
            "t": "batch",
            "stream": 1,
            "dropped": {"ok\n\x1b[31m": 3},
            "accepted": 3,
            "records": [wire_record(1, "x", attributes=[1])],
        },
    ):
        runner = RawRunner(host.bridge.socket_path)
        assert runner.hello(host.token("injector"))["t"] == "welcome"
        with contextlib.suppress(OSError):
            runner.send(attack)
            runner.bye(accepted=3)
        runner.wait_closed(3)
        runner.close()
    assert wait_for(lambda: host.bridge.wait_for_plugin("injector", 0.05), 10)
    host.bridge.shutdown(2000)
    warnings = [r for r in host.everything.records if r.name.startswith("otel_plugin_logs")]
    assert warnings
    for record in warnings:
        message = record.getMessage()
        assert "\n" not in message and "\x1b" not in message, repr(message)
    stats = host.bridge.stats().plugins["injector"]
    assert stats.bad_input.get("malformed_batch") == 1 and stats.bad_input.get("unexpected_frame") == 1
    assert all(
        reason.replace("_", "").replace("-", "").replace(".", "").isalnum() for reason in stats.dropped
    )
