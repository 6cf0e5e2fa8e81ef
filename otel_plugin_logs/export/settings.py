"""The exporter the host uses, resolved from arguments and the standard OTEL_* variables.

Bad values fail at start-up naming the variable, where the SDK would warn and guess later.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from otel_plugin_logs.config.checks import check_endpoint
from otel_plugin_logs.config.errors import ConfigError
from otel_plugin_logs.config.fields import parse_bool
from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.config.resource import ENV_RESOURCE_ATTRIBUTES, parse_resource_attributes
from otel_plugin_logs.conventions import DEFAULT_OTLP_GRPC_ENDPOINT
from otel_plugin_logs.export.file_sink import FileSink
from otel_plugin_logs.export.otlp_sinks import OtlpGrpcSink, OtlpHttpSink
from otel_plugin_logs.export.sinks import NullSink, SdkExporterSink, Sink, StdoutJsonSink

PROTOCOLS: Final = ("grpc", "http/protobuf", "http/json")


@dataclass(frozen=True, slots=True)
class ExportSettings:
    """The exporter the host will use, resolved from arguments and OTEL_* variables."""

    exporter: str  # otlp | file | otlp_json_file | console | none
    protocol: str = "grpc"  # grpc | http/protobuf | http/json
    protocol_source: str = "default"  # argument, the variable it came from, or default
    endpoint: str = ""
    endpoint_source: str = ""
    file_path: str = ""
    sdk_disabled: bool = False
    notes: tuple[str, ...] = field(default=())

    def destination(self) -> str:
        """Where records go, in words for a person."""
        if self.exporter == "file":
            return f"the OTLP/JSON file {self.file_path}"
        if self.exporter == "otlp_json_file":
            return "OTLP/JSON lines on stdout"
        if self.exporter == "otlp":
            transport = {"grpc": "gRPC", "http/json": "HTTP/JSON"}.get(self.protocol, "HTTP")
            return f"OTLP/{transport} {self.endpoint}"
        if self.exporter == "none":
            return "nowhere (export is off: OTEL_SDK_DISABLED or OTEL_LOGS_EXPORTER=none)"
        return "the console (stdout)"


_NUMBER_VARS: Final = (
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
)
_BOOL_VARS: Final = ("OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_LOGS_INSECURE", "OTEL_SDK_DISABLED")
_INT_VARS: Final = (
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT",
)
_FILE_VARS: Final = (
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE",
)


def _env(environ: Mapping[str, str], name: str) -> str:
    return environ.get(name, "").strip()


def validate_standard_env(environ: Mapping[str, str]) -> None:
    """Fail at start-up, naming the variable, where the SDK would warn and guess later."""
    for name in _NUMBER_VARS:
        raw = _env(environ, name)
        if raw:
            try:
                if not float(raw) > 0:
                    raise ValueError
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is invalid: expected a number of seconds > 0") from None
    for name in _BOOL_VARS:
        raw = _env(environ, name)
        if raw:
            try:
                parse_bool(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is invalid: expected true or false") from None
    for name in _INT_VARS:
        raw = _env(environ, name)
        if raw and not (raw.isdigit() and int(raw) > 0):
            raise ConfigError(f"{name}={raw!r} is invalid: expected an integer > 0")
    for name in ("OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION"):
        raw = _env(environ, name).lower()
        if raw and raw not in ("gzip", "none", "deflate"):
            raise ConfigError(f"{name}={raw!r} is invalid: expected gzip, deflate or none")
    for name in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"):
        raw = _env(environ, name)
        if raw and raw not in PROTOCOLS:
            raise ConfigError(f"{name}={raw!r} is invalid: expected grpc, http/protobuf or http/json")
    for name in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_LOGS_HEADERS"):
        raw = _env(environ, name)
        for pair in filter(None, (p.strip() for p in raw.split(","))):
            if "=" not in pair or not pair.split("=", 1)[0].strip():
                raise ConfigError(f"{name} has an invalid entry {pair!r}: expected key=value pairs")
    parse_resource_attributes(_env(environ, ENV_RESOURCE_ATTRIBUTES))
    for name in _FILE_VARS:
        raw = _env(environ, name)
        if raw and not os.path.isfile(raw):
            raise ConfigError(f"{name}={raw!r} is invalid: no such file")
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"):
        raw = _env(environ, name)
        if raw and "://" not in raw:
            raise ConfigError(
                f"{name}={raw!r} is invalid: expected a URL such as {DEFAULT_OTLP_GRPC_ENDPOINT}"
            )
        if raw:
            check_endpoint(name, raw)


def resolve_export(
    config: HostConfig,
    environ: Mapping[str, str] | None = None,
    *,
    endpoint: str | None = None,
    protocol: str | None = None,
) -> ExportSettings:
    """Pick the exporter: arguments, then OTEL_* variables, then the embedded file sink."""
    env = os.environ if environ is None else environ
    settings = _resolve_export(config, env, endpoint, protocol)
    config_file = _env(env, "OTEL_CONFIG_FILE")
    if config_file:
        # Declarative configuration is still experimental in Python (opentelemetry-configuration
        # 0.x); reading half of it would be worse than saying plainly that none of it is read.
        note = (
            f"OTEL_CONFIG_FILE={config_file} is ignored: the bridge does not read declarative "
            "configuration; it uses the OTEL_* variables and OTEL_PLUGIN_LOGS_* settings shown here "
            "(an SDK configured from that file would ignore those)"
        )
        settings = dataclasses.replace(settings, notes=(*settings.notes, note))
    return settings


def _resolve_export(
    config: HostConfig, env: Mapping[str, str], endpoint: str | None, protocol: str | None
) -> ExportSettings:
    validate_standard_env(env)
    if _env(env, "OTEL_SDK_DISABLED") and parse_bool(_env(env, "OTEL_SDK_DISABLED")):
        return ExportSettings(
            "none", sdk_disabled=True, notes=("OTEL_SDK_DISABLED=true: nothing is exported",)
        )
    if protocol:
        chosen_protocol, protocol_source = protocol, "argument"
    elif _env(env, "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"):
        chosen_protocol, protocol_source = (
            _env(env, "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"),
            "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
        )
    elif _env(env, "OTEL_EXPORTER_OTLP_PROTOCOL"):
        chosen_protocol, protocol_source = (
            _env(env, "OTEL_EXPORTER_OTLP_PROTOCOL"),
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        )
    else:
        chosen_protocol, protocol_source = "grpc", "default"
    if chosen_protocol not in PROTOCOLS:
        raise ConfigError(
            f"protocol {chosen_protocol!r} is invalid: expected grpc, http/protobuf or http/json"
        )
    if endpoint:
        check_endpoint("the OTLP endpoint argument", endpoint)
        url, source = endpoint, "argument"
    elif _env(env, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"):
        url, source = _env(env, "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"), "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"
    elif _env(env, "OTEL_EXPORTER_OTLP_ENDPOINT"):
        base = _env(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
        url = base if chosen_protocol == "grpc" else base.rstrip("/") + "/v1/logs"
        source = "OTEL_EXPORTER_OTLP_ENDPOINT"
    else:
        url = DEFAULT_OTLP_GRPC_ENDPOINT if chosen_protocol == "grpc" else "http://localhost:4318/v1/logs"
        source = "default"
    exporter = config.exporter or ("otlp" if source != "default" else "file")
    if exporter == "file":
        path = os.path.join(config.file_dir, "plugin-logs.otlp.jsonl")
        return ExportSettings("file", file_path=path)
    if exporter in ("console", "none", "otlp_json_file"):
        return ExportSettings(exporter)
    return ExportSettings(
        "otlp",
        protocol=chosen_protocol,
        protocol_source=protocol_source,
        endpoint=url,
        endpoint_source=source,
    )


def attribute_limits(environ: Mapping[str, str] | None = None) -> tuple[int, int | None]:
    """(max attributes per record, max value length) from the OTel attribute-limit variables."""
    env = os.environ if environ is None else environ
    count = (
        _env(env, "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT") or _env(env, "OTEL_ATTRIBUTE_COUNT_LIMIT") or "128"
    )
    length = _env(env, "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT") or _env(
        env, "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"
    )
    return int(count), (int(length) if length else None)


def build_sink(settings: ExportSettings, config: HostConfig) -> Sink:
    """The sink the settings name, built now (an OTLP sink opens no connection yet)."""
    timeout_seconds = config.export_timeout_millis / 1000.0
    if settings.exporter == "otlp":
        endpoint = settings.endpoint if settings.endpoint_source == "argument" else None
        timeout = timeout_seconds if _explicit_timeout() is None else None
        if settings.protocol == "grpc":
            return OtlpGrpcSink(endpoint, timeout)
        return OtlpHttpSink(endpoint, timeout, json_encoding=settings.protocol == "http/json")
    if settings.exporter == "file":
        return FileSink(settings.file_path, config.file_max_bytes, config.file_backup_count)
    if settings.exporter == "otlp_json_file":
        return StdoutJsonSink()
    if settings.exporter == "console":
        from opentelemetry.sdk._logs.export import ConsoleLogRecordExporter

        # The exporter's default stream is bound when the SDK is imported; pass today's stdout.
        return SdkExporterSink(ConsoleLogRecordExporter(out=sys.stdout), "console (stdout)")
    return NullSink()


def _explicit_timeout() -> str | None:
    return os.environ.get("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT") or os.environ.get("OTEL_EXPORTER_OTLP_TIMEOUT")
