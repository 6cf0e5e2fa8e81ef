"""RunnerLogHandler in-process, with the in-memory transport: emit, bounds, drop policy, lifecycle."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from typing import Any

import msgpack
import pytest
from helpers import MemorySink
from runner.clocks import SkewedClock

from otel_plugin_logs import ConfigError, HostLogBridge, InMemoryTransport, RunnerLogHandler
from otel_plugin_logs.runner.transport import TransportError
from otel_plugin_logs.wire.framing import HEADER_BYTES
from otel_plugin_logs.wire.records import Rec


class Collecting:
    """The host side of an InMemoryTransport: keeps records, acks everything at once."""

    def __init__(self) -> None:
        self.records: list[list[Any]] = []
        self.headers: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, body: bytes) -> int:
        message = msgpack.unpackb(body, raw=False)
        with self.lock:
            self.records.extend(message.get("records", []))
            self.headers.append({k: v for k, v in message.items() if k != "records"})
            return self.records[-1][Rec.SEQ] if self.records else 0


def _logger(handler: logging.Handler, name: str = "unit") -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(1)
    logger.propagate = False
    return logger


def test_emit_forwards_records_with_their_fields() -> None:
    """Records reach the transport rendered, with level, logger, code and thread attributes and extras."""
    host = Collecting()
    handler = RunnerLogHandler(InMemoryTransport(host))
    log = _logger(handler)
    log.warning("hello %s", "world", extra={"user": "ann", "n": 2})
    assert handler.shutdown(5000)
    (record,) = host.records
    assert record[Rec.BODY] == "hello world" and record[Rec.SEVERITY_TEXT] == "WARNING"
    assert record[Rec.SEVERITY_NUMBER] == 13 and record[Rec.LEVELNO] == 30 and record[Rec.LOGGER] == "unit"
    assert record[Rec.ATTRIBUTES]["user"] == "ann" and record[Rec.ATTRIBUTES]["n"] == 2
    assert record[Rec.ATTRIBUTES]["thread.name"] == threading.current_thread().name
    assert record[Rec.TRACE_ID] is None


def test_message_is_rendered_at_emit_time() -> None:
    """Mutating an argument after the call does not change what was logged."""
    host = Collecting()
    handler = RunnerLogHandler(InMemoryTransport(host))
    state = {"v": 1}
    _logger(handler).info("state %s", state)
    state["v"] = 2
    handler.shutdown(5000)
    assert host.records[0][Rec.BODY] == "state {'v': 1}"


def test_emit_never_raises_even_when_formatting_fails() -> None:
    """A broken format string goes to handleError (from the sender, which renders it), never to the caller."""
    handler = RunnerLogHandler(InMemoryTransport(Collecting()))
    errors: list[logging.LogRecord] = []
    handler.handleError = errors.append  # type: ignore[method-assign]
    _logger(handler).info("%d", "not a number")
    assert handler.force_flush(5000)
    assert len(errors) == 1 and handler.stats()["dropped"] == {"encode_error": 1}
    handler.shutdown(1000)


def test_a_broken_format_with_a_mutable_argument_fails_on_the_callers_side() -> None:
    """Rendered at once because its argument could change, a broken format goes to handleError at the call."""
    handler = RunnerLogHandler(InMemoryTransport(Collecting()))
    errors: list[logging.LogRecord] = []
    handler.handleError = errors.append  # type: ignore[method-assign]
    _logger(handler).info("%d", ["not a number"])
    assert len(errors) == 1 and handler.stats()["accepted"] == 0
    handler.shutdown(1000)


def test_full_buffer_drops_lowest_severity_oldest_first_and_counts() -> None:
    """Over the count bound, DEBUG goes before INFO before WARNING; errors survive; drops are counted."""
    host = Collecting()
    transport = InMemoryTransport(host, fail=True)
    clock = SkewedClock()
    handler = RunnerLogHandler(
        transport, max_queue_records=10, reconnect_max_backoff_millis=10_000, clock=clock
    )
    log = _logger(handler)
    for i in range(5):
        log.error("error %d", i)
    for i in range(10):
        log.debug("debug %d", i)
    for i in range(5):
        log.info("info %d", i)
    stats = handler.stats()
    assert stats["queued"] == 10 and stats["dropped"] == {"queue_full": 10}
    # the host comes back
    transport.fail = False
    clock.advance(60.0)  # past any backoff
    assert handler.shutdown(5000) is False  # everything left was sent, but 10 records were dropped earlier
    bodies = [r[Rec.BODY] for r in host.records]
    assert bodies == [f"error {i}" for i in range(5)] + [f"info {i}" for i in range(5)]
    assert host.headers[-1]["dropped"] == {"queue_full": 10}


def test_byte_bound_applies_to_large_messages(capfd: pytest.CaptureFixture[str]) -> None:
    """The buffer is bounded by bytes too: a few huge messages cannot pile up."""
    transport = InMemoryTransport(Collecting(), fail=True)
    handler = RunnerLogHandler(transport, max_queue_bytes=1024 * 1024, reconnect_max_backoff_millis=10_000)
    log = _logger(handler)
    for _ in range(20):
        log.info("x" * 200_000)
    stats = handler.stats()
    assert stats["queued_bytes"] <= 1024 * 1024
    assert stats["dropped"]["queue_full"] >= 15
    handler.shutdown(0)
    assert "[otel-plugin-logs gave up]" in capfd.readouterr().err


def test_shutdown_is_idempotent_and_honours_its_deadline(capfd: pytest.CaptureFixture[str]) -> None:
    """With the host unreachable, shutdown returns by its deadline, gives records up to stderr, and a second call is a no-op."""
    handler = RunnerLogHandler(InMemoryTransport(Collecting(), fail=True))
    _logger(handler).error("cannot be delivered")
    started = time.monotonic()
    assert handler.shutdown(300) is False
    assert time.monotonic() - started < 5
    assert handler.shutdown(300) is False
    err = capfd.readouterr().err
    assert err.count("[otel-plugin-logs gave up] ERROR unit: cannot be delivered") == 1
    assert handler.stats()["dropped"] == {"shutdown_unsent": 1}


def test_records_of_the_bridges_own_loggers_never_enter() -> None:
    """otel_plugin_logs.* records are skipped so a send failure cannot produce records to send."""
    host = Collecting()
    handler = RunnerLogHandler(InMemoryTransport(host))
    _logger(handler, "otel_plugin_logs.anything").error("internal")
    _logger(handler, "app").error("kept")
    handler.shutdown(5000)
    assert [r[Rec.BODY] for r in host.records] == ["kept"]


def test_level_and_logger_filters_are_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Level threshold and include/exclude prefixes come from arguments or OTEL_PLUGIN_LOGS_* variables."""
    monkeypatch.setenv("OTEL_PLUGIN_LOGS_EXCLUDE_LOGGERS", "noisy")
    host = Collecting()
    handler = RunnerLogHandler(InMemoryTransport(host), level="WARNING")
    _logger(handler, "noisy.lib").error("excluded")
    _logger(handler, "app").info("below the level")
    _logger(handler, "app").warning("kept")
    handler.shutdown(5000)
    assert [r[Rec.BODY] for r in host.records] == ["kept"]


def test_handler_without_host_configuration_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside a host, constructing the socket handler says what is missing."""
    monkeypatch.delenv("OTEL_PLUGIN_LOGS_SOCKET", raising=False)
    with pytest.raises(ConfigError, match="needs the host's socket and token"):
        RunnerLogHandler()


def test_span_context_is_captured_on_the_emitting_thread() -> None:
    """Inside an active span the record carries its trace id, span id and flags."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("t")
    host = Collecting()
    handler = RunnerLogHandler(InMemoryTransport(host))
    with tracer.start_as_current_span("s") as span:
        _logger(handler).info("inside")
        context = span.get_span_context()
    handler.shutdown(5000)
    record = host.records[0]
    assert record[Rec.TRACE_ID] == context.trace_id.to_bytes(16, "big")
    assert record[Rec.SPAN_ID] == context.span_id.to_bytes(8, "big")
    assert record[Rec.TRACE_FLAGS] & 1 == 1
    _ = trace


def test_structlog_event_dict_becomes_body_and_attributes() -> None:
    """A structlog event dict in record.msg becomes body=event plus typed attributes."""
    structlog = pytest.importorskip("structlog")
    host = Collecting()
    handler = RunnerLogHandler(InMemoryTransport(host))
    _logger(handler, "structured")
    structlog.configure(
        processors=[structlog.stdlib.add_log_level, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    try:
        structlog.get_logger("structured").info("user logged in", user="ann", attempts=3)
    finally:
        structlog.reset_defaults()
    handler.shutdown(5000)
    (record,) = host.records
    assert record[Rec.BODY] == "user logged in"
    assert record[Rec.ATTRIBUTES]["user"] == "ann" and record[Rec.ATTRIBUTES]["attempts"] == 3
    assert "event" not in record[Rec.ATTRIBUTES]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_starts_with_an_empty_buffer_and_its_own_stream() -> None:
    """After fork the child has no records of the parent and a different stream id."""
    transport = InMemoryTransport(Collecting(), fail=True)
    handler = RunnerLogHandler(transport, reconnect_max_backoff_millis=10_000)
    _logger(handler).info("parent record")
    parent_stream = handler.stats()["stream"]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        ok = (
            handler.stats()["queued"] == 0
            and handler.stats()["stream"] != parent_stream
            and handler.stats()["accepted"] == 0
        )
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    assert handler.stats()["queued"] == 1
    handler.shutdown(0)


def test_frames_stay_under_the_maximum_frame_size() -> None:
    """Many big records are split into several batches, each below the frame limit."""
    sizes: list[int] = []
    host = Collecting()

    def deliver(body: bytes) -> int:
        sizes.append(len(body) + HEADER_BYTES)
        return host(body)

    handler = RunnerLogHandler(InMemoryTransport(deliver), max_frame_bytes=256 * 1024)
    log = _logger(handler)
    for i in range(40):
        log.info("%d %s", i, "y" * 30_000)
    handler.shutdown(10_000)
    assert len(host.records) == 40
    assert max(sizes) <= 256 * 1024 and len(sizes) > 1


def test_record_whose_extras_exceed_a_frame_is_kept_without_them() -> None:
    """Attributes that nest up to the caps and add up past a frame are dropped, the record kept and marked."""
    host = Collecting()
    handler = RunnerLogHandler(InMemoryTransport(host), max_frame_bytes=256 * 1024)
    huge = {f"k{i}": {f"j{j}": "v" * 4000 for j in range(100)} for i in range(20)}
    _logger(handler).info("big extras", extra={"huge": huge, "small": 1})
    _logger(handler).info("next")
    handler.shutdown(5000)
    first, second = host.records
    assert first[Rec.BODY] == "big extras" and "huge" not in first[Rec.ATTRIBUTES]
    assert first[Rec.ATTRIBUTES]["otel_plugin_logs.attributes.dropped_bytes"] > 256 * 1024 // 4
    assert "code.line.number" in first[Rec.ATTRIBUTES]
    assert second[Rec.BODY] == "next"


def test_a_broken_connection_mid_batch_loses_nothing() -> None:
    """Frames built before a send fails are kept for the resend after reconnecting."""
    host = Collecting()
    calls = {"n": 0}

    def flaky(body: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionError("boom")
        return host(body)

    class Flaky(InMemoryTransport):
        def send(self, frame: bytes) -> None:
            try:
                super().send(frame)
            except ConnectionError as error:
                from otel_plugin_logs import TransportError

                self.connected = False
                raise TransportError(str(error)) from None

    handler = RunnerLogHandler(Flaky(flaky), max_frame_bytes=128 * 1024, max_batch_records=10_000)
    log = _logger(handler)
    for i in range(60):
        log.info("%d %s", i, "z" * 10_000)
    handler.shutdown(10_000)
    seqs = sorted({r[Rec.SEQ] for r in host.records})
    assert seqs == list(range(1, 61))


class CountingConnects(InMemoryTransport):
    """An in-memory transport that counts handshakes."""

    def __init__(self, deliver: Any) -> None:
        super().__init__(deliver)
        self.hellos = 0

    def connect(self, hello: dict[str, Any], timeout_seconds: float) -> dict[str, Any]:
        self.hellos += 1
        return super().connect(hello, timeout_seconds)


def test_flush_after_shutdown_sends_nothing_and_never_reconnects() -> None:
    """logging.shutdown() flushes handlers after our shutdown at exit: no second hello, nothing resent."""
    host = Collecting()
    transport = CountingConnects(host)
    handler = RunnerLogHandler(transport)
    _logger(handler).info("once")
    assert handler.shutdown(5000)
    frames = len(host.headers)
    assert handler.force_flush(1000)
    handler.flush()
    time.sleep(0.2)
    assert transport.hellos == 1 and len(host.headers) == frames
    assert not [t for t in threading.enumerate() if t.name == "otel-plugin-logs-sender" and t.is_alive()]


def test_records_that_went_out_before_a_disconnect_are_not_also_counted_dropped() -> None:
    """A frame sent on a connection that later broke may have arrived: only what never went out is given up."""
    frames: list[bytes] = []
    transport = InMemoryTransport(lambda body: frames.append(body) or 0)  # a host that never acknowledges
    handler = RunnerLogHandler(transport)
    log = _logger(handler)
    for i in range(3):
        log.info("sent %d", i)
    assert handler.force_flush(2000) and len(frames) == 1
    transport.fail = True  # the connection breaks; that frame is unacknowledged
    log.info("never sent")
    assert handler.shutdown(300) is False
    assert handler.stats()["dropped"] == {"shutdown_unsent": 1}


SIGNAL_LOGGER = """
import logging, signal, sys, time
from otel_plugin_logs import InMemoryTransport, RunnerLogHandler
handler = RunnerLogHandler(InMemoryTransport(lambda body: 0, fail=True), max_queue_records=500)
log = logging.getLogger("unit")
log.addHandler(handler)
log.setLevel(logging.INFO)
log.propagate = False
calls = []
def on_alarm(signum, frame):
    log.warning("from the signal handler")
    calls.append(signum)
signal.signal(signal.SIGVTALRM, on_alarm)
signal.setitimer(signal.ITIMER_VIRTUAL, 0.0002, 0.0002)
deadline = time.monotonic() + 1.0
while time.monotonic() < deadline:  # a lock-holding emit is interrupted sooner or later
    log.info("busy")
signal.setitimer(signal.ITIMER_VIRTUAL, 0)
handler.shutdown(100)
print("signal handler logged", len(calls), "times")
"""


def test_a_signal_handler_that_logs_during_emit_does_not_deadlock() -> None:
    """Logging from a signal handler that interrupted emit (holding the handler's lock) goes through."""

    # In a child process: a deadlock there is a timeout here, not a hung test run.
    result = subprocess.run(
        [sys.executable, "-c", SIGNAL_LOGGER], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert int(result.stdout.split()[3]) > 10


def test_reconnects_back_off_when_the_host_drops_every_connection_after_its_welcome() -> None:
    """A host that accepts the hello and then drops the connection is retried ever more slowly, not in a loop."""

    class DropsAfterWelcome(CountingConnects):
        def send(self, frame: bytes) -> None:
            raise TransportError("host closed the connection")

    transport = DropsAfterWelcome(lambda body: 0)
    handler = RunnerLogHandler(transport, reconnect_max_backoff_millis=5000)
    log = _logger(handler)
    log.info("never taken")
    time.sleep(2.0)
    handler.shutdown(100)
    # Backoff 50, 100, 200, 400, 800 ms (with jitter) fits at most ~6 attempts in 2 s; no backoff: ~40.
    assert 2 <= transport.hellos <= 8


def test_stack_trace_is_the_one_at_the_logging_call_even_if_the_exception_travels_on() -> None:
    """An exception logged and then re-raised: frames it passes through later are not in the logged trace."""
    host = Collecting()
    handler = RunnerLogHandler(InMemoryTransport(host), schedule_delay_millis=5000)
    log = _logger(handler)

    def inner() -> None:
        try:
            raise ZeroDivisionError("boom")
        except ZeroDivisionError:
            log.exception("failed")
            raise

    def outer_frame_after_logging() -> None:
        inner()

    with pytest.raises(ZeroDivisionError):
        outer_frame_after_logging()
    assert handler.shutdown(5000)
    stack = host.records[0][Rec.EXCEPTION][2]
    assert "in inner" in stack and "outer_frame_after_logging" not in stack


def test_wait_acked_over_an_in_memory_transport_returns_once_the_host_settled() -> None:
    """wait_acked() over InMemoryTransport into a real bridge sees records settled after their batch."""
    with HostLogBridge(sink=MemorySink()) as bridge:
        handler = RunnerLogHandler(InMemoryTransport(lambda body: bridge.handle_batch("memory", body)))
        log = _logger(handler)
        for i in range(10):
            log.info("record %d", i)
        try:
            started = time.monotonic()
            assert handler.wait_acked(20_000)
            assert time.monotonic() - started < 5.0  # as soon as settled, not at the timeout
            assert handler.stats()["acked_seq"] == 10
        finally:
            handler.shutdown(5_000)
