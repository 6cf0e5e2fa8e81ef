"""Hostile records over the real socket (issue #6, cases 11-13): clamped, truncated or rejected; never a traceback."""

from __future__ import annotations

import contextlib
import logging
import math
from pathlib import Path

import pytest
from conftest import TEXT_FORMAT, Host, no_tracebacks
from helpers import PYTHON, write_plugin
from reliability_support import RawRunner, describe, drained, settled, wait_for, wire_record

from otel_plugin_logs import PluginProcess
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


def test_unreasonable_values_are_clamped_truncated_or_rejected_with_a_reason(
    host: Host, bystander: PluginProcess, capfd: pytest.CaptureFixture[str]
) -> None:
    """Deep nesting, 50k attributes, huge values, NaN/inf, negative and far-future times: repaired and marked, invalid records counted; no traceback; others unaffected."""
    runner = RawRunner(host.bridge.socket_path)
    assert runner.hello(host.token("hostile"))["t"] == "welcome"
    good = [
        wire_record(1, "deep", attributes={"deep": _nested(400)}),
        wire_record(2, "wide", attributes={f"k{i}": i for i in range(50_000)}),
        wire_record(3, "long value", attributes={"v": "v" * 1_000_000, "b": b"\x00" * 1_000_000}),
        wire_record(4, "x" * 2_000_000),
        wire_record(5, "floats", attributes={"nan": math.nan, "inf": math.inf, "ninf": -math.inf}),
        wire_record(6, "negative time", time_ns=-1, observed_ns=-5),
        wire_record(7, "far future", time_ns=FAR_FUTURE, observed_ns=2**63),
        wire_record(8, "huge int", attributes={"n": 2**64 - 1}),
        wire_record(9, "odd level", levelno=10**18, severity_number=0, severity_text="INFO\x1b[31m"),
        wire_record(10, "bad ids", trace_id=b"\x01" * 3, span_id=b"\x00" * 8, flags=2**32 - 1),
        wire_record(11, "exception", exception=["\x1b[2J" * 100, "m" * 100_000, "s\n" * 100_000]),
        wire_record(12, "empty key", attributes={"": 1, "k" * 10_000: 2}),
        wire_record(13, "negative level", levelno=-(2**63)),
    ]
    invalid = [
        wire_record(0, "seq zero"),
        wire_record(15, "float time", time_ns=math.nan),
        wire_record(16, 12345),
        [17, 1, 2],
        wire_record(18, "severity 99", severity_number=99),
        wire_record(19, "attributes list", attributes=[1, 2]),
        wire_record(20, "exception scalar", exception=7),
        "not even a list",
    ]
    runner.batch(good + invalid, accepted=21)
    runner.bye(accepted=21)
    runner.close()
    assert wait_for(lambda: drained(host.bridge, "hostile"), 20)
    stats = host.bridge.stats().plugins["hostile"]
    entries = {e.body[:20]: e for e in host.sink.entries("hostile")}
    assert stats.exported == len(good) == len(entries), describe(stats)
    assert stats.dropped == {"invalid_record": len(invalid)}, describe(stats)
    assert stats.emitted == 21 and settled(stats)

    deep = entries["deep"].attributes["deep"]
    assert _depth(deep) == MAX_VALUE_DEPTH
    wide = entries["wide"]
    assert len(wide.attributes) <= 128 and wide.dropped_attributes >= 50_000 - 128
    long_value = entries["long value"].attributes
    assert long_value["v"].endswith(TRUNCATION_MARKER) and len(long_value["v"]) <= 4096 + 16
    assert len(long_value["b"]) <= 4096
    big = next(e for body, e in entries.items() if body.startswith("xxxx"))
    assert (
        len(big.body.encode()) <= 64 * 1024
        and big.attributes["otel_plugin_logs.body.original_bytes"] == 2_000_000
    )
    assert entries["floats"].attributes == {"nan": "nan", "inf": "inf", "ninf": "-inf"}
    negative = entries["negative time"]
    assert (
        negative.time > 0
        and negative.observed_time > 0
        and negative.attributes[ORIGINAL_TIME_ATTRIBUTE] == -1
    )
    future = entries["far future"]
    assert future.time == future.observed_time and future.attributes[ORIGINAL_TIME_ATTRIBUTE] == str(
        FAR_FUTURE
    )
    assert entries["huge int"].attributes["n"] == str(2**64 - 1)
    odd = entries["odd level"]
    assert odd.severity_number == 24 and odd.severity_text.isprintable() and "\x1b" not in odd.severity_text
    assert entries["bad ids"].trace_id is None and entries["bad ids"].span_id is None
    exception = entries["exception"].attributes
    assert len(exception["exception.message"]) <= 4096 + 16
    assert len(exception["exception.type"]) <= 256
    assert set(entries["empty key"].attributes) <= {"_", "k" * 256}
    assert entries["negative level"].severity_number in range(25)

    replayed = [
        r
        for r in host.everything.records
        if getattr(r, "otel", None) is not None and r.otel.plugin == "hostile"
    ]
    assert len(replayed) == len(good) - 1  # level clamped to 0 (NOTSET) is below every logger level
    assert max(len(r.getMessage().encode()) for r in replayed) <= 64 * 1024 * 4
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
