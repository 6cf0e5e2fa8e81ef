"""SeverityBuffer: bounded by count and bytes, shedding the oldest of the lowest severity first."""

from __future__ import annotations

import logging

from otel_plugin_logs.runner import intake
from otel_plugin_logs.runner.buffer import Q, QueuedRecord, SeverityBuffer, level_class


def _item(seq: int, levelno: int, size_bytes: int = 100) -> QueuedRecord:
    """A queued record as emit makes it, with its byte count set to ``size_bytes``."""
    fields = intake.take(logging.makeLogRecord({"levelno": levelno, "msg": f"r{seq}"}))
    return (seq, size_bytes, *fields[Q.SIZE_BYTES :])


def _fill(buffer: SeverityBuffer, levels: list[int], size_bytes: int = 100) -> None:
    for seq, levelno in enumerate(levels, start=1):
        buffer.append(_item(seq, levelno, size_bytes))


def test_level_classes_split_at_info_warning_and_error() -> None:
    """DEBUG and below, INFO, WARNING and ERROR-or-above are the four classes."""
    assert [level_class(n) for n in (5, 10, 20, 25, 30, 40, 50, 99)] == [0, 0, 1, 1, 2, 3, 3, 3]


def test_over_the_count_bound_the_oldest_of_the_lowest_class_goes_first() -> None:
    """A DEBUG record is shed before any INFO, and the oldest DEBUG before a newer one."""
    buffer = SeverityBuffer(max_records=3, max_bytes=1 << 30)
    _fill(buffer, [logging.INFO, logging.DEBUG, logging.ERROR, logging.DEBUG])
    shed = buffer.shed(held_bytes=0)
    assert [item[Q.SEQ] for item in shed] == [2]
    assert [item[Q.SEQ] for item in buffer.take_all()] == [1, 3, 4]


def test_over_the_byte_bound_records_are_shed_until_it_fits() -> None:
    """Bytes held by the send window count against the same bound."""
    buffer = SeverityBuffer(max_records=100, max_bytes=1000)
    _fill(buffer, [logging.INFO] * 5, size_bytes=150)
    assert not buffer.over_bounds(held_bytes=0)
    shed = buffer.shed(held_bytes=500)
    assert [item[Q.SEQ] for item in shed] == [1, 2] and buffer.size_bytes == 450
    assert buffer.shed_total == 2


def test_take_returns_the_oldest_by_sequence_across_classes() -> None:
    """A batch is the lowest sequence numbers, whatever their severity."""
    buffer = SeverityBuffer(max_records=100, max_bytes=1 << 30)
    _fill(buffer, [logging.ERROR, logging.DEBUG, logging.WARNING, logging.INFO, logging.DEBUG])
    assert [item[Q.SEQ] for item in buffer.take(3)] == [1, 2, 3]
    assert buffer.count == 2 and buffer.size_bytes == 200


def test_holds_through_says_whether_an_old_enough_record_waits() -> None:
    """holds_through(seq) is true while a record numbered seq or lower is queued."""
    buffer = SeverityBuffer(max_records=100, max_bytes=1 << 30)
    _fill(buffer, [logging.INFO, logging.ERROR])
    buffer.take(1)
    assert not buffer.holds_through(1) and buffer.holds_through(2)
