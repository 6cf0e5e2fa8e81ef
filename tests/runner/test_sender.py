"""The sender's states and backoff, driven through RunnerLogHandler with an injected clock."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from otel_plugin_logs import InMemoryTransport, RunnerLogHandler
from otel_plugin_logs.runner.sender import MAX_WINDOW_BYTES, TRANSITIONS, SenderState
from otel_plugin_logs.runner.transport import TransportError, TransportRejected

from .clocks import FrozenClock


class Attempts(InMemoryTransport):
    """An in-memory transport whose connects fail (or are refused) while ``failure`` is set."""

    def __init__(self, failure: Exception | None) -> None:
        super().__init__(lambda body: 1 << 62)
        self.failure = failure
        self.attempts = 0

    def connect(self, hello: dict[str, Any], timeout_seconds: float) -> dict[str, Any]:
        self.attempts += 1
        if self.failure is not None:
            raise self.failure
        return super().connect(hello, timeout_seconds)


def _until(condition: Callable[[], bool], timeout_seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _logger(handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger("sender.unit")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def test_finished_is_final_and_rejected_only_finishes() -> None:
    """No state leads out of FINISHED; a rejected sender can only finish."""
    assert TRANSITIONS[SenderState.FINISHED] == frozenset()
    assert TRANSITIONS[SenderState.REJECTED] == {SenderState.FINISHED}


def test_a_failed_connect_is_retried_only_after_its_backoff() -> None:
    """With the clock standing still the sender does not retry; moving it past the backoff does."""
    clock = FrozenClock()
    transport = Attempts(TransportError("down"))
    handler = RunnerLogHandler(transport, clock=clock, reconnect_max_backoff_millis=10_000)
    _logger(handler).info("waits")
    assert _until(lambda: transport.attempts == 1)
    time.sleep(0.2)
    assert transport.attempts == 1
    clock.advance(0.07)  # past the first backoff (50 ms, jitter up to 1.2x)
    assert _until(lambda: transport.attempts == 2)
    handler.shutdown(0)


def test_the_backoff_doubles_with_each_failure() -> None:
    """After the second failure, the first backoff's worth of time is no longer enough."""
    clock = FrozenClock()
    transport = Attempts(TransportError("down"))
    handler = RunnerLogHandler(transport, clock=clock, reconnect_max_backoff_millis=10_000)
    _logger(handler).info("waits")
    assert _until(lambda: transport.attempts == 1)
    clock.advance(0.07)
    assert _until(lambda: transport.attempts == 2)
    clock.advance(0.07)  # less than the second backoff (at least 80 ms)
    time.sleep(0.2)
    assert transport.attempts == 2
    handler.shutdown(0)


def test_a_connected_sender_finishes_at_shutdown() -> None:
    """The state goes from connected to finished, and a second shutdown leaves it there."""
    handler = RunnerLogHandler(Attempts(None))
    _logger(handler).info("sent")
    assert handler.force_flush(5000)
    assert handler.stats()["state"] == SenderState.CONNECTED.value
    assert handler.shutdown(5000)
    assert handler.stats()["state"] == SenderState.FINISHED.value
    assert handler.shutdown(5000) and handler.stats()["state"] == SenderState.FINISHED.value


def test_a_rejected_runner_gives_its_records_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    """After the host refuses, queued records are counted as rejected and written to stderr."""
    transport = Attempts(TransportRejected("bad token"))
    handler = RunnerLogHandler(transport)
    _logger(handler).warning("nobody takes this")
    assert _until(lambda: handler.stats()["dropped"].get("rejected_by_host") == 1)
    assert handler.stats()["rejected"] == "bad token" and transport.attempts == 1
    assert handler.shutdown(1000) is False
    assert "[otel-plugin-logs gave up] WARNING sender.unit: nobody takes this" in capfd.readouterr().err


def test_a_broken_link_is_disconnected_until_the_clock_allows_a_reconnect() -> None:
    """A send failure moves the sender to disconnected; it reconnects after the backoff and resends."""
    clock = FrozenClock()
    delivered: list[bytes] = []
    transport = InMemoryTransport(lambda body: delivered.append(body) or 0)
    handler = RunnerLogHandler(transport, clock=clock)
    log = _logger(handler)
    log.info("first")
    assert handler.force_flush(5000)
    transport.fail = True
    log.info("second")
    assert _until(lambda: handler.stats()["state"] == SenderState.DISCONNECTED.value)
    transport.fail = False
    clock.advance(1.0)
    assert _until(lambda: handler.stats()["state"] == SenderState.CONNECTED.value)
    assert handler.force_flush(5000)
    handler.shutdown(1000)
    assert len(delivered) >= 3  # the first frame twice (never acknowledged), then the second


def test_wait_acked_returns_as_soon_as_the_host_acknowledged() -> None:
    """Over an in-memory transport that acknowledges each batch, wait_acked returns long before its timeout."""
    handler = RunnerLogHandler(InMemoryTransport(lambda body: 1 << 62))
    log = _logger(handler)
    for i in range(100):
        log.info("record %d", i)
    started = time.monotonic()
    assert handler.wait_acked(20_000)
    assert time.monotonic() - started < 2.0
    assert handler.stats()["acked_seq"] >= 100 and handler.stats()["unacked_bytes"] == 0
    handler.shutdown(1000)


class CountingTransport(InMemoryTransport):
    """The in-memory double, counting how often the sender looks for acknowledgements."""

    def __init__(self, deliver: Callable[[bytes], int]) -> None:
        super().__init__(deliver)
        self.receives = 0

    def receive(self, timeout_seconds: float) -> list[dict[str, Any]]:
        self.receives += 1
        return super().receive(timeout_seconds)


def test_a_flush_waiting_on_a_full_send_window_does_not_spin_the_sender() -> None:
    """With the host acknowledging nothing, a flush times out after a paced number of sender cycles."""
    transport = CountingTransport(lambda body: 0)
    handler = RunnerLogHandler(transport, max_queue_bytes=64 * 1024 * 1024)
    log = logging.getLogger("sender.window")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        for i in range(MAX_WINDOW_BYTES // 10_000 + 100):
            log.info("%d %s", i, "x" * 10_000)  # more than the send window may hold
        handler.force_flush(2000)  # whether all of it went or not, the window is full from now on
        for i in range(100):
            log.info("%d waits", i)
        before = transport.receives
        assert not handler.force_flush(400)
        assert transport.receives - before < 100  # one cycle per poll, not one per notification
        assert handler.stats()["queued"] > 0
    finally:
        handler.shutdown(5000)  # closing, the window no longer holds records back
