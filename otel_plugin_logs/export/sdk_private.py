"""Every use of the OpenTelemetry SDK's private attributes, in one place.

The bridge encodes requests itself (``_otlp``) and sends the bytes through the SDK's OTLP
exporters, so that their configuration (``OTEL_EXPORTER_OTLP_*``: endpoint, TLS, headers,
compression, timeout) and retries apply unchanged. The exporters have no public way to send
bytes, so this module reaches into them, and nowhere else does. ``missing_internals`` lists
what of it the installed SDK lacks: the test suite asserts it is empty, so an SDK release
that moves one of these fails one named test instead of failing exports at run time.
Supported: opentelemetry-sdk / -exporter-otlp 1.45.x (pyproject.toml).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Final

# The private names used below; those set in __init__ are checked on an instance.
GRPC_EXPORTER: Final = "opentelemetry.exporter.otlp.proto.grpc._log_exporter"
HTTP_EXPORTER: Final = "opentelemetry.exporter.otlp.proto.http._log_exporter"
_GRPC_CLASS_ATTRIBUTES: Final = ("_initialize_channel_and_stub", "_translate_data", "_count_data", "_export")
_GRPC_INSTANCE_ATTRIBUTES: Final = ("_stub", "_metrics", "_timeout")
_HTTP_INSTANCE_ATTRIBUTES: Final = ("_client", "_endpoint")
_HTTP_CLIENT_ATTRIBUTES: Final = ("_timeout", "export")
_METRICS_ATTRIBUTES: Final = ("export_operation",)
_EXPORT_RESULT_FIELDS: Final = ("success", "status_code", "reason", "error")
_LOGS_SERVICE_EXPORT: Final = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
JSON_CONTENT_TYPE: Final = "application/json"


class SdkChangedError(RuntimeError):
    """The installed SDK lacks a private name this module uses: said at start-up, with versions."""

    def __init__(self, error: AttributeError) -> None:
        from importlib.metadata import version

        super().__init__(
            f"opentelemetry-exporter-otlp {version('opentelemetry-exporter-otlp')} changed an internal "
            f"the bridge uses ({error}); supported are 1.45.x: install opentelemetry-exporter-otlp~=1.45.0"
        )


@dataclass(frozen=True, slots=True)
class GrpcResult:
    """What one gRPC export attempt (with the SDK's retries inside it) came to."""

    ok: bool
    status_code: str = ""  # the gRPC status name when it failed with one
    detail: str = ""
    rejected_records: int = 0  # refused by the collector in a partial success


@dataclass(frozen=True, slots=True)
class HttpResult:
    """What one HTTP export attempt (with the SDK's retries inside it) came to."""

    ok: bool
    status_code: int | None = None
    detail: str = ""


class _CaptureResult:
    """Stands in for the exporter's metrics hook to learn why an export failed.

    The SDK exporters return only SUCCESS/FAILURE; their metrics hook is handed the error
    and the status code, which is what tells a retryable outage from a permanent refusal.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.error: Exception | None = None
        self.error_attrs: Any = None

    def export_operation(self, num_items: int) -> Any:
        owner = self

        class _Context:
            def __enter__(self) -> Any:
                self._cm = owner.inner.export_operation(num_items)
                self._result = self._cm.__enter__()
                return self._result

            def __exit__(self, *exc: object) -> Any:
                owner.error = getattr(self._result, "error", None)
                owner.error_attrs = getattr(self._result, "error_attrs", None)
                return self._cm.__exit__(*exc)

        return _Context()


def _identity_serializer(request: Any) -> bytes:
    return request if isinstance(request, bytes) else bytes(request.SerializeToString())


class GrpcBytesExporter:
    """The SDK's gRPC ``OTLPLogExporter``, sending request bytes it is given as they are."""

    def __init__(self, endpoint: str | None, timeout_seconds: float | None) -> None:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

        responses: list[Any] = []

        class _RawStub:
            def __init__(self, channel: Any) -> None:
                call = channel.unary_unary(
                    _LOGS_SERVICE_EXPORT,
                    request_serializer=_identity_serializer,
                    response_deserializer=ExportLogsServiceResponse.FromString,
                )

                def export(*args: Any, **kwargs: Any) -> Any:
                    response = call(*args, **kwargs)
                    responses.append(response)
                    return response

                self.Export = export

        class _Exporter(OTLPLogExporter):
            def _initialize_channel_and_stub(self) -> None:
                self._stub = _RawStub
                super()._initialize_channel_and_stub()  # type: ignore[no-untyped-call]

            def _translate_data(self, data: Any) -> Any:
                return data  # already an encoded ExportLogsServiceRequest

            def _count_data(self, data: Any) -> int:
                return 1

        self._responses = responses
        self._exporter = _Exporter(endpoint=endpoint, timeout=timeout_seconds)
        try:
            self._capture = _CaptureResult(self._exporter._metrics)
            self._exporter._metrics = self._capture
            self._configured_timeout_seconds = float(self._exporter._timeout)
        except AttributeError as error:
            raise SdkChangedError(error) from None
        self.endpoint = endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")

    def send(self, data: bytes, timeout_seconds: float) -> GrpcResult:
        """Send one encoded request within ``timeout_seconds`` (never more than configured)."""
        self._exporter._timeout = max(0.05, min(self._configured_timeout_seconds, timeout_seconds))
        self._capture.error = None
        self._capture.error_attrs = None
        self._responses.clear()
        result = self._exporter._export(data)  # type: ignore[arg-type]  # bytes pass through _translate_data
        if result.name == "SUCCESS":
            rejected = 0
            for response in self._responses:
                if response is not None and response.HasField("partial_success"):
                    rejected += int(response.partial_success.rejected_log_records)
            return GrpcResult(True, rejected_records=rejected)
        attrs = self._capture.error_attrs or {}
        code = str(attrs.get("rpc.response.status_code", ""))
        failure = self._capture.error
        details = getattr(failure, "details", None)
        detail = details() if callable(details) else (str(failure) if failure else "no detail")
        return GrpcResult(False, status_code=code, detail=str(detail))

    def shutdown(self) -> None:
        self._exporter.shutdown(timeout_millis=1000)


class HttpBytesExporter:
    """The SDK's HTTP ``OTLPLogExporter``'s client, posting request bytes it is given.

    ``content_type`` is sent as a header argument of the exporter (public), which is how
    the same client carries OTLP/JSON for ``http/json``.
    """

    def __init__(self, endpoint: str | None, timeout_seconds: float | None, content_type: str = "") -> None:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        headers = {"Content-Type": content_type} if content_type else None
        self._exporter = OTLPLogExporter(endpoint=endpoint, timeout=timeout_seconds, headers=headers)
        try:
            self._client = self._exporter._client
            self._configured_timeout_seconds = float(self._client._timeout)
            self.endpoint = str(self._exporter._endpoint)
        except AttributeError as error:
            raise SdkChangedError(error) from None

    def send(self, data: bytes, timeout_seconds: float) -> HttpResult:
        """Post one encoded request within ``timeout_seconds`` (never more than configured)."""
        self._client._timeout = max(0.05, min(self._configured_timeout_seconds, timeout_seconds))
        result = self._client.export(data)
        if result.success:
            return HttpResult(True, result.status_code)
        return HttpResult(False, result.status_code, str(result.reason or result.error))

    def shutdown(self) -> None:
        self._exporter.shutdown()  # type: ignore[no-untyped-call]


def _lacking(owner: Any, label: str, names: tuple[str, ...]) -> list[str]:
    return [f"{label}.{name}" for name in names if not hasattr(owner, name)]


def missing_internals() -> list[str]:
    """The private SDK names this module uses that the installed SDK does not have."""
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcExporter
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpExporter

    missing = _lacking(GrpcExporter, f"{GRPC_EXPORTER}.OTLPLogExporter", _GRPC_CLASS_ATTRIBUTES)
    grpc = GrpcExporter(endpoint="http://127.0.0.1:9", timeout=1)
    try:
        missing += _lacking(grpc, "grpc OTLPLogExporter()", _GRPC_INSTANCE_ATTRIBUTES)
        metrics = getattr(grpc, "_metrics", None)
        missing += _lacking(metrics, "grpc OTLPLogExporter()._metrics", _METRICS_ATTRIBUTES)
    finally:
        grpc.shutdown(timeout_millis=100)
    http = HttpExporter(endpoint="http://127.0.0.1:9/v1/logs", timeout=1)
    try:
        missing += _lacking(http, f"{HTTP_EXPORTER}.OTLPLogExporter()", _HTTP_INSTANCE_ATTRIBUTES)
        client = getattr(http, "_client", None)
        missing += _lacking(client, "http OTLPLogExporter()._client", _HTTP_CLIENT_ATTRIBUTES)
        if client is not None and hasattr(client, "export"):
            result = client.export(b"")  # nothing listens on port 9: a failed result, at once
            missing += _lacking(
                result, "http OTLPLogExporter()._client.export() result", _EXPORT_RESULT_FIELDS
            )
    finally:
        http.shutdown()  # type: ignore[no-untyped-call]
    return missing
