"""A stand-in for the runtime's original runner handler (the one this project started from).

It behaves like the seed's ``RunnerIPCLogHandler``: only loggers under a few prefixes, a ring
buffer of 200 entries that silently overwrites the oldest when full, an asyncio task that
sends up to 20 entries every 0.1 s as a ``runner.log_batch`` event, and a ``[LOG-FALLBACK]``
line on stderr when the channel is down or the send fails. No trace context, no attributes,
no acknowledgement. Kept to show that the host can take such runners in unchanged.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sys
from typing import Any, ClassVar, Final

BUFFER_ENTRIES: Final = 200
FLUSH_INTERVAL_SECONDS: Final = 0.1
BATCH_ENTRIES: Final = 20


class SeedStyleLogHandler(logging.Handler):
    """emit() appends to a bounded deque; a task on the runtime's loop ships batches."""

    forwarded_prefixes: ClassVar[tuple[str, ...]] = ("plugin.", "plugin_runtime.")

    def __init__(self) -> None:
        super().__init__()
        self._buffer: collections.deque[dict[str, Any]] = collections.deque(maxlen=BUFFER_ENTRIES)
        self._client: Any = None
        self._task: asyncio.Task[None] | None = None

    def start(self, client: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._task = loop.create_task(self._flush_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._buffer:
            await self._send_some()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if not record.name.startswith(self.forwarded_prefixes):
                return
            text = self.format(record)  # also renders record.exc_text
            self._buffer.append(
                {
                    "timestamp_ms": int(record.created * 1000),
                    "level": record.levelno,
                    "logger_name": record.name,
                    "message": text,
                    "exception_text": record.exc_text or "",
                }
            )
        except Exception:
            self.handleError(record)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_SECONDS)
            with contextlib.suppress(Exception):  # the seed ignores every send-side error
                await self._send_some()

    async def _send_some(self) -> None:
        if not self._buffer or self._client is None:
            return
        entries = [self._buffer.popleft() for _ in range(min(BATCH_ENTRIES, len(self._buffer)))]
        if not self._client.is_connected:
            _fallback(entries)
            return
        try:
            await self._client.send_event("runner.log_batch", payload={"entries": entries})
        except Exception:
            _fallback(entries)


def _fallback(entries: list[dict[str, Any]]) -> None:
    for entry in entries:
        print(f"[LOG-FALLBACK] [{entry['logger_name']}] {entry['message']}", file=sys.stderr)
