"""A queued record as a wire row (layout ``wire.records.Rec``), and rows as batch frames.

Runs on the sender thread: attribute coercion, exception formatting and msgpack happen here,
never on the caller's.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable

import msgpack

from otel_plugin_logs.config.runner import RunnerConfig
from otel_plugin_logs.config.text import scrub_surrogates
from otel_plugin_logs.runner import rows
from otel_plugin_logs.runner.buffer import Q, QueuedRecord
from otel_plugin_logs.runner.rows import SiteCache
from otel_plugin_logs.runner.trace_context import span_ids
from otel_plugin_logs.runner.window import SentFrame
from otel_plugin_logs.wire.framing import encode_message_with_records
from otel_plugin_logs.wire.records import (
    BODY_ORIGINAL_BYTES,
    CODE_FILE_PATH,
    CODE_FUNCTION_NAME,
    CODE_LINE_NUMBER,
    THREAD_ID,
    THREAD_NAME,
    TRUNCATION_MARKER,
    Rec,
    coerce_value,
    severity_number,
    truncate_utf8,
)

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from typing import Any, Final

# Attributes of a stdlib LogRecord that are not "extras" passed by the caller.
RECORD_FIELDS: Final = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
# Keys of a structlog event dict that duplicate what the record already carries.
_PLAIN_RECORD_FIELDS: Final = len(logging.makeLogRecord({}).__dict__)
STRUCTLOG_SKIP: Final = frozenset(
    {"event", "level", "logger", "logger_name", "timestamp", "exc_info", "exception"}
)
# Attributes kept when a record's extras have to be dropped to fit in a frame.
_KEPT_PREFIXES: Final = ("code.", "thread.")
ATTRIBUTES_DROPPED_BYTES: Final = "otel_plugin_logs.attributes.dropped_bytes"
STACKTRACE: Final = "code.stacktrace"
_UINT64: Final = 0xCF


class EncodeError(Exception):
    """A record that cannot be encoded within a frame (counted as ``encode_error``)."""


class WireLimits:
    """The caps a record is cut to before it goes out.

    A slotted class, not a dataclass: the runner's path does not import dataclasses (it loads
    inspect and ast, which every plugin would pay for at start and again at exit).
    """

    __slots__ = ("max_attribute_length", "max_attributes", "max_body_bytes", "max_stacktrace_bytes")

    def __init__(
        self, max_attribute_length: int, max_attributes: int, max_body_bytes: int, max_stacktrace_bytes: int
    ) -> None:
        self.max_attribute_length = max_attribute_length
        self.max_attributes = max_attributes
        self.max_body_bytes = max_body_bytes
        self.max_stacktrace_bytes = max_stacktrace_bytes

    @classmethod
    def of(cls, config: RunnerConfig) -> WireLimits:
        return cls(
            config.max_attribute_length,
            config.max_attributes,
            config.max_body_bytes,
            config.max_stacktrace_bytes,
        )


_SEVERITY_NUMBER: Final = [severity_number(n) for n in range(64)]


def to_wire(item: QueuedRecord, limits: WireLimits, observed_ns: int) -> list[Any]:
    """The wire row of a queued record (raises what rendering its message raises)."""
    seq, _, levelno, created, levelname, name, message, args, context, path, func, line, thread = item[:13]
    tname, record = item[Q.THREAD_NAME], item[Q.RECORD]
    attributes: dict[str, Any] = {
        CODE_FILE_PATH: path,
        CODE_FUNCTION_NAME: func,
        CODE_LINE_NUMBER: line,
        THREAD_ID: thread,
        THREAD_NAME: tname,
    }
    exception: list[str] | None = None
    extras = record is not None and has_extras(record)
    if message.__class__ is dict:
        body = _stringify(message.get("event", ""), limits.max_attribute_length)
        budget = _add_structlog(message, attributes, limits.max_attributes, limits.max_attribute_length)
        if isinstance(message.get("exception"), str):
            exception = ["", "", truncate_tail(message["exception"], limits.max_stacktrace_bytes)]
        if extras:
            _add_extras(record, attributes, budget, limits.max_attribute_length)
    else:
        body = message if args is None else message % args
        if extras:
            _add_extras(record, attributes, limits.max_attributes, limits.max_attribute_length)
    if len(body) * 4 > limits.max_body_bytes:  # else it fits for sure: no need to encode it
        body, original = truncate_utf8(body, limits.max_body_bytes)
        if original:
            attributes[BODY_ORIGINAL_BYTES] = original
    if record is not None:
        if record.exc_info or record.exc_text:
            exception = _exception_of(record, exception, limits)
        if record.stack_info:
            attributes[STACKTRACE] = truncate_tail(record.stack_info, limits.max_stacktrace_bytes)
    trace_id = span_id = None
    flags = 0
    if context is not None:
        span = span_ids(context)
        if span is not None:
            trace_id = span.trace_id.to_bytes(16, "big")
            span_id = span.span_id.to_bytes(8, "big")
            flags = span.trace_flags
    return [
        seq,
        int(created * 1e9),
        observed_ns,
        _SEVERITY_NUMBER[levelno] if 0 <= levelno < 64 else severity_number(levelno),
        levelname if levelname.__class__ is str else str(levelname),
        body,
        name,
        attributes,
        trace_id,
        span_id,
        flags,
        exception,
        levelno,
    ]


def record_of(item: QueuedRecord) -> logging.LogRecord:
    """A ``LogRecord`` for a queued record: its own, or one remade from its fields (error reports)."""
    record: logging.LogRecord | None = item[Q.RECORD]
    if record is not None:
        return record
    return logging.makeLogRecord(
        {
            "name": item[Q.NAME],
            "levelno": item[Q.LEVELNO],
            "levelname": item[Q.LEVELNAME],
            "msg": item[Q.MESSAGE],
            "args": item[Q.ARGS],
            "created": item[Q.CREATED],
            "pathname": item[Q.PATHNAME],
            "funcName": item[Q.FUNC_NAME],
            "lineno": item[Q.LINENO],
            "thread": item[Q.THREAD],
            "threadName": item[Q.THREAD_NAME],
        }
    )


def has_extras(record: logging.LogRecord) -> bool:
    """Whether the caller passed attributes of its own (``extra=...``)."""
    fields = record.__dict__
    added = len(fields) - _PLAIN_RECORD_FIELDS
    # A handler that formatted the record before this one added `message` (and `asctime`).
    return added > 0 and added > ("message" in fields) + ("asctime" in fields)


def _add_structlog(message: dict[Any, Any], attributes: dict[str, Any], budget: int, max_len: int) -> int:
    """A structlog event dict's own keys as attributes; returns the attribute budget left."""
    for key, value in message.items():
        if key in STRUCTLOG_SKIP or (key.__class__ is str and key.startswith("_")):
            continue
        if budget <= 0:
            break
        attributes[str(key)] = coerce_value(value, max_len)
        budget -= 1
    return budget


def _add_extras(record: logging.LogRecord, attributes: dict[str, Any], budget: int, max_len: int) -> None:
    for key, value in record.__dict__.items():
        if key in RECORD_FIELDS or key.startswith("_"):
            continue
        if budget <= 0:
            break
        attributes[key] = coerce_value(value, max_len)
        budget -= 1


def _exception_of(
    record: logging.LogRecord, structlog_exception: list[str] | None, limits: WireLimits
) -> list[str] | None:
    """The record's exception wins over a structlog one; ``exc_text`` only fills a gap."""
    if record.exc_info and record.exc_info[1] is not None:
        return exception_fields(record.exc_info, limits.max_stacktrace_bytes, limits.max_attribute_length)
    if record.exc_text and structlog_exception is None:
        return ["", "", truncate_tail(record.exc_text, limits.max_stacktrace_bytes)]
    return structlog_exception


def pack_row(packer: msgpack.Packer, wire: list[Any], max_record_bytes: int) -> bytes:
    """One row in msgpack within ``max_record_bytes``; raises ``EncodeError`` when it cannot be."""
    try:
        body: bytes = packer.pack(wire)
    except UnicodeEncodeError:  # lone surrogates, e.g. a file name from os.fsdecode
        packer.reset()
        wire = scrub_surrogates(wire)
        body = packer.pack(wire)
    if len(body) > max_record_bytes:
        # Attributes nested to the caps can still add up to more than a frame: keep the
        # record, drop its extras, and say how big they were.
        attributes = wire[Rec.ATTRIBUTES]
        kept = {k: v for k, v in attributes.items() if k.startswith(_KEPT_PREFIXES)}
        kept[ATTRIBUTES_DROPPED_BYTES] = len(body)
        wire[Rec.ATTRIBUTES] = kept
        body = packer.pack(wire)
        if len(body) > max_record_bytes:
            raise EncodeError(f"record of {len(body)} bytes after trimming")
    return body


def build_frames(
    items: list[QueuedRecord],
    limits: WireLimits,
    max_batch_bytes: int,
    header: Callable[[], dict[str, Any]],
    on_error: Callable[[QueuedRecord, Exception], None],
    sites: SiteCache | None = None,
) -> list[SentFrame]:
    """Records as batch frames of at most ``max_batch_bytes`` of records each.

    A record that cannot be rendered or encoded is left out and reported to ``on_error``
    (inside the ``except``, before the header of its frame is taken, so that frame counts it).
    A plain record (no extras, exception, stack or span) is packed from its call site's packed
    fields (``rows``, kept in ``sites`` from batch to batch); any other through ``to_wire``
    and msgpack, checked against the bound.
    """
    if sites is None:
        sites = SiteCache()
    frames: list[SentFrame] = []
    batch: list[bytes] = []
    size = last_seq = 0
    for seq, row in _packed_rows(items, limits, max_batch_bytes, sites, on_error):
        if batch and size + len(row) > max_batch_bytes:
            frames.append(SentFrame(last_seq, encode_message_with_records(header(), batch)))
            batch, size = [], 0
        batch.append(row)
        size += len(row)
        last_seq = seq
    if batch:
        frames.append(SentFrame(last_seq, encode_message_with_records(header(), batch)))
    return frames


def _packed_rows(
    items: list[QueuedRecord],
    limits: WireLimits,
    max_row_bytes: int,
    sites: SiteCache,
    on_error: Callable[[QueuedRecord, Exception], None],
) -> list[tuple[int, bytes]]:
    """(sequence number, packed row) of each item that can be rendered and encoded, in order."""
    observed_ns = time.time_ns()  # when the sender took the batch
    max_body_chars = limits.max_body_bytes // 4
    known, no_site = sites.sites, rows.NO_SITE
    head = rows.NO_HEAD
    str_headers = rows.STR_HEADERS
    min_ns, max_ns = rows.packed_times(observed_ns)
    observed = rows.packed_uint64(observed_ns) if min_ns <= max_ns else b""
    packed: list[tuple[int, bytes]] = []
    packer: msgpack.Packer | None = None  # made for the first record that needs it: it costs a record
    for item in items:
        seq, _, levelno, created, level, name, msg, args, ctx, path, func, line, thread, tname, kept = item
        try:
            # A plain record goes by the bytes of its call site (``rows``): this runs for every record.
            if kept is None and ctx is None and msg.__class__ is str:
                body = msg if args is None else msg % args
                time_ns = int(created * 1e9)
                site = known.get((levelno, level, name, path, func, line, thread, tname))
                if site is None:
                    site = sites.add((levelno, level, name, path, func, line, thread, tname))
                if not head.low <= seq < head.high:
                    head = rows.row_head(seq)
                fits = len(body) <= max_body_chars and min_ns <= time_ns <= max_ns
                if fits and site is not no_site and head.code:
                    try:
                        data = body.encode()
                    except UnicodeEncodeError:  # lone surrogates: pack_row scrubs them
                        data = None
                    if data is not None:
                        n = len(data)
                        row = b"".join(
                            (
                                head.prefix,
                                head.pack(seq, _UINT64, time_ns),
                                observed,
                                site.before_body,
                                str_headers[n] if n < 256 else rows.str_header(n),
                                data,
                                site.after_body,
                            )
                        )
                        if len(row) <= max_row_bytes:
                            packed.append((seq, row))
                            continue
            if packer is None:
                packer = msgpack.Packer(use_bin_type=True)
            packed.append((seq, pack_row(packer, to_wire(item, limits, observed_ns), max_row_bytes)))
        except Exception as error:
            if packer is not None:
                packer.reset()
            on_error(item, error)
    return packed


def _stringify(value: Any, max_length: int) -> str:
    return value if isinstance(value, str) else str(coerce_value(value, max_length))


def truncate_tail(text: str, max_bytes: int) -> str:
    """Keep the end of a stack trace (the innermost frames and the error line)."""
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= max_bytes:
        return text
    return TRUNCATION_MARKER + "\n" + encoded[-max_bytes:].decode("utf-8", "ignore")


def exception_fields(exc_info: Any, max_stacktrace_bytes: int, max_len: int) -> list[str]:
    """``[qualified type, message, stack trace]`` of a logged exception."""
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
