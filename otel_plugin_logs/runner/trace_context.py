"""Trace context, captured on the emitting thread and read on the sender thread.

``emit`` only takes the current OTel ``Context`` (an immutable map, one context-variable
read); finding the span in it and its ids is left to the sender. Importing the API just to
find there is no span would cost every plugin start-up, so nothing is imported until some
other code imported ``opentelemetry.trace``.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Callable

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from typing import Any


class SpanIds:
    """The ids of the span a record was logged in.

    A slotted class, not a dataclass: the runner's path does not import dataclasses (it loads
    inspect and ast, which every plugin would pay for at start and again at exit).
    """

    __slots__ = ("span_id", "trace_flags", "trace_id")

    def __init__(self, trace_id: int, span_id: int, trace_flags: int) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.trace_flags = trace_flags


class _OtelContext:
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
        global capture_context
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
        capture_context = getter
        return getter

    def ids(self, context: Any) -> SpanIds | None:
        if context is None or self._get_span is None:
            return None
        span_context = self._get_span(context).get_span_context()
        if not span_context.is_valid:
            return None
        return SpanIds(span_context.trace_id, span_context.span_id, int(span_context.trace_flags))


_otel_context = _OtelContext()
# Rebound to the bare context-variable read once the API is loaded: call it as
# ``trace_context.capture_context()``.
capture_context: Callable[[], Any] = _otel_context.capture


def span_ids(context: Any) -> SpanIds | None:
    """The span of a captured context, if it has a valid one."""
    return _otel_context.ids(context)
