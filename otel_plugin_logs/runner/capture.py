"""Capture that a plugin's logging setup cannot undo, and its console shown once.

A handler on the root logger is what ``dictConfig``, ``basicConfig(force=True)``,
``fileConfig`` and ``logging.shutdown()`` close or remove, and what records of loggers with
``propagate=False`` never reach. Every record that any logger handles passes through
``Logger.callHandlers`` exactly once, after that logger's level, ``disabled`` flag and
filters were checked and before any handler sees it. So the bridge hooks there: whatever the
plugin does to its handlers, each record it logs is offered to the bridge once, and a record
the plugin's own configuration filters out never gets there.

The console gate: under a host that captures the plugin's stdout/stderr, a console handler of
the plugin (``basicConfig``, a dictConfig ``StreamHandler``, uvicorn's, loguru's sink fed by
an ``InterceptHandler``) would make the host show each record twice: once as the record, once
as the text the plugin printed. What a thread writes to ``sys.stdout``/``sys.stderr`` *while
it dispatches a record the bridge carries* is that record's console echo, so it is hidden;
everything else written there (a ``print``, a warning, a record the bridge does not carry)
passes through untouched.

Runner side only: standard library.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterable

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from typing import Any, TextIO

_CallHandlers = Callable[[logging.Logger, logging.LogRecord], None]


class _DispatchState(threading.local):
    # The carried record this thread is dispatching, if any. A class attribute is the
    # per-thread default: reading it never raises.
    current: logging.LogRecord | None = None


class ConsoleGate:
    """A stand-in for ``sys.stdout``/``sys.stderr`` that drops a carried record's console echo."""

    def __init__(self, stream: TextIO, state: _DispatchState) -> None:
        self._gated_stream = stream
        self._gated_state = state

    def write(self, text: str) -> int:
        if self._gated_state.current is not None:
            return len(text)
        return self._gated_stream.write(text)

    def writelines(self, lines: Iterable[str]) -> None:
        if self._gated_state.current is None:
            self._gated_stream.writelines(lines)

    def __getattr__(self, name: str) -> Any:
        # fileno, isatty, encoding, buffer, flush, reconfigure...: the real stream's.
        return getattr(self._gated_stream, name)

    def __repr__(self) -> str:
        return f"<ConsoleGate of {self._gated_stream!r}>"


def ungated(stream: Any) -> Any:
    """The real stream behind a gate (or the stream itself)."""
    while isinstance(stream, ConsoleGate):
        stream = stream._gated_stream
    return stream


class Capture:
    """Offers every handled record to ``accept`` once; hides its console echo if asked."""

    def __init__(self, accept: Callable[[logging.LogRecord], bool], *, hide_console: bool) -> None:
        self._accept = [accept]  # a cell the hook reads at each record: ``retarget`` changes it
        self._hide_console = hide_console
        self._state = _DispatchState()
        self._original: _CallHandlers | None = None
        self._hooked: _CallHandlers | None = None
        self._streams: dict[str, Any] = {}

    @property
    def installed(self) -> bool:
        return self._original is not None

    def install(self) -> None:
        if self._original is not None:
            return
        original: _CallHandlers = logging.Logger.callHandlers
        self._original = original
        self._hooked = self._hook(original)
        logging.Logger.callHandlers = self._hooked  # type: ignore[method-assign, assignment]
        if self._hide_console:
            for name in ("stdout", "stderr"):
                stream = getattr(sys, name)
                if stream is not None and not isinstance(stream, ConsoleGate):
                    self._streams[name] = stream
                    setattr(sys, name, ConsoleGate(stream, self._state))

    def uninstall(self) -> None:
        original, self._original = self._original, None
        if original is None:
            return
        if logging.Logger.callHandlers is self._hooked:  # not if someone wrapped it after us
            logging.Logger.callHandlers = original  # type: ignore[method-assign, assignment]
        for name, stream in self._streams.items():
            if isinstance(getattr(sys, name), ConsoleGate):
                setattr(sys, name, stream)
        self._streams.clear()

    def retarget(self, accept: Callable[[logging.LogRecord], bool]) -> None:
        """Offer records to ``accept`` from now on (the handler's own method, once it exists:
        one call less per record than going through whoever made it)."""
        self._accept[0] = accept

    def _hook(self, original: _CallHandlers) -> _CallHandlers:
        target = self._accept
        state = self._state

        def call_handlers(logger: logging.Logger, record: logging.LogRecord) -> None:
            # A handler that hands the record it is handling to another logger dispatches it
            # again: it was offered already.
            if record is state.current or not target[0](record):
                original(logger, record)
                return
            outer = state.current
            state.current = record  # what the gate hides while it is set (if it is installed)
            try:
                original(logger, record)
            finally:
                state.current = outer

        call_handlers.__wrapped__ = original  # type: ignore[attr-defined]
        return call_handlers
