"""The seed runtime's payload ({"entries": [...]}) through HostLogBridge.handle_legacy_batch."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from helpers import CaptureHandler, MemorySink, wait_until

from otel_plugin_logs import PROTOCOL_VERSION, HostLogBridge, ProtocolError, UnixSocketTransport

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "weather.py", line 3, in fetch\n'
    "    raise ConnectionError('upstream down')\n"
    "ConnectionError: upstream down"
)


def entry(message: str, **fields: Any) -> dict[str, Any]:
    """A seed-style entry, as the seed handler's LogEntry.model_dump() gives it."""
    return {
        "timestamp_ms": 1_700_000_000_000,
        "level": logging.INFO,
        "logger_name": "plugin.weather",
        "message": message,
        "exception_text": "",
        **fields,
    }


@pytest.fixture
def bridge(host_env: Path) -> Iterator[tuple[HostLogBridge, MemorySink]]:
    """A started bridge exporting to memory."""
    sink = MemorySink()
    with HostLogBridge(sink=sink) as started:
        yield started, sink


def test_entries_are_replayed_on_the_plugins_loggers(bridge: Any, capture: CaptureHandler) -> None:
    """Each entry becomes a record on plugin.<name>.<logger>, at its stdlib level, with its time."""
    host, _ = bridge
    result = host.handle_legacy_batch(
        "weather",
        {"entries": [entry("fetched", logger_name="plugin.weather.http"), entry("slow", level=30)]},
        pid=4242,
    )
    assert (result.records, result.rejected) == (2, 0)
    records = capture.plugin_records("weather")
    assert [(r.name, r.levelno, r.getMessage()) for r in records] == [
        ("plugin.weather.http", logging.INFO, "fetched"),
        ("plugin.weather", logging.WARNING, "slow"),
    ]
    assert records[0].created == pytest.approx(1_700_000_000.0)
    assert records[0].otel.runner_pid == 4242


def test_entries_are_exported_with_severity_and_the_plugins_resource(bridge: Any) -> None:
    """Severity number and text come from the level; the resource is the plugin the host named."""
    host, sink = bridge
    host.handle_legacy_batch("weather", {"entries": [entry("a", level=40), entry("b", level=25)]}, pid=7)
    assert host.force_flush(5000)
    exported = sink.entries("weather")
    assert [(e.body, e.severity_number, e.severity_text) for e in exported] == [
        ("a", 17, "ERROR"),
        ("b", 12, "LEVEL25"),
    ]
    resource = sink.items[0][0].attributes
    assert resource["service.name"] == "weather" and resource["process.pid"] == 7


def test_exception_text_becomes_the_stacktrace_and_leaves_the_body(bridge: Any) -> None:
    """exception_text is exception.stacktrace (type and message from its last line), not repeated in the body."""
    host, sink = bridge
    host.handle_legacy_batch(
        "weather",
        {"entries": [entry("request failed\n" + TRACEBACK, level=40, exception_text=TRACEBACK)]},
    )
    assert host.force_flush(5000)
    (exported,) = sink.entries("weather")
    assert exported.body == "request failed"
    assert exported.attributes["exception.stacktrace"] == TRACEBACK
    assert exported.attributes["exception.type"] == "ConnectionError"
    assert exported.attributes["exception.message"] == "upstream down"


def test_the_plugin_is_the_one_the_host_names_whatever_the_payload_says(bridge: Any) -> None:
    """Fields claiming another plugin or resource are ignored: the records belong to the named plugin."""
    host, sink = bridge
    claims = {"plugin": "payments", "service.name": "payments", "resource": {"plugin.name": "payments"}}
    host.handle_legacy_batch("weather", {"entries": [entry("mine", **claims)], **claims})
    assert host.force_flush(5000)
    assert [e.body for e in sink.entries("weather")] == ["mine"]
    assert sink.entries("payments") == [] and "payments" not in host.stats().plugins


@pytest.mark.parametrize(
    ("logger_name", "replayed_as"),
    [
        ("plugin.weather", "plugin.weather"),
        ("plugin.weather.http", "plugin.weather.http"),
        ("plugin.other.http", "plugin.weather.plugin.other.http"),
        ("plugin_runtime.loader", "plugin.weather.plugin_runtime.loader"),
        ("plugin.weatherman", "plugin.weather.plugin.weatherman"),
    ],
)
def test_logger_names_stay_inside_the_plugins_namespace(
    bridge: Any, capture: CaptureHandler, logger_name: str, replayed_as: str
) -> None:
    """The plugin's own prefix is not doubled, and no other name leaves plugin.<name>."""
    host, _ = bridge
    host.handle_legacy_batch("weather", {"entries": [entry("x", logger_name=logger_name)]})
    assert [r.name for r in capture.plugin_records("weather")] == [replayed_as]


def test_json_and_msgpack_bytes_give_the_same_records_as_the_map(bridge: Any) -> None:
    """The payload may arrive as its map, JSON text, JSON bytes or msgpack bytes."""
    host, sink = bridge
    payload = {"entries": [entry("same", level="WARNING")]}
    for form in (payload, json.dumps(payload), json.dumps(payload).encode(), msgpack.packb(payload)):
        host.handle_legacy_batch("weather", form)
    assert host.force_flush(5000)
    assert [(e.body, e.severity_text) for e in sink.entries("weather")] == [("same", "WARNING")] * 4


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xc1\x00", "malformed"),
        (b'{"entries": [', "malformed"),
        ("[" * 100_000 + "]" * 100_000, "malformed"),
        (b"x" * (8 * 1024 * 1024 + 1), "frame_too_large"),
        ({"entries": [entry("big " * 1_100_000)] * 2}, "frame_too_large"),
        ([1, 2], "malformed_batch"),
        ({"records": []}, "malformed_batch"),
        ({"entries": "not a list"}, "malformed_batch"),
        ({"entries": [entry("x")] * 10_001}, "malformed_batch"),
    ],
    ids=[
        "not-msgpack",
        "truncated-json",
        "deep-nesting",
        "too-large-bytes",
        "too-large-map",
        "not-a-map",
        "no-entries",
        "entries-not-a-list",
        "too-many",
    ],
)
def test_a_bad_payload_is_refused_with_a_counted_reason(bridge: Any, payload: Any, reason: str) -> None:
    """A payload that is not a batch raises ProtocolError and is counted in bad_input under that reason."""
    host, _ = bridge
    with pytest.raises(ProtocolError) as raised:
        host.handle_legacy_batch("weather", payload)
    assert raised.value.reason == reason
    assert host.stats().plugins["weather"].bad_input == {reason: 1}


def test_a_bad_payload_loses_nothing_else(bridge: Any) -> None:
    """After a refused payload the same plugin's next batch is taken in whole."""
    host, sink = bridge
    with pytest.raises(ProtocolError):
        host.handle_legacy_batch("weather", b"\xc1")
    host.handle_legacy_batch("weather", {"entries": [entry("after")]})
    assert host.force_flush(5000)
    assert [e.body for e in sink.entries("weather")] == ["after"]


def test_the_reason_is_the_one_a_bad_frame_gets_on_the_socket(bridge: Any) -> None:
    """Undecodable input counts as bad_input 'malformed' on both paths, for the plugin it came from."""
    host, _ = bridge
    env = host.register_runner("socketplugin")
    transport = UnixSocketTransport(env["OTEL_PLUGIN_LOGS_SOCKET"])
    hello = {"t": "hello", "v": PROTOCOL_VERSION, "token": env["OTEL_PLUGIN_LOGS_TOKEN"], "pid": os.getpid()}
    transport.connect({**hello, "stream": 1}, 10)
    transport.send(len(b"\xc1").to_bytes(4, "big") + b"\xc1")
    assert wait_until(
        lambda: "socketplugin" in host.stats().plugins and host.stats().plugins["socketplugin"].bad_input
    )
    transport.close()
    with pytest.raises(ProtocolError):
        host.handle_legacy_batch("weather", b"\xc1")
    plugins = host.stats().plugins
    assert plugins["socketplugin"].bad_input == plugins["weather"].bad_input == {"malformed": 1}


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ({"timestamp_ms": "1700000000000"}, "timestamp_ms"),
        ({"timestamp_ms": -1}, "timestamp_ms"),
        ({"level": 20.5}, "level"),
        ({"level": True}, "entries.1.level: Input should be a valid integer"),
        ({"level": "LOUD"}, "unknown level name"),
        ({"message": None}, "message"),
        ({"logger_name": "x" * 5000}, "logger_name"),
        ({"exception_text": 3}, "exception_text"),
    ],
)
def test_an_invalid_entry_is_refused_alone_and_counted(bridge: Any, bad: dict[str, Any], why: str) -> None:
    """The other entries of the batch are kept; the invalid one is counted as invalid_entry with its field."""
    host, sink = bridge
    result = host.handle_legacy_batch(
        "weather", {"entries": [entry("ok 1"), {**entry("bad"), **bad}, entry("ok 2")]}
    )
    assert (result.records, result.rejected) == (2, 1)
    assert result.reason.startswith("entries.1") and why in result.reason
    assert host.force_flush(5000)
    assert [e.body for e in sink.entries("weather")] == ["ok 1", "ok 2"]
    stats = host.stats().plugins["weather"]
    assert stats.bad_input == {"invalid_entry": 1}
    assert stats.emitted == stats.exported == 2 and stats.uncounted == 0


def test_a_refusal_is_reported_once_as_a_warning_on_one_line(
    bridge: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The bridge's warning names the plugin and the reason, with control characters escaped."""
    host, _ = bridge
    with caplog.at_level(logging.WARNING, logger="otel_plugin_logs"):
        for _ in range(3):
            host.handle_legacy_batch("weather", {"entries": [entry("x", level="\n\x1b[2JFAKE")]})
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("otel_plugin_logs")]
    assert len(warnings) == 1
    assert "weather" in warnings[0] and "invalid_entry" in warnings[0]
    assert "\n" not in warnings[0] and "\x1b" not in warnings[0]


def test_every_record_is_accounted_for_under_the_rate_limit(host_env: Path) -> None:
    """Entries beyond the plugin's rate limit are dropped and counted: emitted = exported + dropped."""
    sink = MemorySink()
    with HostLogBridge(sink=sink, rate_limit_records_per_second=1.0, rate_limit_burst_records=30) as host:
        for batch in range(5):
            host.handle_legacy_batch("weather", {"entries": [entry(f"{batch}.{i}") for i in range(20)]})
        assert host.force_flush(5000)
        stats = host.stats().plugins["weather"]
    assert stats.emitted == 100
    assert stats.exported == len(sink.entries("weather")) < 100
    assert stats.dropped.get("rate_limited") == 100 - stats.exported
    assert stats.uncounted == 0 and stats.pending == 0


def test_concurrent_batches_of_one_runner_are_all_taken_in(bridge: Any) -> None:
    """Batches handed over from several threads at once: none is discarded as a resend of another."""
    host, sink = bridge
    errors: list[BaseException] = []

    def send(thread: int) -> None:
        try:
            for batch in range(20):
                host.handle_legacy_batch(
                    "weather", {"entries": [entry(f"{thread}.{batch}.{i}") for i in range(10)]}, pid=99
                )
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert host.force_flush(10_000)
    stats = host.stats().plugins["weather"]
    assert len({e.body for e in sink.entries("weather")}) == 800
    assert stats.exported == stats.emitted == 800 and stats.duplicates == 0


def test_final_releases_the_runner_and_a_new_one_starts_afresh(bridge: Any) -> None:
    """After final=True the runner's stream is retired; a runner reusing the pid is a new stream."""
    host, sink = bridge
    host.handle_legacy_batch("weather", {"entries": [entry("first life")]}, pid=5, final=True)
    assert host.force_flush(5000)
    host.handle_legacy_batch("weather", {"entries": [entry("second life")]}, pid=5)
    assert host.force_flush(5000)
    stats = host.stats().plugins["weather"]
    assert [e.body for e in sink.entries("weather")] == ["first life", "second life"]
    assert stats.emitted == stats.exported == 2 and stats.uncounted == 0


def test_the_bridge_must_be_started(host_env: Path) -> None:
    """Before start() there is nowhere to put the records: a clear error, not a silent loss."""
    with pytest.raises(RuntimeError, match="start the bridge"):
        HostLogBridge(sink=MemorySink()).handle_legacy_batch("weather", {"entries": []})
