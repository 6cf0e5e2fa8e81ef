"""The append-only emit: records kept with their immutable arguments encode exactly as rendered ones."""

from __future__ import annotations

import logging
import threading
import tracemalloc
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from otel_plugin_logs import InMemoryTransport, RunnerLogHandler
from otel_plugin_logs.config.runner import RunnerConfig
from otel_plugin_logs.runner import intake
from otel_plugin_logs.runner.encoding import WireLimits, build_frames, pack_row, to_wire
from otel_plugin_logs.wire.framing import encode_message_with_records
from otel_plugin_logs.wire.records import Rec

# Fields that differ between two runs of the same calls: the sequence number and the clocks.
_RUN_FIELDS = (Rec.SEQ, Rec.TIME, Rec.OBSERVED_TIME)


class Host:
    """Decodes and keeps every record row it is sent; acknowledges all."""

    def __init__(self) -> None:
        self.rows: list[list[Any]] = []
        self.headers: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, body: bytes) -> int:
        message = msgpack.unpackb(body, raw=False)
        with self.lock:
            self.rows.extend(message.get("records", []))
            self.headers.append({k: v for k, v in message.items() if k != "records"})
        return 1 << 62


class Text(str):
    """A str the fast path does not trust to be immutable: rendered at the call, as before."""


class Number(int):
    """An int likewise."""


class Shown:
    """A non-str message."""

    def __str__(self) -> str:
        return "shown object"


_SPAN = TracerProvider().get_tracer("t").start_span("s")


def _calls(log: logging.Logger, text: Callable[[str], str], number: Callable[[int], int]) -> None:
    """One varied set of logging calls; ``text``/``number`` wrap the immutable arguments."""

    log.info("user %s fetched %s", number(7), text("berlin"))
    log.warning("no arguments at all")
    log.info("%s and %r and %d", text("é ü"), text("q"), number(3))
    shared = {"v": 1}
    log.info("mutable %s", shared)
    shared["v"] = 2  # after the call: the record keeps what was logged
    log.info("with extras %s", text("x"), extra={"user": "ann", "n": number(2), "tags": ["a", "b"]})
    log.info("float %.2f and bool %s and none %s", 1.5, True, None)
    log.info(Shown())  # type: ignore[arg-type]
    log.info({"event": "structured", "user": "bob", "attempts": 3})  # type: ignore[arg-type]
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed for %s", text("carol"))
    log.info("stack %s", number(1), stack_info=True)
    with trace.use_span(_SPAN):
        log.error("inside a span %s", text("dave"))


def _rows(
    wrap_text: Callable[[str], str], wrap_number: Callable[[int], int], after: int = 0
) -> list[list[Any]]:
    """The rows of ``_calls`` (run fields left out), logged after ``after`` other records."""
    host = Host()
    handler = RunnerLogHandler(InMemoryTransport(host))
    log = logging.getLogger("fast.path")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    warm_up = logging.getLogger("fast.warm-up")
    warm_up.handlers[:] = [handler]
    warm_up.setLevel(logging.INFO)
    warm_up.propagate = False
    for i in range(after):
        warm_up.info("warm-up %d", i)
    _calls(log, wrap_text, wrap_number)
    assert handler.shutdown(5000)
    rows = host.rows[after:]
    return [[value for index, value in enumerate(row) if index not in _RUN_FIELDS] for row in rows]


def _same(value: Any) -> Any:
    return value


def test_kept_arguments_give_the_same_wire_rows_as_rendering_at_the_call() -> None:
    """Each row (decoded) equals the row of the same call whose arguments forced rendering on the caller."""
    # Both runs from one line: the stack_info record shows its callers.
    fast, rendered = [_rows(text, number) for text, number in ((_same, _same), (Text, Number))]
    assert len(fast) == 11
    assert fast == rendered


def test_records_packed_by_call_site_give_the_rows_of_the_general_path() -> None:
    """Logged past sequence number 128 (plain rows packed from their site's bytes), every kind of
    record (plain, mutable argument, extras, exception, stack, traced) decodes to the same row."""
    general, by_site = _rows(_same, _same), _rows(_same, _same, after=200)
    assert len(by_site) == 11
    assert by_site == general


def test_rows_carry_the_text_as_logged() -> None:
    """Bodies are the messages as the call rendered them, mutable arguments as they were then."""
    bodies = [row[Rec.BODY - len([f for f in _RUN_FIELDS if f < Rec.BODY])] for row in _rows(_same, _same)]
    assert bodies[:4] == [
        "user 7 fetched berlin",
        "no arguments at all",
        "é ü and 'q' and 3",
        "mutable {'v': 1}",
    ]
    assert bodies[5:8] == ["float 1.50 and bool True and none None", "shown object", "structured"]


def test_accepted_is_sent_plus_dropped_by_reason(capfd: pytest.CaptureFixture[str]) -> None:
    """With records shed, given up at shutdown and unencodable, every accepted record is accounted for."""
    host = Host()
    transport = InMemoryTransport(host, fail=True)
    handler = RunnerLogHandler(transport, max_queue_records=50)
    log = logging.getLogger("fast.accounting")
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG)
    log.propagate = False
    for i in range(200):
        log.log(logging.DEBUG if i % 2 else logging.INFO, "record %d", i)
    log.info("%d", "not a number")  # kept with its arguments: fails on the sender
    transport.fail = False
    handler.force_flush(5000)
    for i in range(10):
        log.info("after %d", i)
    handler.shutdown(5000)
    stats = handler.stats()
    dropped = sum(stats["dropped"].values())
    assert stats["accepted"] == 211
    assert stats["accepted"] == len(host.rows) + dropped
    assert stats["dropped"]["queue_full"] == 151 and stats["dropped"]["encode_error"] == 1
    assert host.headers[-1]["dropped"] == stats["dropped"]
    capfd.readouterr()


@pytest.mark.parametrize("extra", [False, True], ids=["plain", "with-extras"])
def test_the_byte_bound_counts_the_memory_queued_records_hold(extra: bool) -> None:
    """Queued records are counted at no less than the memory they hold (tracemalloc), and not far above it."""
    transport = InMemoryTransport(Host(), fail=True)
    handler = RunnerLogHandler(transport)
    log = logging.getLogger("fast.bytes")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    fields: dict[str, Any] = {"extra": {"user": "ann", "tags": ["a", 1]}} if extra else {}
    log.info("warm-up %s", "x", **fields)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        queued_before = handler.stats()["queued_bytes"]
        for i in range(2000):
            log.info("user %s fetched %s at %.1f", i + 1000, "berlin", i / 3, **fields)
            log.warning("städte %s", ["köln", i])
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    counted = handler.stats()["queued_bytes"] - queued_before
    transport.fail = False
    assert handler.shutdown(10_000)
    assert held <= counted <= 1.6 * held


class Keep(logging.Handler):
    """Keeps every LogRecord it is handed: the reference the decoded rows are compared with."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.messages: list[str] = []  # rendered at the call, as the runner must keep them

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.messages.append(record.getMessage())


def test_rows_carry_each_records_fields_as_the_log_record_had_them() -> None:
    """Field by field, every decoded row matches the LogRecord the call made (the compact queue loses nothing)."""
    host = Host()
    handler = RunnerLogHandler(InMemoryTransport(host))
    keep = Keep()
    log = logging.getLogger("fast.fields")
    log.handlers[:] = [keep, handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    _calls(log, _same, _same)
    assert handler.shutdown(5000)
    assert len(host.rows) == len(keep.records) == 11
    pairs = zip(host.rows, keep.records, keep.messages, strict=True)
    for seq, (row, record, message) in enumerate(pairs, start=1):
        attributes = row[Rec.ATTRIBUTES]
        assert row[Rec.SEQ] == seq
        assert row[Rec.TIME] == int(record.created * 1e9)
        assert (row[Rec.SEVERITY_TEXT], row[Rec.LEVELNO], row[Rec.LOGGER]) == (
            record.levelname,
            record.levelno,
            record.name,
        )
        if not isinstance(record.msg, dict):
            assert row[Rec.BODY] == message
        assert (attributes["code.file.path"], attributes["code.function.name"]) == (
            record.pathname,
            record.funcName,
        )
        assert (attributes["code.line.number"], attributes["thread.id"]) == (record.lineno, record.thread)
        assert attributes["thread.name"] == record.threadName
        assert (row[Rec.EXCEPTION] is not None) == (record.exc_info is not None)
        assert ("code.stacktrace" in attributes) == (record.stack_info is not None)
        assert (row[Rec.TRACE_ID] is not None) == (
            record.levelno == logging.ERROR and "span" in record.getMessage()
        )
    assert host.rows[4][Rec.ATTRIBUTES]["user"] == "ann"


def test_a_plain_batch_frame_carries_the_rows_to_wire_makes() -> None:
    """The one-call frame of plain records decodes to the rows ``to_wire`` gives, record by record."""
    records = [
        logging.LogRecord(
            "fast.rows", logging.INFO, __file__, 7, "user %s fetched %s", (i, "berlin"), None, "f"
        )
        for i in range(40)
    ]
    records.append(logging.LogRecord("fast.rows", 25, __file__, 8, "custom level, no args", None, None))
    records.append(logging.LogRecord("fast.rows", logging.INFO, __file__, 9, "long " * 20_000, None, None))
    items = [(seq, *intake.take(record)) for seq, record in enumerate(records, start=1)]
    limits = WireLimits.of(RunnerConfig())
    frames = build_frames(items, limits, 1 << 20, lambda: {"t": "batch"}, lambda item, error: None)
    decoded = [row for frame in frames for row in msgpack.unpackb(frame.frame[4:], raw=False)["records"]]
    expected = [msgpack.unpackb(msgpack.packb(to_wire(item, limits, 0)), raw=False) for item in items]
    assert len(frames) == 1 and len(decoded) == len(expected) == 42
    # Byte for byte what the row-by-row path makes of the same rows: the wire format is unchanged.
    rows = msgpack.unpackb(frames[0].frame[4:], raw=False)["records"]
    packed = [msgpack.packb(row, use_bin_type=True) for row in rows]
    assert frames[0].frame == encode_message_with_records({"t": "batch"}, packed)
    for got, want in zip(decoded, expected, strict=True):
        assert got[: Rec.OBSERVED_TIME] + got[Rec.OBSERVED_TIME + 1 :] == (
            want[: Rec.OBSERVED_TIME] + want[Rec.OBSERVED_TIME + 1 :]
        )


def _record(body: str, seq: int, **fields: Any) -> logging.LogRecord:
    record = logging.LogRecord("fast.sites", logging.INFO, __file__, 11, body, None, None, func="site")
    record.__dict__.update(fields)
    return record


# Sequence numbers at each edge of msgpack's int formats; bodies at each edge of its str formats.
_EDGE_SEQS = (1, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**40)
_EDGE_BODIES = ("", "a" * 31, "b" * 32, "c" * 255, "d" * 256, "e" * 16_384, "é ü ß", "😀" * 40, "lone \udc80")


def test_plain_rows_packed_by_site_are_byte_for_byte_msgpacks_of_the_row() -> None:
    """Rows packed from their site's bytes equal the general path's (``to_wire`` + msgpack), at every edge."""
    records = [_record(body, 0) for body in _EDGE_BODIES]
    records += [_record("custom level", 0, levelno=25, levelname="Level 25"), _record("odd", 0, levelno=99)]
    records += [_record("no thread", 0, thread=None, threadName=None), _record("early", 0, created=1.5)]
    # Every record at every sequence number: sites repeat, as in a burst.
    items = [(seq, *intake.take(record)) for seq in _EDGE_SEQS for record in records]
    limits = WireLimits.of(RunnerConfig())
    errors: list[Exception] = []
    frames = build_frames(items, limits, 1 << 23, lambda: {"t": "batch"}, lambda item, e: errors.append(e))
    assert len(frames) == 1 and not errors
    observed = msgpack.unpackb(frames[0].frame[4:], raw=False)["records"][0][Rec.OBSERVED_TIME]
    packer = msgpack.Packer(use_bin_type=True)
    expected = [pack_row(packer, to_wire(item, limits, observed), 1 << 23) for item in items]
    assert frames[0].frame == encode_message_with_records({"t": "batch"}, expected)
