"""The capture hook offers each record once, to whatever it was last retargeted to."""

from __future__ import annotations

import logging

from otel_plugin_logs.runner.capture import Capture


def test_after_retarget_records_are_offered_to_the_new_target_only() -> None:
    """Records before ``retarget`` reach the first target, records after it the second, each once."""
    first: list[str] = []
    second: list[str] = []

    def take_first(record: logging.LogRecord) -> bool:
        first.append(record.getMessage())
        return True

    def take_second(record: logging.LogRecord) -> bool:
        second.append(record.getMessage())
        return True

    capture = Capture(take_first, hide_console=False)
    log = logging.getLogger("capture.retarget")
    log.setLevel(logging.INFO)
    log.propagate = False
    capture.install()
    try:
        log.info("one")
        capture.retarget(take_second)
        log.info("two")
        log.info("three")
    finally:
        capture.uninstall()
    log.info("after")
    assert (first, second) == (["one"], ["two", "three"])
