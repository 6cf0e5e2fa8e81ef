"""The sender thread: connects, sends batches, keeps them until acknowledged, reconnects.

Its link to the host is one ``SenderState``; every change goes through ``_enter``, which
knows the allowed transitions. Time comes from an injectable ``Clock``, so backoff and
deadlines can be tested without touching any private field.
"""

from __future__ import annotations

import enum
import logging
import os
import sys
import threading
from collections.abc import Callable

from otel_plugin_logs.config.runner import RunnerConfig
from otel_plugin_logs.runner.backoff import Backoff
from otel_plugin_logs.runner.buffer import Q, QueuedRecord
from otel_plugin_logs.runner.encoding import WireLimits, build_frames, record_of
from otel_plugin_logs.runner.fallback import (
    STDERR_MARKER,
    StderrFallback,
    give_up_records,
    give_up_untransmitted,
    write_stderr,
)
from otel_plugin_logs.runner.ledger import Ledger
from otel_plugin_logs.runner.rows import SiteCache
from otel_plugin_logs.runner.transport import Transport, TransportError, TransportRejected
from otel_plugin_logs.wire import messages
from otel_plugin_logs.wire.drops import DropReason
from otel_plugin_logs.wire.framing import encode_message, encode_message_with_records
from otel_plugin_logs.wire.messages import ACK, FLUSH

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from typing import Any, Final

    from otel_plugin_logs.runner.clock import Clock

# How long a batch gathers after a send before the next one goes (unless it fills up first).
LINGER_SECONDS: Final = 0.005
# How often the sender looks again while it waits for acknowledgements or a deadline.
_POLL_SECONDS: Final = 0.02
_CONNECT_TIMEOUT_SECONDS: Final = 5.0
# Most bytes of batches in flight (sent, not acknowledged). Past it records wait here, where
# they are shed by severity and counted, rather than in the host's intake, which drops what
# waited there too long as host_overload: a few seconds of the host's work keep it busy.
MAX_WINDOW_BYTES: Final = 4 * 1024 * 1024
AckHook = Callable[[int], None]


class SenderState(enum.Enum):
    """Where the sender's link to the host stands."""

    DISCONNECTED = "disconnected"  # no link yet, or it broke: the next cycle connects (after backoff)
    CONNECTED = "connected"
    BYE_SENT = "bye_sent"  # closing, and the bye went out on this link
    REJECTED = "rejected"  # the host refused this runner: records go to stderr from now on
    FINISHED = "finished"  # the transport is closed: nothing is sent any more


TRANSITIONS: Final[dict[SenderState, frozenset[SenderState]]] = {
    SenderState.DISCONNECTED: frozenset({SenderState.CONNECTED, SenderState.REJECTED, SenderState.FINISHED}),
    SenderState.CONNECTED: frozenset({SenderState.DISCONNECTED, SenderState.BYE_SENT, SenderState.FINISHED}),
    SenderState.BYE_SENT: frozenset({SenderState.DISCONNECTED, SenderState.FINISHED}),
    SenderState.REJECTED: frozenset({SenderState.FINISHED}),
    SenderState.FINISHED: frozenset(),
}
_LINKED: Final = frozenset({SenderState.CONNECTED, SenderState.BYE_SENT})


class Sender:
    """The background half of a ``RunnerLogHandler``."""

    def __init__(
        self,
        ledger: Ledger,
        transport: Transport,
        config: RunnerConfig,
        clock: Clock,
        plugin_version: str | None,
    ) -> None:
        self._ledger = ledger
        self._transport = transport
        self._config = config
        self._clock = clock
        self._plugin_version = plugin_version
        self._limits = WireLimits.of(config)
        self._sites = SiteCache()  # call sites' packed fields, from batch to batch
        self._batch_records = config.max_batch_records
        self._batch_bytes = min(1024 * 1024, config.max_frame_bytes // 4)
        self._max_window_bytes = min(config.max_queue_bytes * 3 // 4, MAX_WINDOW_BYTES)
        self._delay_seconds = config.schedule_delay_millis / 1000.0
        self._fallback = StderrFallback(clock.monotonic)
        self.done = threading.Condition(threading.RLock())  # reentrant: a fatal signal flushes
        self._wake = threading.Event()
        self.state = SenderState.DISCONNECTED
        self.rejected_reason: str | None = None
        self.deadline: float | None = None  # set by shutdown: from then on the sender drains
        self.backoff = Backoff(clock, config.reconnect_max_backoff_millis / 1000.0)
        self._flush_asked = 0
        self._flush_answered = 0
        self._ack_probe = False  # wait_acked asks: an empty batch makes the host answer with its position
        self.last_error: str | None = None
        self.thread: threading.Thread | None = None  # started on the first record
        self.ident: int | None = -1
        self.on_ack: AckHook | None = None
        self.on_encode_error: Callable[[logging.LogRecord], None] | None = None
        self.on_connect_attempt: Callable[[float], None] | None = None

    # --- state -------------------------------------------------------------------------

    def _enter(self, state: SenderState) -> SenderState:
        """Move to ``state`` if allowed from the current one; returns the previous state."""
        with self._ledger.lock:
            previous = self.state
            if state is not previous and state not in TRANSITIONS[previous]:
                raise RuntimeError(f"sender cannot go from {previous.name} to {state.name}")
            self.state = state
            return previous

    @property
    def connected(self) -> bool:
        return self.state in _LINKED

    @property
    def closing(self) -> bool:
        return self.deadline is not None

    # --- the thread ----------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def ensure_thread(self, *, closing: bool = False) -> None:
        with self.done:
            if self.thread is not None and self.thread.is_alive():
                return
            if self.closing and not closing:
                return  # shut down: a later flush() (logging.shutdown at exit) starts nothing
            thread = threading.Thread(target=self._run, name="otel-plugin-logs-sender", daemon=True)
            self.thread = thread
            thread.start()
            self.ident = thread.ident

    def _run(self) -> None:
        ledger, window = self._ledger, self._ledger.window
        lingering = False
        while True:
            waiting_for_acks = len(window) > 0 and self.connected
            with ledger.lock:  # an emit after this sees the flag and wakes us
                ledger.sender_idle = ledger.buffer.count == 0 and not lingering
            if lingering:
                timeout = LINGER_SECONDS
            else:
                timeout = _POLL_SECONDS if (self.closing or waiting_for_acks) else self._delay_seconds
            self._clock.wait(self._wake, timeout)
            self._wake.clear()
            created = window.created_seq
            try:
                self._cycle()
            except Exception as error:  # the sender must survive anything
                self.last_error = f"sender: {type(error).__name__}: {error}"
            # A record that finds the link idle goes at once; after a send, the next batch
            # gathers for a moment, so a burst goes in few frames rather than one per record.
            lingering = window.created_seq > created
            with self.done:
                self.done.notify_all()
            deadline = self.deadline
            if deadline is not None and (self._drained() or self._clock.monotonic() >= deadline):
                self.finish()
                return

    def _drained(self) -> bool:
        ledger = self._ledger
        if ledger.buffer.count or not ledger.window.all_transmitted:
            return False  # records, or frames not yet out on a live connection
        return self.state is not SenderState.CONNECTED  # the bye went out, or no link to say it on

    def _cycle(self) -> None:
        if self.state is SenderState.REJECTED:
            self._give_up_queued(DropReason.REJECTED)
            return
        if not self.connected and not self._connect():
            return
        buffer = self._ledger.buffer
        try:
            self._send_queued()
            self._read_acks(0.0)
            if self._flush_asked > self._flush_answered and not self.closing:
                if buffer.count:
                    self._send_queued()
                else:  # nothing left to send: an empty batch carries the answer
                    self._transport.send(encode_message_with_records(self._header(), []))
            elif self._ack_probe and len(self._ledger.window) and not buffer.count and not self.closing:
                # A transport that only hears from the host in reply to a frame (an RPC, the
                # in-memory double) learns of records settled since through an empty batch.
                self._ack_probe = False
                self._transport.send(encode_message_with_records(self._header(), []))
                self._read_acks(0.0)
            if self.closing and buffer.count == 0 and self.state is SenderState.CONNECTED:
                self._transport.send(encode_message(self._header(bye=True)))
                self._enter(SenderState.BYE_SENT)
        except TransportError as error:
            self._on_disconnect(str(error))

    # --- the link ------------------------------------------------------------------------

    def _connect(self) -> bool:
        if not self.backoff.ready():
            return False
        now = self._clock.monotonic()
        hello = messages.hello(
            self._config.token, os.getpid(), self._ledger.stream, self._plugin_version, sys.version.split()[0]
        )
        timeout = _CONNECT_TIMEOUT_SECONDS
        if self.deadline is not None:
            timeout = min(timeout, max(0.05, self.deadline - now))
        if self.on_connect_attempt is not None:
            self.on_connect_attempt(self.backoff.seconds)
        try:
            welcome = self._transport.connect(hello, timeout)
        except TransportRejected as error:
            self.rejected_reason = error.reason
            self.last_error = str(error)
            write_stderr(f"{STDERR_MARKER} {error}; records of this process go to stderr from now on")
            self._enter(SenderState.REJECTED)
            return False
        except (TransportError, OSError) as error:
            self.last_error = str(error)
            self.backoff.failed()
            return False
        self._enter(SenderState.CONNECTED)
        self._batch_bytes = batch_bytes_for(welcome, self._batch_bytes)
        self._release(int(welcome.get("acked", 0)))
        try:
            # Resend whatever the host has not settled; it discards duplicates by sequence.
            with self._ledger.lock:
                frames = self._ledger.window.to_resend()
            for frame in frames:
                self._transport.send(frame.frame)
                with self._ledger.lock:
                    self._ledger.window.mark_transmitted(frame.last_seq)
            with self._ledger.lock:
                self._ledger.window.all_sent()
        except TransportError as error:
            self._on_disconnect(str(error))
            return False
        return True

    def _on_disconnect(self, reason: str) -> None:
        self.last_error = reason
        with self._ledger.lock:
            self._ledger.window.connection_lost()
            if self.connected:
                self._enter(SenderState.DISCONNECTED)
        self._transport.close()
        self.backoff.failed()

    # --- batches -------------------------------------------------------------------------

    def _send_queued(self) -> None:
        ledger, sites = self._ledger, self._sites
        while ledger.buffer.count:
            if ledger.window.held_bytes > self._max_window_bytes and not self.closing:
                return  # the host is behind; let records wait (and shed by priority) here
            with ledger.lock:
                items = ledger.buffer.take(self._batch_records)
            if not items:
                return
            # All frames are kept before any is sent: a break half-way leaves the rest in the resend window.
            frames = build_frames(
                items, self._limits, self._batch_bytes, self._header, self._encode_failed, sites
            )
            with ledger.lock:
                ledger.window.add(frames, items[-1][Q.SEQ])
            for frame in frames:
                self._transport.send(frame.frame)
                with ledger.lock:
                    ledger.window.mark_transmitted(frame.last_seq)
            with ledger.lock:
                ledger.window.all_sent()

    def _encode_failed(self, item: QueuedRecord, error: Exception) -> None:
        """A record that could not be rendered or encoded: counted, and reported as logging does."""
        self._ledger.count_drop(DropReason.ENCODE)
        self.last_error = f"encode: {type(error).__name__}: {error}"
        if self.on_encode_error is not None:
            self.on_encode_error(record_of(item))  # inside the except: it may show the traceback

    def _header(self, *, bye: bool = False) -> dict[str, Any]:
        """A batch's (or the bye's) header; it answers the host's latest flush request."""
        flushed = self._flush_answered = self._flush_asked
        return self._ledger.header(flushed, bye=bye)

    def _read_acks(self, timeout_seconds: float) -> None:
        for message in self._transport.receive(timeout_seconds):
            kind = message.get("t")
            if kind == ACK and isinstance(message.get("seq"), int):
                self._release(message["seq"])
            elif kind == FLUSH and isinstance(message.get("id"), int):
                self._flush_asked = max(self._flush_asked, message["id"])

    def _release(self, seq: int) -> None:
        with self._ledger.lock:
            if self._ledger.window.release(seq):
                self.backoff.reset()
        hook = self.on_ack
        if hook is not None:
            hook(seq)

    # --- waiting -------------------------------------------------------------------------

    def wait_sent(self, seq: int, deadline: float) -> bool:
        """Wait until every record up to ``seq`` was sent; False at ``deadline``."""
        next_wake = 0.0  # paced: ``done`` is notified every cycle, a wake-up per notification would spin
        with self.done:
            while not self._ledger.sent_through(seq):
                now = self._clock.monotonic()
                if now >= deadline:
                    return False
                if now >= next_wake:
                    next_wake = now + _POLL_SECONDS
                    self._wake.set()
                self.done.wait(min(deadline - now, _POLL_SECONDS))
        return True

    def wait_acked(self, deadline: float) -> bool:
        """Wait until the host settled every frame sent; False at ``deadline``."""
        next_probe = 0.0  # paced: ``done`` is notified every cycle, a probe per wake-up would spin
        with self.done:
            while len(self._ledger.window):
                now = self._clock.monotonic()
                if now >= deadline:
                    return False
                if now >= next_probe:
                    next_probe, self._ack_probe = now + _POLL_SECONDS, True
                    self._wake.set()
                self.done.wait(min(deadline - now, _POLL_SECONDS))
        return True

    # --- the end -------------------------------------------------------------------------

    def stop(self) -> None:
        """Drain until the deadline ``shutdown`` set, then close; what is left is given up."""
        deadline = self.deadline if self.deadline is not None else self._clock.monotonic()
        thread = self.thread
        if thread is None and (self._ledger.buffer.count or len(self._ledger.window)):
            self.ensure_thread(closing=True)
            thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            self._wake.set()
            thread.join(max(0.0, deadline - self._clock.monotonic()) + 0.5)
        if thread is not None and thread.is_alive():
            # Stuck in a send past the deadline: it finishes (bye, close) when that returns.
            # Records not in a frame yet are given up here; frames stay the sender's.
            self._give_up_queued(DropReason.SHUTDOWN)
        else:
            self.finish()

    def finish(self) -> None:
        """Give up what was not sent, say bye if the link is up, close the transport. Once."""
        with self._ledger.lock:
            if self.state is SenderState.FINISHED:
                return
            previous = self._enter(SenderState.FINISHED)
        self._give_up_untransmitted()
        self._give_up_queued(DropReason.SHUTDOWN)
        bye_sent = previous is SenderState.BYE_SENT
        if previous is SenderState.CONNECTED:
            try:
                self._transport.send(encode_message(self._header(bye=True)))
                bye_sent = True
            except TransportError:
                pass
        if bye_sent:
            remaining = (self.deadline or 0.0) - self._clock.monotonic()
            self._transport.close_gracefully(min(2.0, max(0.2, remaining)))
        else:
            self._transport.close()

    def _give_up_untransmitted(self) -> None:
        give_up_untransmitted(self._ledger, self._fallback)

    def _give_up_queued(self, reason: DropReason) -> None:
        self.give_up(self._ledger.take_all_queued(reason))

    def give_up(self, items: list[QueuedRecord]) -> None:
        """Records that cannot reach the host: to stderr (already counted by the caller)."""
        give_up_records(items, self._fallback)


def batch_bytes_for(welcome: dict[str, Any], batch_bytes: int) -> int:
    """Batches kept within what this host said it takes (an older host says nothing)."""
    max_frame_bytes = welcome.get("max_frame_bytes")
    if isinstance(max_frame_bytes, int) and max_frame_bytes > 0:
        return min(batch_bytes, max(1024, max_frame_bytes // 4))
    return batch_bytes
