"""What keeps the bridge's own machinery out of the host's logging.

asyncio's "Using selector" note of the bridge's loop, and OTel logging handlers that would
export a replayed record a second time.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from otel_plugin_logs.host.replay import ReplayedRecordFilter


def quiet_new_event_loop() -> asyncio.AbstractEventLoop:
    """A new loop, without asyncio's "Using selector: ..." DEBUG record reaching the host's handlers.

    The bridge's own machinery is not the user's business; only that record, on this thread, is
    held back: the user's own asyncio records pass as before.
    """
    thread = threading.get_ident()

    def own_selector_note(record: logging.LogRecord) -> bool:
        return not (record.thread == thread and record.msg == "Using selector: %s")

    logger = logging.getLogger("asyncio")
    logger.addFilter(own_selector_note)
    try:
        return asyncio.new_event_loop()
    finally:
        logger.removeFilter(own_selector_note)


def guard_otel_handlers(replay_prefix: str) -> None:
    """Keep an OTel ``LoggingHandler`` a replayed record passes from exporting it again.

    The current one is ``opentelemetry-instrumentation-logging``'s (what
    ``opentelemetry-instrument`` installs on the root logger); the SDK's deprecated one and
    subclasses of either are recognised too. Replayed records pass the loggers of the
    replay prefix on their way to the root, so those are guarded as well.
    """
    loggers = [logging.getLogger()]
    if replay_prefix:
        parts = replay_prefix.split(".")
        loggers += [logging.getLogger(".".join(parts[: i + 1])) for i in range(len(parts))]
    for logger in loggers:
        for handler in logger.handlers:
            if is_otel_logging_handler(handler) and not any(
                isinstance(f, ReplayedRecordFilter) for f in handler.filters
            ):
                handler.addFilter(ReplayedRecordFilter())


def is_otel_logging_handler(handler: logging.Handler) -> bool:
    return any(
        kind.__name__ == "LoggingHandler" and kind.__module__.startswith("opentelemetry.")
        for kind in type(handler).__mro__
    )
