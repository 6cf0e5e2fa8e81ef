"""``RunnerLogHandler``: the stdlib handler that lives in each plugin process.

On the caller's thread ``emit`` does only what must happen there: render the message (so
later mutation of the arguments cannot change it), read the current span, take a sequence
number and append to a bounded buffer. Everything else (attribute coercion, exception
formatting, encoding, I/O) happens on one background *thread*: a plugin that blocks its
asyncio loop must not stop its logs.

Buffer policy: records wait in four deques, one per severity class. When the buffer is over
its count or byte bound, the oldest record of the lowest non-empty class goes first, and
every drop is counted by reason and reported to the host with the next batch. Batches that
were sent stay (encoded, compact) until the host acknowledges them, so after a reconnect
they are sent again; the host discards what it already has by sequence number.

Runner side only: imports neither the host nor the OTel SDK.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import os
import secrets
import sys
import threading
import time
import traceback
import weakref
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Final

import msgpack

from otel_plugin_logs.config.errors import ConfigError
from otel_plugin_logs.config.fields import resolve
from otel_plugin_logs.config.runner import RunnerConfig
from otel_plugin_logs.runner.transport import (
    Transport,
    TransportError,
    TransportRejected,
    UnixSocketTransport,
)
from otel_plugin_logs.wire import messages
from otel_plugin_logs.wire.exit_counter import ExitCounter, open_for_stream
from otel_plugin_logs.wire.framing import encode_message, encode_message_with_records
from otel_plugin_logs.wire.messages import ACK, FLUSH
from otel_plugin_logs.wire.records import (
    BODY_ORIGINAL_BYTES,
    CODE_FILE_PATH,
    CODE_FUNCTION_NAME,
    CODE_LINE_NUMBER,
    THREAD_ID,
    THREAD_NAME,
    Rec,
    coerce_value,
    severity_number,
    truncate_utf8,
)

# Loggers whose records never enter the pipeline: the bridge's own (a failure to send must
# not produce a record to send).
OWN_LOGGER_PREFIX: Final = "otel_plugin_logs"

# Drop reasons reported to the host.
DROP_QUEUE_FULL: Final = "queue_full"
DROP_SHUTDOWN: Final = "shutdown_unsent"
DROP_REJECTED: Final = "rejected_by_host"
DROP_ENCODE: Final = "encode_error"

# Attributes of a stdlib LogRecord that are not "extras" passed by the caller.
_RECORD_FIELDS: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# Keys of a structlog event dict that duplicate what the record already carries.
_STRUCTLOG_SKIP: Final = frozenset(
    {"event", "level", "logger", "logger_name", "timestamp", "exc_info", "exception"}
)
_RECORD_OVERHEAD_BYTES: Final = 800  # measured: a retained LogRecord with its message and tuple
_PLAIN_RECORD_FIELDS: Final = len(logging.makeLogRecord({}).__dict__)
# Attributes kept when a record's extras have to be dropped to fit in a frame.
_KEPT_PREFIXES: Final = ("code.", "thread.")
ATTRIBUTES_DROPPED_BYTES: Final = "otel_plugin_logs.attributes.dropped_bytes"
_STDERR_MARKER: Final = "[otel-plugin-logs gave up]"
_MAX_STDERR_LINES_PER_SECOND: Final = 200

# How long a batch gathers after a send before the next one goes (unless it fills up first).
_LINGER_SECONDS: Final = 0.005
_AckHook = Callable[[int], None]


def _levelclass(levelno: int) -> int:
    """0: below INFO, 1: INFO, 2: WARNING, 3: ERROR and above."""
    if levelno < logging.INFO:
        return 0
    if levelno < logging.WARNING:
        return 1
    if levelno < logging.ERROR:
        return 2
    return 3


_LEVEL_CLASS: Final = [_levelclass(n) for n in range(64)]


class _OtelContext:
    """Trace context, captured on the emitting thread and read on the sender thread.

    ``emit`` only takes the current OTel ``Context`` (an immutable map, one context-variable
    read); finding the span in it and its ids is left to the sender. Importing the API just
    to find there is no span would cost every plugin start-up, so nothing is imported until
    some other code imported ``opentelemetry.trace``.
    """

    def __init__(self) -> None:
        self._get_current: Callable[[], Any] | None = None
        self._get_span: Callable[[Any], Any] | None = None

    def capture(self) -> Any:
        getter = self._get_current
        if getter is None:
            if "opentelemetry.trace" not in sys.modules:
                return None
            getter = self._load()
        return getter()

    def _load(self) -> Callable[[], Any]:
        global _capture_context
        from opentelemetry import context as otel_context
        from opentelemetry.trace import get_current_span

        self._get_span = get_current_span
        getter: Callable[[], Any] = otel_context.get_current
        # The default runtime keeps the current Context in one ContextVar; reading it directly
        # is what get_current() does, minus two Python calls on every emit.
        runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
        variable = getattr(runtime, "_current_context", None)
        default_runtime = type(runtime).__name__ == "ContextVarsRuntimeContext"
        if default_runtime and isinstance(variable, contextvars.ContextVar):
            getter = variable.get
        self._get_current = getter
        _capture_context = getter
        return getter

    def ids(self, context: Any) -> tuple[int, int, int] | None:
        if context is None or self._get_span is None:
            return None
        span_context = self._get_span(context).get_span_context()
        if not span_context.is_valid:
            return None
        return (span_context.trace_id, span_context.span_id, int(span_context.trace_flags))


_otel_context = _OtelContext()
_capture_context = _otel_context.capture


class RunnerLogHandler(logging.Handler):
    """Forward every record of a plugin process to the host bridge.

    ``emit`` never blocks on I/O and never raises. ``flush()``/``force_flush(timeout_millis)``
    wait until what was logged has been sent; ``shutdown(timeout_millis)`` (also ``close``, at
    interpreter exit) sends what is left within one deadline and gives up the rest to stderr,
    counted. Settings come from arguments, then ``OTEL_PLUGIN_LOGS_*`` variables, then defaults.
    """

    def __init__(
        self,
        transport: Transport | None = None,
        *,
        level: int | str | None = None,
        config: RunnerConfig | None = None,
        plugin_version: str | None = None,
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
        self._transport = transport
        self._plugin_version = plugin_version
        self._include = config.include_loggers
        self._exclude = (OWN_LOGGER_PREFIX, *config.exclude_loggers)
        self._wanted: dict[str, bool] = {}
        self._max_records = config.max_queue_records
        self._max_bytes = config.max_queue_bytes
        self._batch_records = config.max_batch_records
        self._batch_bytes = min(1024 * 1024, config.max_frame_bytes // 4)
        # Reentrant: a signal handler that logs while this thread is inside emit's lock.
        self._lock = threading.RLock()
        self._done = threading.Condition(threading.RLock())  # reentrant: a fatal signal flushes
        self._wake = threading.Event()
        self._reset_state()
        self._closed = False
        self._stopping = False
        self._shutdown_deadline = 0.0
        self._thread: threading.Thread | None = None
        self._sender_ident: int | None = -1
        self._stderr_window = (0.0, 0)
        self.on_ack: _AckHook | None = None  # test hook: called with each acknowledged seq
        weak = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _call(weak, "_after_fork_in_child"))
        atexit.register(_call, weak, "_at_exit")

    # --- state -------------------------------------------------------------------------

    def _reset_state(self) -> None:
        self._queues: tuple[deque[tuple[Any, ...]], ...] = (deque(), deque(), deque(), deque())
        self._queued = 0
        self._queued_bytes = 0
        self._last_seq = 0
        self._created_seq = 0  # every record up to here is in a frame, or was dropped
        self._transmitted_seq = 0  # every frame up to here went out on the current connection
        self._sent_high = 0  # every frame up to here went out on some connection (may have arrived)
        self._finish_done = False
        self._acked_seq = 0
        self._unacked: deque[tuple[int, bytes]] = deque()
        self._unacked_bytes = 0
        self._dropped: Counter[str] = Counter()
        self._stream = secrets.randbits(63)
        self._exit_counter: ExitCounter | None = None
        self._exit_counter_tried = False
        self._sender_idle = False
        self._connected = False
        self._rejected: str | None = None
        self._backoff_seconds = 0.0
        self._next_attempt = 0.0
        self._bye_sent = False
        self._flush_asked = 0
        self._ack_probe = False  # wait_acked asks: an empty batch makes the host answer with its position
        self._flush_answered = 0
        self.last_error: str | None = None

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
        self._accept(record)
        return True

    def capture(self, record: logging.LogRecord) -> bool:
        """Take a record from the capture hook: this handler's level and filters, then emit.

        Returns whether the record is now the bridge's to deliver (or to count): the console
        gate hides the plugin's own console output of exactly those records.
        """
        if record.levelno < self.level:
            return False
        if self.filters:
            result: Any = self.filter(record)
            if not result:
                return False
            if isinstance(result, logging.LogRecord):
                record = result
        return self._accept(record)

    def emit(self, record: logging.LogRecord) -> None:
        self._accept(record)

    def _accept(self, record: logging.LogRecord) -> bool:
        try:
            name = record.name
            wanted = self._wanted.get(name)
            if wanted is None:
                wanted = self._wants(name)
            if not wanted or record.thread == self._sender_ident:
                return False  # filtered, or something the sender called logged: never loop back
            msg = record.msg
            if msg.__class__ is dict:
                message: Any = dict(msg)  # structlog event dict, copied against later mutation
                size = _RECORD_OVERHEAD_BYTES + 64 * len(message)
            else:
                message = record.getMessage()
                size = _RECORD_OVERHEAD_BYTES + sys.getsizeof(message)
            fields = record.__dict__
            added = len(fields) - _PLAIN_RECORD_FIELDS
            # Extras stay with the record until sent. A handler that formatted the record
            # before this one added `message` (and `asctime`): those are not extras.
            if added > 0 and added > ("message" in fields) + ("asctime" in fields):
                size += _extras_bytes(fields)
            context = _capture_context()
            levelno = record.levelno
            cls = _LEVEL_CLASS[levelno] if 0 <= levelno < 64 else 3
            with self._lock:
                seq = self._last_seq = self._last_seq + 1
                counter = self._exit_counter
                if counter is None:
                    counter = self._open_exit_counter()
                if counter is not None:
                    counter.set(seq)  # survives a hard exit: the host counts what never arrived
                if self._closed:  # checked under the lock: shutdown's drain has this record or not
                    self._dropped[DROP_SHUTDOWN] += 1
                    shed: Any = [(seq, record, message)]
                    wake = False
                else:
                    self._queues[cls].append((seq, record, message, context, size))
                    queued = self._queued = self._queued + 1
                    queued_bytes = self._queued_bytes = self._queued_bytes + size
                    shed = (
                        queued > self._max_records or queued_bytes + self._unacked_bytes > self._max_bytes
                    ) and self._shed_locked()
                    # Sent at once when the sender is idle, so little waits in this process
                    # when it dies; under load the sender is busy and records batch up.
                    wake = self._sender_idle or queued == self._batch_records
                    self._sender_idle = False
            if shed:  # written outside the lock: stderr may block when nobody reads it
                for item in shed:
                    self._give_up_one(item[1], item[2])
            if wake or self._thread is None:  # (after shutdown no thread is started)
                self._ensure_thread()
                self._wake.set()
            return True
        except Exception:
            self.handleError(record)
            return False

    def _open_exit_counter(self) -> ExitCounter | None:
        """The exit counter of this stream, made on its first record (lock held); once."""
        if self._exit_counter_tried:
            return None
        self._exit_counter_tried = True
        self._exit_counter = open_for_stream(self._config.socket_path, self._config.token, self._stream)
        return self._exit_counter

    def _wants(self, name: str) -> bool:
        """Whether records of logger ``name`` are forwarded; cached (and the cache bounded)."""
        wanted = not name.startswith(self._exclude) and (not self._include or name.startswith(self._include))
        if len(self._wanted) >= 4096:
            self._wanted.clear()
        self._wanted[name] = wanted
        return wanted

    def _shed_locked(self) -> list[tuple[Any, ...]]:
        """Drop the oldest records of the lowest severity until within bounds (lock held).

        Returns those to write to stderr (when no host can take them), after the lock.
        """
        given_up = []
        while self._queued and (
            self._queued > self._max_records or self._queued_bytes + self._unacked_bytes > self._max_bytes
        ):
            for queue in self._queues:
                if queue:
                    item = queue.popleft()
                    break
            self._queued -= 1
            self._queued_bytes -= item[4]
            self._dropped[DROP_QUEUE_FULL] += 1
            if not self._connected:
                given_up.append(item)
        return given_up

    # --- background sender ---------------------------------------------------------------

    def _ensure_thread(self, *, closing: bool = False) -> None:
        with self._done:
            if self._thread is not None and self._thread.is_alive():
                return
            if self._closed and not closing:
                return  # shut down: a later flush() (logging.shutdown at exit) starts nothing
            thread = threading.Thread(target=self._run, name="otel-plugin-logs-sender", daemon=True)
            self._thread = thread
            thread.start()
            self._sender_ident = thread.ident

    def _run(self) -> None:
        lingering = False
        while True:
            waiting_for_acks = self._unacked and self._connected
            with self._lock:  # an emit after this sees the flag and wakes us
                self._sender_idle = self._queued == 0 and not lingering
            if lingering:
                timeout = _LINGER_SECONDS
            else:
                timeout = 0.02 if (self._stopping or waiting_for_acks) else self._delay()
            self._wake.wait(timeout)
            self._wake.clear()
            created = self._created_seq
            try:
                self._cycle()
            except Exception as error:  # the sender must survive anything
                self.last_error = f"sender: {type(error).__name__}: {error}"
            # A record that finds the link idle goes at once; after a send, the next batch
            # gathers for a moment, so a burst goes in few frames rather than one per record.
            lingering = self._created_seq > created
            with self._done:
                self._done.notify_all()
            if self._stopping and (self._finished() or time.monotonic() >= self._shutdown_deadline):
                self._finish()
                return

    def _delay(self) -> float:
        return self._config.schedule_delay_millis / 1000.0

    def _finished(self) -> bool:
        if self._queued or self._transmitted_seq < self._created_seq:
            return False  # records, or frames not yet out on a live connection
        return self._bye_sent or not self._connected

    def _cycle(self) -> None:
        if self._rejected is not None:
            self._give_up_queued(DROP_REJECTED)
            return
        if not self._connected and not self._connect():
            return
        try:
            self._send_queued()
            self._read_acks(0.0)
            if self._flush_asked > self._flush_answered and not self._stopping:
                if self._queued:
                    self._send_queued()
                else:
                    # Nothing left to send: an empty batch carries the answer.
                    self._transport.send(encode_message_with_records(self._batch_header(), []))
            elif self._ack_probe and self._unacked and not self._queued and not self._stopping:
                # A transport that only hears from the host in reply to a frame (an RPC, the
                # in-memory double) learns of records settled since through an empty batch.
                self._ack_probe = False
                self._transport.send(encode_message_with_records(self._batch_header(), []))
                self._read_acks(0.0)
            if self._stopping and self._queued == 0 and not self._bye_sent:
                self._transport.send(encode_message(self._bye_message()))
                self._bye_sent = True
        except TransportError as error:
            self._on_disconnect(str(error))

    def _connect(self) -> bool:
        now = time.monotonic()
        if now < self._next_attempt:
            return False
        hello = messages.hello(
            self._config.token, os.getpid(), self._stream, self._plugin_version, sys.version.split()[0]
        )
        try:
            timeout = 5.0 if not self._stopping else min(5.0, max(0.05, self._shutdown_deadline - now))
            welcome = self._transport.connect(hello, timeout)
        except TransportRejected as error:
            self._rejected = error.reason
            self.last_error = str(error)
            _write_stderr(f"{_STDERR_MARKER} {error}; records of this process go to stderr from now on")
            return False
        except (TransportError, OSError) as error:
            self.last_error = str(error)
            self._back_off()
            return False
        self._connected = True
        self._adopt_limits(welcome)
        self._release_acked(int(welcome.get("acked", 0)))
        try:
            # Resend whatever the host has not settled; it discards duplicates by sequence.
            self._transmitted_seq = self._acked_seq
            for last_seq, frame in list(self._unacked):
                self._transport.send(frame)
                self._transmitted_seq = last_seq
                self._sent_high = max(self._sent_high, last_seq)
        except TransportError as error:
            self._on_disconnect(str(error))
            return False
        return True

    def _adopt_limits(self, welcome: dict[str, Any]) -> None:
        """Keep batches within what this host said it takes (an older host says nothing)."""
        max_frame_bytes = welcome.get("max_frame_bytes")
        if isinstance(max_frame_bytes, int) and max_frame_bytes > 0:
            self._batch_bytes = min(self._batch_bytes, max(1024, max_frame_bytes // 4))

    def _on_disconnect(self, reason: str) -> None:
        self.last_error = reason
        self._connected = False
        self._transmitted_seq = self._acked_seq  # the rest may not have reached the host
        self._bye_sent = False
        self._transport.close()
        self._back_off()

    def _back_off(self) -> None:
        """Wait longer before each attempt, up to the cap; an acknowledgement starts over."""
        cap = self._config.reconnect_max_backoff_millis / 1000.0
        self._backoff_seconds = min(cap, max(0.05, self._backoff_seconds * 2))
        # Jitter, so that runners of a restarted host do not reconnect in lockstep.
        jitter = 0.8 + 0.4 * (secrets.randbelow(1000) / 1000)
        self._next_attempt = time.monotonic() + self._backoff_seconds * jitter

    def _take_batch(self) -> list[tuple[Any, ...]]:
        """The oldest records by sequence, up to one batch, removed from the buffer."""
        with self._lock:
            if self._queued <= self._batch_records:
                items: list[tuple[Any, ...]] = []
                for queue in self._queues:
                    items.extend(queue)
                    queue.clear()
                items.sort(key=_seq_of)
            else:
                items = []
                queues = [q for q in self._queues if q]
                while len(items) < self._batch_records and queues:
                    best = min(queues, key=_head_seq)
                    items.append(best.popleft())
                    if not best:
                        queues.remove(best)
            self._queued -= len(items)
            self._queued_bytes -= sum(item[4] for item in items)
        return items

    def _send_queued(self) -> None:
        while self._queued:
            if self._unacked_bytes > self._max_bytes * 3 // 4 and not self._stopping:
                return  # the host is behind; let records wait (and shed by priority) here
            items = self._take_batch()
            if not items:
                return
            # All frames are built and kept before any is sent: if the connection breaks
            # half-way, the rest is already in the resend window instead of lost.
            frames = self._frames(items)
            with self._lock:
                for last_seq, frame in frames:
                    self._unacked.append((last_seq, frame))
                    self._unacked_bytes += len(frame)
                self._created_seq = max(self._created_seq, items[-1][0])
            for last_seq, frame in frames:
                self._transport.send(frame)
                self._transmitted_seq = last_seq
                self._sent_high = max(self._sent_high, last_seq)

    def _frames(self, items: list[tuple[Any, ...]]) -> list[tuple[int, bytes]]:
        frames: list[tuple[int, bytes]] = []
        packed: list[bytes] = []
        size = 0
        last = 0
        for item in items:
            body = self._pack(item)
            if body is None:
                continue
            if packed and size + len(body) > self._batch_bytes:
                frames.append((last, encode_message_with_records(self._batch_header(), packed)))
                packed, size = [], 0
            packed.append(body)
            size += len(body)
            last = item[0]
        if packed:
            frames.append((last, encode_message_with_records(self._batch_header(), packed)))
        return frames

    def _pack(self, item: tuple[Any, ...]) -> bytes | None:
        """One record in msgpack, or None (counted) if it cannot be encoded within a frame."""
        try:
            wire = self._to_wire(item)
            try:
                body: bytes = msgpack.packb(wire, use_bin_type=True)
            except UnicodeEncodeError:  # lone surrogates, e.g. a file name from os.fsdecode
                wire = _scrub(wire)
                body = msgpack.packb(wire, use_bin_type=True)
            if len(body) > self._batch_bytes:
                # Attributes nested to the caps can still add up to more than a frame: keep
                # the record, drop its extras, and say how big they were.
                attributes = wire[Rec.ATTRIBUTES]
                kept = {k: v for k, v in attributes.items() if k.startswith(_KEPT_PREFIXES)}
                kept[ATTRIBUTES_DROPPED_BYTES] = len(body)
                wire[Rec.ATTRIBUTES] = kept
                body = msgpack.packb(wire, use_bin_type=True)
                if len(body) > self._batch_bytes:
                    raise ValueError(f"record of {len(body)} bytes after trimming")
        except Exception as error:
            self._count_drop(DROP_ENCODE)
            self.last_error = f"encode: {type(error).__name__}: {error}"
            return None
        return body

    def _batch_header(self) -> dict[str, Any]:
        with self._lock:
            dropped = dict(self._dropped)
            accepted = self._last_seq
        flushed = self._flush_asked
        if flushed:
            self._flush_answered = flushed
        return messages.batch_header(self._stream, dropped, accepted, flushed)

    def _bye_message(self) -> dict[str, Any]:
        header = self._batch_header()
        return messages.bye_header(
            header["stream"], header["dropped"], header["accepted"], header.get("flushed", 0)
        )

    def _read_acks(self, timeout_seconds: float) -> None:
        for message in self._transport.receive(timeout_seconds):
            kind = message.get("t")
            if kind == ACK and isinstance(message.get("seq"), int):
                self._release_acked(message["seq"])
            elif kind == FLUSH and isinstance(message.get("id"), int):
                self._flush_asked = max(self._flush_asked, message["id"])

    def _release_acked(self, seq: int) -> None:
        with self._lock:
            if seq > self._acked_seq:
                self._backoff_seconds = 0.0  # the host takes our records: a later drop retries soon
            self._acked_seq = max(self._acked_seq, seq)
            while self._unacked and self._unacked[0][0] <= seq:
                _, frame = self._unacked.popleft()
                self._unacked_bytes -= len(frame)
        hook = self.on_ack
        if hook is not None:
            hook(seq)

    # --- capture -> wire -----------------------------------------------------------------

    def _to_wire(self, item: tuple[Any, ...]) -> list[Any]:
        seq, record, message, context, _ = item
        config = self._config
        max_len = config.max_attribute_length
        attributes: dict[str, Any] = {
            CODE_FILE_PATH: record.pathname,
            CODE_FUNCTION_NAME: record.funcName,
            CODE_LINE_NUMBER: record.lineno,
            THREAD_ID: record.thread,
            THREAD_NAME: record.threadName,
        }
        exception = None
        budget = config.max_attributes
        if message.__class__ is dict:
            body = _stringify(message.get("event", ""), max_len)
            for key, value in message.items():
                if key in _STRUCTLOG_SKIP or (key.__class__ is str and key.startswith("_")):
                    continue
                if budget <= 0:
                    break
                attributes[str(key)] = coerce_value(value, max_len)
                budget -= 1
            if isinstance(message.get("exception"), str):
                exception = ["", "", truncate_tail(message["exception"], config.max_stacktrace_bytes)]
        else:
            body = message
        for key, value in record.__dict__.items():
            if key in _RECORD_FIELDS or key.startswith("_"):
                continue
            if budget <= 0:
                break
            attributes[key] = coerce_value(value, max_len)
            budget -= 1
        body, original = truncate_utf8(body, config.max_body_bytes)
        if original:
            attributes[BODY_ORIGINAL_BYTES] = original
        if record.exc_info and record.exc_info[1] is not None:
            exception = _exception_fields(record.exc_info, config.max_stacktrace_bytes, max_len)
        elif record.exc_text and exception is None:
            exception = ["", "", truncate_tail(record.exc_text, config.max_stacktrace_bytes)]
        if record.stack_info:
            attributes["code.stacktrace"] = truncate_tail(record.stack_info, config.max_stacktrace_bytes)
        trace_id = span_id = None
        flags = 0
        span = _otel_context.ids(context)
        if span is not None:
            trace_id = span[0].to_bytes(16, "big")
            span_id = span[1].to_bytes(8, "big")
            flags = span[2]
        created_ns = int(record.created * 1e9)
        return [
            seq,
            created_ns,
            time.time_ns(),
            severity_number(record.levelno),
            str(record.levelname),
            body,
            record.name,
            attributes,
            trace_id,
            span_id,
            flags,
            exception,
            record.levelno,
        ]

    # --- flush / shutdown ----------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Wait until every record logged so far was sent. True if it was within the timeout."""
        deadline = time.monotonic() + timeout_millis / 1000.0
        if self._closed:
            return self._complete()  # after shutdown nothing more is sent
        target = self._last_seq
        if target == 0 or self._rejected is not None:
            return self._rejected is None
        self._ensure_thread()
        with self._done:
            while not self._sent_through(target):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.set()
                self._done.wait(min(remaining, 0.05))
        return True

    def _sent_through(self, target: int) -> bool:
        """Every record up to ``target`` was transmitted (or dropped and counted)."""
        with self._lock:
            if any(queue and queue[0][0] <= target for queue in self._queues):
                return False
            return self._transmitted_seq >= min(target, self._created_seq)

    def flush(self) -> None:
        self.force_flush(self._config.shutdown_timeout_millis)

    def nudge(self) -> None:
        """Have the sender send what is queued now, without waiting for it."""
        if not self._closed and self._queued:
            self._ensure_thread()
            self._wake.set()

    def wait_acked(self, timeout_millis: int = 10_000) -> bool:
        """Wait until the host has settled (exported or counted) every record sent so far."""
        deadline = time.monotonic() + timeout_millis / 1000.0
        if not self.force_flush(timeout_millis):
            return False
        while self._unacked:
            if time.monotonic() >= deadline:
                return False
            self._ack_probe = True
            self._wake.set()
            time.sleep(0.02)
        return True

    def shutdown(self, timeout_millis: int | None = None) -> bool:
        """Send what is left within one deadline, then close. Idempotent.

        Returns True when everything logged reached the host (nothing was dropped, ever).
        Records that could not be sent by the deadline are written to stderr with a marker and
        counted.
        """
        with self._done, self._lock:
            if self._closed:
                return self._complete()
            self._closed = True
        timeout = self._config.shutdown_timeout_millis if timeout_millis is None else timeout_millis
        self._shutdown_deadline = time.monotonic() + timeout / 1000.0
        self._stopping = True
        thread = self._thread
        if thread is None and (self._queued or self._unacked):
            self._ensure_thread(closing=True)
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            self._wake.set()
            thread.join(max(0.0, self._shutdown_deadline - time.monotonic()) + 0.5)
        if thread is not None and thread.is_alive():
            # Stuck in a send past the deadline: it finishes (bye, close) when that returns.
            # Records not in a frame yet are given up here; frames stay the sender's.
            self._give_up_queued(DROP_SHUTDOWN)
        else:
            self._finish()
        return self._complete()

    def _complete(self) -> bool:
        with self._lock:
            return self._queued == 0 and self._rejected is None and not any(self._dropped.values())

    def close(self) -> None:
        self.shutdown()
        super().close()

    def _finish(self) -> None:
        with self._lock:
            if self._finish_done:
                return
            self._finish_done = True
        self._give_up_untransmitted()
        self._give_up_queued(DROP_SHUTDOWN)
        if self._connected and not self._bye_sent:
            try:
                self._transport.send(encode_message(self._bye_message()))
                self._bye_sent = True
            except TransportError:
                pass
        graceful = getattr(self._transport, "close_gracefully", None)
        if self._bye_sent and graceful is not None:
            remaining = self._shutdown_deadline - time.monotonic()
            graceful(min(2.0, max(0.2, remaining)))
        else:
            self._transport.close()
        self._connected = False

    def _give_up_untransmitted(self) -> None:
        """Frames that never went out by the deadline: their records go to stderr, counted.

        A frame that went out on an earlier connection may have reached the host: it is left
        to the host's accounting (delivered, or a gap), never counted twice.
        """
        with self._lock:
            sent = max(self._transmitted_seq, self._sent_high)
            frames = [frame for last_seq, frame in self._unacked if last_seq > sent]
        for frame in frames:
            try:
                records = msgpack.unpackb(frame[4:], raw=False).get("records", [])
            except Exception:
                records = []
            with self._lock:
                self._dropped[DROP_SHUTDOWN] += len(records)
            for record in records:
                level, logger, body = record[Rec.SEVERITY_TEXT], record[Rec.LOGGER], record[Rec.BODY]
                _write_stderr(_escape_line(f"{_STDERR_MARKER} {level} {logger}: {body}"))
        with self._lock:
            self._transmitted_seq = self._created_seq

    def _give_up_queued(self, reason: str) -> None:
        with self._lock:
            items: list[tuple[Any, ...]] = []
            for queue in self._queues:
                items.extend(queue)
                queue.clear()
            self._queued = 0
            self._queued_bytes = 0
            self._dropped[reason] += len(items)
        items.sort(key=_seq_of)
        for item in items:
            self._give_up_one(item[1], item[2])

    def _give_up_one(self, record: logging.LogRecord, message: Any) -> None:
        """Write a record that cannot reach the host to stderr, one line, rate limited."""
        start, count = self._stderr_window
        now = time.monotonic()
        if now - start >= 1.0:
            if count > _MAX_STDERR_LINES_PER_SECOND:
                _write_stderr(f"{_STDERR_MARKER} ... and {count - _MAX_STDERR_LINES_PER_SECOND} more records")
            start, count = now, 0
        count += 1
        self._stderr_window = (start, count)
        if count > _MAX_STDERR_LINES_PER_SECOND:
            return
        text = message.get("event", message) if isinstance(message, dict) else message
        _write_stderr(_escape_line(f"{_STDERR_MARKER} {record.levelname} {record.name}: {text}"))

    def _count_drop(self, reason: str) -> None:
        with self._lock:
            self._dropped[reason] += 1

    # --- process lifecycle ----------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        # The child is a new runner: empty buffer, its own stream and connection. Batches the
        # parent sent are the parent's to settle.
        self._lock = threading.RLock()
        self._done = threading.Condition(threading.RLock())  # reentrant: a fatal signal flushes
        self._wake = threading.Event()
        close_after_fork = getattr(self._transport, "close_after_fork", None)
        if close_after_fork is not None:
            close_after_fork()
        self._reset_state()
        self._thread = None
        self._sender_ident = -1

    def _at_exit(self) -> None:
        if not self._closed:
            self.shutdown()

    # --- introspection -------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters of this handler: accepted, sent, acknowledged, queued, dropped by reason."""
        with self._lock:
            return {
                "accepted": self._last_seq,
                "sent_seq": self._transmitted_seq,
                "acked_seq": self._acked_seq,
                "queued": self._queued,
                "queued_bytes": self._queued_bytes,
                "unacked_bytes": self._unacked_bytes,
                "dropped": dict(self._dropped),
                "connected": self._connected,
                "rejected": self._rejected,
                "last_error": self.last_error,
            }


def _call(weak: weakref.ref[RunnerLogHandler], method: str) -> None:
    handler = weak()
    if handler is not None:
        getattr(handler, method)()


def _seq_of(item: tuple[Any, ...]) -> int:
    return int(item[0])


def _head_seq(queue: deque[tuple[Any, ...]]) -> int:
    return int(queue[0][0])


def _extras_bytes(fields: dict[str, Any]) -> int:
    """Memory of a record's extras, shallow: what the byte bound counts besides the message."""
    return sum(64 + sys.getsizeof(value) for key, value in fields.items() if key not in _RECORD_FIELDS)


def _scrub(value: Any) -> Any:
    """A wire record with every string made encodable: lone surrogates become backslash escapes."""
    if value.__class__ is str:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    if isinstance(value, dict):
        return {_scrub(key): _scrub(item) for key, item in value.items()}
    return value


def _stringify(value: Any, max_length: int) -> str:
    return value if isinstance(value, str) else str(coerce_value(value, max_length))


def truncate_tail(text: str, max_bytes: int) -> str:
    """Keep the end of a stack trace (the innermost frames and the error line)."""
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= max_bytes:
        return text
    return "…[truncated]\n" + encoded[-max_bytes:].decode("utf-8", "ignore")


def _exception_fields(exc_info: Any, max_stacktrace_bytes: int, max_len: int) -> list[str]:
    error: BaseException = exc_info[1]
    kind = type(error)
    module = kind.__module__ or "builtins"
    qualified = f"{module}.{kind.__qualname__}"
    try:
        message = str(error)
    except Exception:
        message = f"<unprintable {kind.__qualname__}>"
    try:
        # The traceback captured at the logging call: the exception's own grows if re-raised.
        stack = "".join(traceback.format_exception(kind, error, exc_info[2]))  # causes included
    except Exception as format_error:
        stack = f"<stack trace unavailable: {type(format_error).__name__}>"
    return [qualified, message[:max_len], truncate_tail(stack, max_stacktrace_bytes)]


def _escape_line(line: str) -> str:
    """One record, one line: control characters are shown escaped."""
    return line if line.isprintable() else line.encode("unicode_escape").decode("ascii")


def _write_stderr(line: str) -> None:
    stream = sys.__stderr__ or sys.stderr
    try:
        if stream is not None:
            stream.write(line + "\n")
            stream.flush()
    except (OSError, ValueError):
        pass  # stderr closed or a broken pipe to a dead host: nowhere left to report
