"""``RunnerLogHandler``: the stdlib handler that lives in each plugin process.

On the caller's thread ``emit`` does only what must happen there: render the message (so
later mutation of the arguments cannot change it), read the current span, take a sequence
number and append to the bounded buffer (``buffer``). Everything else (attribute coercion,
exception formatting, encoding, I/O) happens on one background thread (``sender``): a plugin
that blocks its asyncio loop must not stop its logs. Batches that were sent stay in the send
window (``window``) until the host acknowledges them, and go again after a reconnect.

Runner side only: imports neither the host nor the OTel SDK.
"""

from __future__ import annotations

import atexit
import logging
import os
import weakref
from collections.abc import Callable

from otel_plugin_logs.config.errors import ConfigError
from otel_plugin_logs.config.fields import resolve
from otel_plugin_logs.config.runner import RunnerConfig
from otel_plugin_logs.runner import intake, trace_context
from otel_plugin_logs.runner.buffer import QueuedRecord
from otel_plugin_logs.runner.clock import SystemClock
from otel_plugin_logs.runner.ledger import Ledger
from otel_plugin_logs.runner.sender import AckHook, Sender
from otel_plugin_logs.runner.transport import Transport, UnixSocketTransport, as_transport
from otel_plugin_logs.wire.drops import DropReason
from otel_plugin_logs.wire.exit_counter import ACCEPTED_WORD, ExitCounter, open_for_stream, scratch_words

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from typing import Any, Final

    from otel_plugin_logs.runner.clock import Clock

__all__ = ["OWN_LOGGER_PREFIX", "RunnerLogHandler"]

# Loggers whose records never enter the pipeline: the bridge's own (a failure to send must
# not produce a record to send).
OWN_LOGGER_PREFIX: Final = "otel_plugin_logs"

# Drop reasons reported to the host (kept for callers of the old names).
DROP_QUEUE_FULL: Final = DropReason.QUEUE_FULL
DROP_SHUTDOWN: Final = DropReason.SHUTDOWN
DROP_REJECTED: Final = DropReason.REJECTED
DROP_ENCODE: Final = DropReason.ENCODE

_WANTED_CACHE_SIZE: Final = 4096


class RunnerLogHandler(logging.Handler):
    """Forward every record of a plugin process to the host bridge.

    ``emit`` never blocks on I/O and never raises. ``flush()``/``force_flush(timeout_millis)``
    wait until what was logged has been sent; ``shutdown(timeout_millis)`` (also ``close``, at
    interpreter exit) sends what is left within one deadline and gives up the rest to stderr,
    counted. Settings come from arguments, then ``OTEL_PLUGIN_LOGS_*`` variables, then defaults.
    ``clock`` replaces the monotonic clock and the sender's waits (tests).
    """

    def __init__(
        self,
        transport: Transport | None = None,
        *,
        level: int | str | None = None,
        config: RunnerConfig | None = None,
        plugin_version: str | None = None,
        clock: Clock | None = None,
        **settings: Any,
    ) -> None:
        if config is None:
            if level is not None:
                settings["level"] = logging._checkLevel(level)  # type: ignore[attr-defined]
            config, _ = resolve(RunnerConfig, settings)
        super().__init__(config.level)
        if transport is None:
            if not config.socket_path or not config.token:
                raise ConfigError(
                    "RunnerLogHandler needs the host's socket and token: run the plugin through "
                    "`otel-plugin-logs run` or HostLogBridge.spawn_plugin, or pass a transport"
                )
            transport = UnixSocketTransport(config.socket_path, max_frame_bytes=config.max_frame_bytes)
        self._config = config
        self._transport = as_transport(transport)
        self._plugin_version = plugin_version
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._include = config.include_loggers
        self._exclude = (OWN_LOGGER_PREFIX, *config.exclude_loggers)
        self._wanted: dict[str, bool] = {}
        self._batch_records = config.max_batch_records
        self._max_records = config.max_queue_records
        self._max_bytes = config.max_queue_bytes
        self._start_stream()
        weak = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _call(weak, "_after_fork_in_child"))
        atexit.register(_call, weak, "_at_exit")

    def _start_stream(self, on_ack: AckHook | None = None) -> None:
        """A fresh stream: empty books, a new sender (at construction and in a forked child)."""
        config = self._config
        self._ledger = Ledger(config.max_queue_records, config.max_queue_bytes)
        self._sender = Sender(self._ledger, self._transport, config, self._clock, self._plugin_version)
        self._sender.on_ack = on_ack
        self._sender.on_encode_error = self._report_bad_record
        self._exit_counter: ExitCounter | None = None
        self._exit_words: memoryview | None = None  # the counter's words; scratch ones without a counter

    # --- the hot path --------------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> bool:
        # Handler.handle takes self.lock around emit; emit has its own short lock, and
        # logging.shutdown holds self.lock while calling flush(), which waits for the sender
        # thread: sharing that lock would deadlock.
        if self.filters:
            result: Any = self.filter(record)
            if not result:
                return False
            if isinstance(result, logging.LogRecord):  # Python 3.12+: a filter's modified copy
                record = result
        self.capture(record, True)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.capture(record, True)

    def capture(self, record: logging.LogRecord, checked: bool = False) -> bool:
        """Take a record: this handler's level and filters (unless ``checked``), then queue it.

        The capture hook's target and ``emit``'s body, in one call. Returns whether the record
        is now the bridge's to deliver (or to count): the console gate hides the plugin's own
        console output of exactly those records.
        """
        if not checked:
            if record.levelno < self.level:
                return False
            if self.filters:
                return self._capture_filtered(record)
        try:
            name = record.name
            wanted = self._wanted.get(name)
            if wanted is None:
                wanted = self._wants(name)
            sender = self._sender
            thread = record.thread
            if not wanted or thread == sender.ident:
                return False  # filtered, or something the sender called logged: never loop back
            # Taken outside the lock: rendering a message runs the plugin's code, which may log.
            size, msg, args, kept = intake.message_of(record)
            # Every field is read here, where an odd record's error is caught: the lock only numbers it.
            lv, t, ln = record.levelno, record.created, record.levelname
            path, func, line = record.pathname, record.funcName, record.lineno
            tname, ctx = record.threadName, trace_context.capture_context()
        except Exception:
            self.handleError(record)
            return False
        ledger = self._ledger
        buffer, window, lock = ledger.buffer, ledger.window, ledger.lock
        shed = None
        lock.acquire()  # not `with`: it costs twice as much, and nothing in the block raises
        try:
            seq = ledger.last_seq = ledger.last_seq + 1
            words = self._exit_words
            if words is None:
                words = self._open_exit_counter()
            words[ACCEPTED_WORD] = seq  # survives a hard exit: the host counts what never arrived
            item = (seq, size, lv, t, ln, name, msg, args, ctx, path, func, line, thread, tname, kept)
            if sender.deadline is not None:  # closing; checked under the lock: shutdown's drain has it or not
                ledger.dropped[DropReason.SHUTDOWN] += 1
                shed, wake = [item], False
            else:
                queued = buffer.append(item)
                if queued > self._max_records or buffer.size_bytes + window.held_bytes > self._max_bytes:
                    shed = self._shed(ledger)
                # Sent at once when the sender is idle, so little waits in this process when
                # it dies; under load the sender is busy and records batch up.
                wake = ledger.sender_idle or queued == self._batch_records
                ledger.sender_idle = False
        finally:
            lock.release()
        if shed:  # written outside the lock: stderr may block when nobody reads it
            sender.give_up(shed)
        if wake or sender.thread is None:  # (after shutdown no thread is started)
            sender.ensure_thread()
            sender.wake()
        return True

    def _capture_filtered(self, record: logging.LogRecord) -> bool:
        result: Any = self.filter(record)
        if not result:
            return False
        return self.capture(result if isinstance(result, logging.LogRecord) else record, True)

    def _shed(self, ledger: Ledger) -> list[QueuedRecord]:
        """Over a bound (lock held): shed by severity, counted; what to write to stderr."""
        shed = ledger.buffer.shed(ledger.window.held_bytes)
        ledger.dropped[DropReason.QUEUE_FULL] += len(shed)
        return [] if self._sender.connected else shed  # a host is there: it hears of them as counts

    def _report_bad_record(self, record: logging.LogRecord) -> None:
        # Looked up at each call: a plugin (or a test) may replace handleError on the instance.
        self.handleError(record)

    def _open_exit_counter(self) -> memoryview:
        """The exit counter of this stream, made on its first record (lock held), as words to write."""
        self._exit_counter = open_for_stream(
            self._config.socket_path, self._config.token, self._ledger.stream
        )
        self._exit_words = scratch_words() if self._exit_counter is None else self._exit_counter.words
        return self._exit_words

    def _wants(self, name: str) -> bool:
        """Whether records of logger ``name`` are forwarded; cached (and the cache bounded)."""
        wanted = not name.startswith(self._exclude) and (not self._include or name.startswith(self._include))
        if len(self._wanted) >= _WANTED_CACHE_SIZE:
            self._wanted.clear()
        self._wanted[name] = wanted
        return wanted

    # --- flush / shutdown ----------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Wait until every record logged so far was sent. True if it was within the timeout."""
        deadline = self._clock.monotonic() + timeout_millis / 1000.0
        sender = self._sender
        if sender.closing:
            return self._complete()  # after shutdown nothing more is sent
        target = self._ledger.last_seq
        if target == 0 or sender.rejected_reason is not None:
            return sender.rejected_reason is None
        sender.ensure_thread()
        return sender.wait_sent(target, deadline)

    def flush(self) -> None:
        self.force_flush(self._config.shutdown_timeout_millis)

    def nudge(self) -> None:
        """Have the sender send what is queued now, without waiting for it."""
        sender = self._sender
        if not sender.closing and self._ledger.buffer.count:
            sender.ensure_thread()
            sender.wake()

    def wait_acked(self, timeout_millis: int = 10_000) -> bool:
        """Wait until the host has settled (exported or counted) every record sent so far."""
        deadline = self._clock.monotonic() + timeout_millis / 1000.0
        if not self.force_flush(timeout_millis):
            return False
        return self._sender.wait_acked(deadline)

    def shutdown(self, timeout_millis: int | None = None) -> bool:
        """Send what is left within one deadline, then close. Idempotent.

        Returns True when everything logged reached the host (nothing was dropped, ever).
        Records that could not be sent by the deadline are written to stderr with a marker and
        counted.
        """
        sender = self._sender
        timeout = self._config.shutdown_timeout_millis if timeout_millis is None else timeout_millis
        with sender.done, self._ledger.lock:
            if sender.closing:
                return self._complete()
            sender.deadline = self._clock.monotonic() + timeout / 1000.0
        sender.stop()
        return self._complete()

    def _complete(self) -> bool:
        return self._ledger.lost_nothing() and self._sender.rejected_reason is None

    def close(self) -> None:
        self.shutdown()
        super().close()

    # --- process lifecycle ----------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        # The child is a new runner: empty buffer, its own stream and connection. Batches the
        # parent sent are the parent's to settle.
        self._transport.close_after_fork()
        hooks = (self._sender.on_ack, self._sender.on_connect_attempt)
        self._start_stream(hooks[0])
        self._sender.on_connect_attempt = hooks[1]

    def _at_exit(self) -> None:
        if not self._sender.closing:
            self.shutdown()

    # --- introspection -------------------------------------------------------------------

    @property
    def on_ack(self) -> AckHook | None:
        """Test hook: called on the sender thread with each acknowledged sequence number."""
        return self._sender.on_ack

    @on_ack.setter
    def on_ack(self, hook: AckHook | None) -> None:
        self._sender.on_ack = hook

    @property
    def last_error(self) -> str | None:
        """The last error the sender met (connect, send, encode), for diagnostics."""
        return self._sender.last_error

    @property
    def on_connect_attempt(self) -> Callable[[float], None] | None:
        """Called on the sender thread before each connection attempt, with the backoff in effect."""
        return self._sender.on_connect_attempt

    @on_connect_attempt.setter
    def on_connect_attempt(self, hook: Callable[[float], None] | None) -> None:
        self._sender.on_connect_attempt = hook

    def stats(self) -> dict[str, Any]:
        """Counters of this handler: accepted, sent, acknowledged, queued, dropped by reason."""
        ledger = self._ledger
        sender = self._sender
        with ledger.lock:
            return {
                "accepted": ledger.last_seq,
                "sent_seq": ledger.window.transmitted_seq,
                "acked_seq": ledger.window.acked_seq,
                "queued": ledger.buffer.count,
                "queued_bytes": ledger.buffer.size_bytes,
                "unacked_bytes": ledger.window.held_bytes,
                "dropped": ledger.dropped_by_reason(),
                "connected": sender.connected,
                "rejected": sender.rejected_reason,
                "last_error": sender.last_error,
                "stream": ledger.stream,
                "state": sender.state.value,
            }


def _call(weak: weakref.ref[RunnerLogHandler], method: str) -> None:
    handler = weak()
    if handler is not None:
        getattr(handler, method)()
