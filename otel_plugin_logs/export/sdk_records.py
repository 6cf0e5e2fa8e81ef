"""The SDK's own path to the same records: ``ReadableLogRecord``s built through ``Logger.emit``.

For exporters that only take SDK records (console, a user's own), and for the tests, as the
reference the direct encoders of ``_otlp`` must equal. Host side only (imports the SDK).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from otel_plugin_logs.export.otlp import Entry, ResourceInfo, event_name_of, exported_attributes

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import ReadableLogRecord


class _Collect:
    """A LogRecordProcessor that keeps what ``Logger.emit`` produced."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def on_emit(self, log_record: Any) -> None:
        self.records.append(log_record)

    def emit(self, log_record: Any) -> None:
        self.records.append(log_record)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class SdkRecordBuilder:
    """Builds SDK ``ReadableLogRecord``s through public API: ``LoggerProvider``/``Logger.emit``.

    Trace context is passed as a ``Context`` holding a non-recording span made from the
    runner's ids (the ``trace_id=`` keywords are deprecated since SDK 1.35).
    """

    def __init__(self) -> None:
        self._providers: dict[ResourceInfo, tuple[Any, _Collect]] = {}

    def build(self, items: Sequence[tuple[ResourceInfo, Entry]]) -> list[ReadableLogRecord]:
        from opentelemetry._logs import SeverityNumber
        from opentelemetry.context import Context
        from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.trace import (
            NonRecordingSpan,
            SpanContext,
            TraceFlags,
            set_span_in_context,
        )

        out: list[ReadableLogRecord] = []
        for resource, entry in items:
            provider_and_sink = self._providers.get(resource)
            if provider_and_sink is None:
                sink = _Collect()
                provider = LoggerProvider(resource=Resource(resource.attributes), shutdown_on_exit=False)
                provider.add_log_record_processor(sink)  # type: ignore[arg-type]
                provider_and_sink = self._providers[resource] = (provider, sink)
            provider, sink = provider_and_sink
            context = Context()
            if entry.trace_id and entry.span_id:
                span_context = SpanContext(
                    int.from_bytes(entry.trace_id, "big"),
                    int.from_bytes(entry.span_id, "big"),
                    is_remote=True,
                    trace_flags=TraceFlags(entry.flags & 0xFF),
                )
                context = set_span_in_context(NonRecordingSpan(span_context), context)
            provider.get_logger(entry.scope).emit(
                timestamp=entry.time,
                observed_timestamp=entry.observed_time,
                context=context,
                severity_number=SeverityNumber(entry.severity_number),
                severity_text=entry.severity_text,
                body=entry.body,
                attributes=dict(exported_attributes(entry)),
                event_name=event_name_of(entry) or None,
            )
            written = sink.records.pop()
            out.append(
                ReadableLogRecord(
                    log_record=written.log_record,
                    resource=written.resource,
                    instrumentation_scope=written.instrumentation_scope,
                    limits=written.limits,
                )
            )
        return out
