"""Doctor's checks: the runtime directory, the file sink, and a test record sent to the endpoint."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.export.settings import ExportSettings


@dataclass(slots=True)
class Check:
    """One line of doctor's verdict, with what to do when it failed."""

    ok: bool
    title: str
    fixes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What became of the test record."""

    ok: bool
    detail: str
    elapsed_seconds: float


def probe(settings: ExportSettings, timeout_seconds: float, service: str) -> ProbeResult:
    """Export one test record to the configured OTLP endpoint."""
    from otel_plugin_logs.export.items import Item
    from otel_plugin_logs.export.otlp import Entry, ResourceInfo
    from otel_plugin_logs.export.otlp_sinks import OtlpGrpcSink, OtlpHttpSink
    from otel_plugin_logs.export.sinks import Sink

    # The SDK exporter logs each failed attempt; the check's own report says it better.
    sdk_logger = logging.getLogger("opentelemetry")
    level = sdk_logger.level
    sdk_logger.setLevel(logging.CRITICAL)
    started = time.monotonic()
    try:
        endpoint = settings.endpoint if settings.endpoint_source == "argument" else None
        if settings.protocol == "grpc":
            sink: Sink = OtlpGrpcSink(endpoint, timeout_seconds)
        else:
            sink = OtlpHttpSink(endpoint, timeout_seconds, json_encoding=settings.protocol == "http/json")
        now = time.time_ns()
        entry = Entry(
            1,
            now,
            now,
            9,
            "INFO",
            "otel-plugin-logs doctor: test record",
            "otel_plugin_logs.doctor",
            {"doctor.check": "endpoint"},
            None,
            None,
            0,
        )
        resource = ResourceInfo({"service.name": "otel-plugin-logs-doctor", "service.namespace": service})
        try:
            outcome = sink.export([Item.of(resource, entry)], timeout_seconds)
        finally:
            sink.shutdown()
    except Exception as error:
        return ProbeResult(False, f"{type(error).__name__}: {error}", time.monotonic() - started)
    finally:
        sdk_logger.setLevel(level)
    elapsed = time.monotonic() - started
    if outcome.ok and outcome.rejected_records:
        return ProbeResult(
            False, f"the collector refused the test record ({outcome.rejected_records} rejected)", elapsed
        )
    return ProbeResult(outcome.ok, outcome.error, elapsed)


def fixes_for(settings: ExportSettings, detail: str) -> list[str]:
    """What to try when the test record failed with ``detail``."""
    text = detail.lower()
    endpoint = settings.endpoint
    fixes = []
    port = endpoint.rsplit(":", 1)[-1].split("/", 1)[0] if ":" in endpoint.split("//", 1)[-1] else ""
    if settings.protocol == "grpc" and port == "4318":
        fixes.append("port 4318 is OTLP/HTTP by convention: set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf")
    if settings.protocol != "grpc" and port == "4317":
        fixes.append("port 4317 is OTLP/gRPC by convention: set OTEL_EXPORTER_OTLP_PROTOCOL=grpc")
    if any(word in text for word in ("unavailable", "refused", "failed to connect", "connectionerror")):
        fixes.append(f"nothing accepts connections at {endpoint}: start a collector, e.g.")
        fixes.append("  docker compose up -d otel-collector loki jaeger grafana   (from this repository)")
        fixes.append("or point OTEL_EXPORTER_OTLP_ENDPOINT at yours")
    if "deadline" in text or "timed out" in text or "timeout" in text:
        fixes.append("the endpoint did not answer in time: check the host, port, a firewall, and that")
        fixes.append("https:// is used only when the collector speaks TLS (http:// means plaintext)")
    if any(word in text for word in ("ssl", "certificate", "handshake")):
        fixes.append(
            "TLS failed: check OTEL_EXPORTER_OTLP_CERTIFICATE, or use http:// for a plaintext collector"
        )
    if any(word in text for word in ("unauthenticated", "permission_denied", "http 401", "http 403")):
        fixes.append("the collector refused the credentials: check OTEL_EXPORTER_OTLP_HEADERS")
    if "http 404" in text or "unimplemented" in text:
        fixes.append(
            "wrong path or protocol: an HTTP logs endpoint ends in /v1/logs "
            "(OTEL_EXPORTER_OTLP_LOGS_ENDPOINT is used as given); gRPC and HTTP use different ports"
        )
    if not fixes:
        fixes.append("check the collector's own logs (docker compose logs otel-collector)")
    return fixes


def runtime_dir_check(config: HostConfig) -> Check:
    directory = config.runtime_dir
    if not directory:
        return Check(True, "runtime directory: a new private temporary directory per host")
    socket_path = os.path.join(directory, "bridge.sock")
    if len(socket_path.encode()) > 100:
        return Check(
            False,
            f"runtime directory {directory}: the socket path would be too long for a Unix socket",
            ["set OTEL_PLUGIN_LOGS_RUNTIME_DIR to a shorter path"],
        )
    if os.path.isdir(directory):
        info = os.stat(directory)
        if info.st_uid != os.getuid():
            return Check(
                False,
                f"runtime directory {directory} belongs to uid {info.st_uid}, not to this user",
                ["use a directory of your own for OTEL_PLUGIN_LOGS_RUNTIME_DIR"],
            )
        if not os.access(directory, os.W_OK | os.X_OK):
            return Check(False, f"runtime directory {directory} is not writable", ["fix its permissions"])
        return Check(True, f"runtime directory {directory} is usable")
    parent = _existing_parent(directory)
    if not os.access(parent, os.W_OK | os.X_OK):
        return Check(False, f"runtime directory {directory} cannot be created ({parent} is read-only)")
    return Check(True, f"runtime directory {directory} will be created")


def _existing_parent(path: str) -> str:
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def file_check(path: str) -> Check:
    directory = os.path.dirname(path) or "."
    target = directory if os.path.isdir(directory) else _existing_parent(directory)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return Check(False, f"the file sink {path} is not writable", ["fix its permissions"])
    if not os.access(target, os.W_OK | os.X_OK):
        return Check(
            False,
            f"the file sink's directory {directory} is not writable",
            ["set OTEL_PLUGIN_LOGS_FILE_DIR to a writable directory"],
        )
    return Check(True, f"the file sink {path} is writable")
