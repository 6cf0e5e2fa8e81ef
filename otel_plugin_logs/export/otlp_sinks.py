"""OTLP sinks: gRPC and HTTP through the SDK's exporters, fed the bytes our encoder wrote."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from otel_plugin_logs.export.items import Item, resource_entry_pairs
from otel_plugin_logs.export.otlp import encode_json_line, encode_request
from otel_plugin_logs.export.sdk_private import JSON_CONTENT_TYPE, GrpcBytesExporter, HttpBytesExporter
from otel_plugin_logs.export.sinks import Outcome

_GRPC_RETRYABLE: Final = frozenset(
    {
        "CANCELLED",
        "DEADLINE_EXCEEDED",
        "RESOURCE_EXHAUSTED",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNAVAILABLE",
        "DATA_LOSS",
    }
)
_HTTP_RETRYABLE: Final = frozenset({408, 429, 502, 503, 504})


class OtlpGrpcSink:
    """OTLP/gRPC through the SDK's exporter, fed the bytes ``encode_request`` wrote."""

    takes_protobuf = True  # the host encodes each record as it builds it

    def __init__(self, endpoint: str | None = None, timeout_seconds: float | None = None) -> None:
        self._exporter = GrpcBytesExporter(endpoint, timeout_seconds)
        self.description = f"OTLP/gRPC {self._exporter.endpoint}".strip()

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome:
        try:
            data = encode_request(resource_entry_pairs(items))
        except Exception as error:
            return Outcome.rejected(f"encoding failed: {error}")
        try:
            result = self._exporter.send(data, timeout_seconds)
        except Exception as error:
            return Outcome.errored(f"{type(error).__name__}: {error}")
        if result.ok:
            return Outcome.delivered(result.rejected_records)
        code = result.status_code
        detail = f"{code or 'error'}: {result.detail}"
        return Outcome.errored(detail) if code in _GRPC_RETRYABLE or not code else Outcome.rejected(detail)

    def shutdown(self) -> None:
        self._exporter.shutdown()


class OtlpHttpSink:
    """OTLP/HTTP through the SDK's exporter: protobuf (``http/protobuf``) or JSON (``http/json``)."""

    def __init__(
        self,
        endpoint: str | None = None,
        timeout_seconds: float | None = None,
        *,
        json_encoding: bool = False,
    ) -> None:
        self._json = json_encoding
        self.takes_protobuf = not json_encoding
        content_type = JSON_CONTENT_TYPE if json_encoding else ""
        self._exporter = HttpBytesExporter(endpoint, timeout_seconds, content_type)
        self.description = f"OTLP/HTTP{'/JSON' if json_encoding else ''} {self._exporter.endpoint}"

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome:
        try:
            pairs = resource_entry_pairs(items)
            data = encode_json_line(pairs).encode("utf-8") if self._json else encode_request(pairs)
        except Exception as error:
            return Outcome.rejected(f"encoding failed: {error}")
        try:
            result = self._exporter.send(data, timeout_seconds)
        except Exception as error:
            return Outcome.errored(f"{type(error).__name__}: {error}")
        if result.ok:
            return Outcome.delivered()
        status = result.status_code
        detail = f"HTTP {status}: {result.detail}"
        if status is None or status in _HTTP_RETRYABLE:
            return Outcome.errored(detail)
        return Outcome.rejected(detail)

    def shutdown(self) -> None:
        self._exporter.shutdown()
