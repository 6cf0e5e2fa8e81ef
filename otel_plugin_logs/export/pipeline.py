"""Export of plugin records: the standard OTEL_* configuration, the sinks, and the queue.

The queue in front of the exporter is ours, not the SDK's ``BatchLogRecordProcessor``: it is
bounded by count *and* bytes, counts every record it cannot keep, and keeps a failed batch
(retrying with backoff) instead of dropping it after the exporter's ~10 s of retries, so a
collector outage costs waiting, not records. Each record leaves the queue exactly once, as
exported or as dropped with a reason, and the host acknowledges it to its runner only then.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from otel_plugin_logs.config.resource import ENV_RESOURCE_ATTRIBUTES, parse_resource_attributes
from otel_plugin_logs.config.settings import ConfigError, HostConfig, check_endpoint, parse_bool
from otel_plugin_logs.conventions import DEFAULT_OTLP_GRPC_ENDPOINT, RESOURCE_PLUGIN_NAME
from otel_plugin_logs.export.batching import encoded_bytes, fit_record, refused_as_too_large, resource_bytes
from otel_plugin_logs.export.otlp import Entry, ResourceInfo, encode_json_line, encode_request
from otel_plugin_logs.export.sdk_private import JSON_CONTENT_TYPE, GrpcBytesExporter, HttpBytesExporter
from otel_plugin_logs.export.sdk_records import SdkRecordBuilder

_log = logging.getLogger("otel_plugin_logs.export")

# Drop reasons of the host's export stage.
DROP_EXPORT_QUEUE_FULL: Final = "export_queue_full"
DROP_EXPORT_REJECTED: Final = "export_rejected"
DROP_EXPORT_FAILED: Final = "export_failed"
DROP_SHUTDOWN: Final = "shutdown_unexported"

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
PROTOCOLS: Final = ("grpc", "http/protobuf", "http/json")
# A partial batch goes out once the queue has not grown for this long (or the delay passed).
_IDLE_SLICE_SECONDS: Final = 0.025


# --- configuration of the standard variables ---------------------------------------------


@dataclass(frozen=True)
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


# --- sinks --------------------------------------------------------------------------------


Item = tuple[ResourceInfo, Entry, Any, int]  # resource, record, settlement ticket, size in bytes


@dataclass
class Outcome:
    """The result of one export attempt."""

    ok: bool
    retryable: bool = False
    error: str = ""
    rejected: int = 0  # records a collector refused in a partial success


class Sink(Protocol):
    """Where a batch of records goes. ``export`` must not raise."""

    description: str

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome: ...

    def shutdown(self) -> None: ...


def _pairs(items: Sequence[Item]) -> list[tuple[ResourceInfo, Entry]]:
    return [(item[0], item[1]) for item in items]


class OtlpGrpcSink:
    """OTLP/gRPC through the SDK's exporter, fed the bytes ``encode_request`` wrote."""

    def __init__(self, endpoint: str | None = None, timeout_seconds: float | None = None) -> None:
        self._exporter = GrpcBytesExporter(endpoint, timeout_seconds)
        self.description = f"OTLP/gRPC {self._exporter.endpoint}".strip()

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome:
        try:
            data = encode_request(_pairs(items))
        except Exception as error:
            return Outcome(False, error=f"encoding failed: {error}")
        try:
            result = self._exporter.send(data, timeout_seconds)
        except Exception as error:
            return Outcome(False, retryable=True, error=f"{type(error).__name__}: {error}")
        if result.ok:
            return Outcome(True, rejected=result.rejected_records)
        code = result.status_code
        return Outcome(
            False,
            retryable=(code in _GRPC_RETRYABLE or not code),
            error=f"{code or 'error'}: {result.detail}",
        )

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
        content_type = JSON_CONTENT_TYPE if json_encoding else ""
        self._exporter = HttpBytesExporter(endpoint, timeout_seconds, content_type)
        self.description = f"OTLP/HTTP{'/JSON' if json_encoding else ''} {self._exporter.endpoint}"

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome:
        try:
            pairs = _pairs(items)
            data = encode_json_line(pairs).encode("utf-8") if self._json else encode_request(pairs)
        except Exception as error:
            return Outcome(False, error=f"encoding failed: {error}")
        try:
            result = self._exporter.send(data, timeout_seconds)
        except Exception as error:
            return Outcome(False, retryable=True, error=f"{type(error).__name__}: {error}")
        if result.ok:
            return Outcome(True)
        status = result.status_code
        retryable = status is None or status in _HTTP_RETRYABLE
        return Outcome(False, retryable=retryable, error=f"HTTP {status}: {result.detail}")

    def shutdown(self) -> None:
        self._exporter.shutdown()


class SdkExporterSink:
    """Any SDK ``LogRecordExporter`` (console, in-memory, a user's own), via SDK records."""

    def __init__(self, exporter: Any, description: str = "") -> None:
        self._exporter = exporter
        self._builder = SdkRecordBuilder()
        self.description = description or type(exporter).__name__

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome:
        try:
            records = self._builder.build(_pairs(items))
            result = self._exporter.export(records)
        except Exception as error:
            return Outcome(False, retryable=True, error=f"{type(error).__name__}: {error}")
        ok = getattr(result, "name", "SUCCESS") == "SUCCESS"
        return Outcome(ok, retryable=not ok, error="" if ok else "the exporter returned FAILURE")

    def shutdown(self) -> None:
        try:
            self._exporter.shutdown()
        except Exception as error:
            _log.debug("exporter shutdown failed: %s", error)


class FileSink:
    """The embedded default: OTLP/JSON lines, one request per line, size-rotated.

    Private by default (directory 0700 when it creates it, file 0600: records can carry
    secrets). Each request is appended whole or not at all: a failed write (ENOSPC, EFBIG) is
    cut back to where it began, so the retry does not follow half a line.
    """

    def __init__(self, path: str, max_bytes: int, backup_count: int) -> None:
        self.path = path
        self._max_bytes = max_bytes
        self._backup_count = backup_count
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        self._fd = self._open()
        size = os.fstat(self._fd).st_size
        if size > 0:
            with open(path, "rb") as existing:  # the sink's own descriptor is write-only
                existing.seek(size - 1)
                if existing.read(1) != b"\n":
                    _write_all(self._fd, b"\n")  # a host killed mid-write left half a line
        self.description = f"file {path}"

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o600)  # an older file may have been created 0644
        return fd

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome:
        try:
            line = (encode_json_line(_pairs(items)) + "\n").encode("utf-8", "surrogatepass")
        except Exception as error:
            return Outcome(False, error=f"encoding failed: {error}")
        start = -1
        try:
            size = os.fstat(self._fd).st_size
            if size + len(line) > self._max_bytes and size > 0:
                self._rotate()
                size = 0
            start = size
            _write_all(self._fd, line)
        except OSError as error:
            if start >= 0:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, start)  # nothing of this request stays in the file
            return Outcome(False, retryable=True, error=f"{type(error).__name__}: {error}")
        return Outcome(True)

    def _rotate(self) -> None:
        os.close(self._fd)
        if self._backup_count > 0:
            for index in range(self._backup_count - 1, 0, -1):
                source = f"{self.path}.{index}"
                if os.path.exists(source):
                    os.replace(source, f"{self.path}.{index + 1}")
            os.replace(self.path, f"{self.path}.1")
        else:
            os.remove(self.path)
        self._fd = self._open()

    def shutdown(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def check_file_dir(directory: str, variable: str) -> None:
    """Fail at start-up, naming the variable, when the file sink could not write into ``directory``."""
    probe = os.path.abspath(directory)
    while not os.path.lexists(probe):  # the nearest existing ancestor is where it would be created
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise ConfigError(f"{variable}={directory!r} is unusable: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{variable}={directory!r} is unusable: {probe} is not writable by this user")


class StdoutJsonSink:
    """``OTEL_LOGS_EXPORTER=otlp_json_file``: OTLP/JSON lines on stdout, as that Python exporter
    writes by default (one export request per line, the file sink's format)."""

    description = "OTLP/JSON lines on stdout"

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome:
        try:
            line = encode_json_line(_pairs(items)) + "\n"
        except Exception as error:
            return Outcome(False, error=f"encoding failed: {error}")
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except (OSError, ValueError) as error:  # ValueError: stdout closed
            return Outcome(False, retryable=True, error=f"{type(error).__name__}: {error}")
        return Outcome(True)

    def shutdown(self) -> None:
        return None


class NullSink:
    """OTEL_LOGS_EXPORTER=none or OTEL_SDK_DISABLED: records are replayed but not exported."""

    description = "none"

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome:
        return Outcome(True)

    def shutdown(self) -> None:
        return None


def build_sink(settings: ExportSettings, config: HostConfig) -> Sink:
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


# --- the queue and its worker ---------------------------------------------------------------


Settle = Callable[[Sequence[Item], str | None], None]  # items, drop reason (None: exported)
_MIN_REQUEST_BYTES: Final = 16 * 1024
_MAX_SHRINKS: Final = 3  # a single record refused as too large is cut down this often, then dropped


class _Share:
    """What one plugin holds in the export queue (queued or in flight)."""

    __slots__ = ("nbytes", "records")

    def __init__(self) -> None:
        self.records = 0
        self.nbytes = 0


def _owner(item: Item) -> str:
    return str(item[0].attributes.get(RESOURCE_PLUGIN_NAME, ""))


class ExportPipeline:
    """A bounded queue (records and bytes) drained by one worker thread into a ``Sink``.

    ``settle(items, reason)`` is called exactly once per record: reason None when exported,
    else the drop reason. The worker wakes at the batch threshold or after the schedule delay.
    """

    def __init__(
        self,
        sink: Sink,
        config: HostConfig,
        settle: Settle,
        before_export: Callable[[Sequence[Item]], None] | None = None,
    ) -> None:
        self.sink = sink
        self._settle = settle
        self._before_export = before_export
        self._max_records = config.export_max_queue_records
        self._max_bytes = config.export_max_queue_bytes
        self._batch_records = config.export_max_batch_records
        self._batch_bytes = config.export_max_batch_bytes
        self._delay_seconds = config.export_schedule_delay_millis / 1000.0
        self._timeout_seconds = config.export_timeout_millis / 1000.0
        self._max_backoff_seconds = config.export_retry_max_backoff_millis / 1000.0
        self._max_elapsed_seconds = config.export_retry_max_elapsed_millis / 1000.0
        self._queue: deque[Item] = deque()
        # A plugin past its share cannot fill the last share of the queue: others keep that room.
        self._share_records = max(1, self._max_records * config.export_plugin_share_percent // 100)
        self._share_bytes = max(1, self._max_bytes * config.export_plugin_share_percent // 100)
        self._shares: dict[str, _Share] = {}
        self._request_limit = self._batch_bytes  # lowered when the collector refuses a request as too large
        self._bytes = 0  # queued plus in flight
        self._in_flight = 0
        self._cond = threading.Condition()
        self._flush_requested = 0
        self._flushed = 0
        self._stop_deadline: float | None = None
        self.last_error = ""
        self.failing_since: float | None = None
        self.exported = 0
        self.attempts_failed = 0
        self._shutdown_dropped = 0  # records the worker gave up at the shutdown deadline
        self._thread = threading.Thread(target=self._run, name="otel-plugin-logs-export", daemon=True)
        self._thread.start()

    def offer(self, items: list[Item]) -> list[Item]:
        """Enqueue; returns the items that did not fit (the caller counts them as dropped)."""
        with self._cond:
            if self._stop_deadline is not None:
                return items
            room = self._max_records - len(self._queue) - self._in_flight
            accepted = 0
            for item in items:
                owner = _owner(item)
                share = self._shares.get(owner)
                if share is None:
                    share = self._shares[owner] = _Share()
                if room <= 0 or self._bytes + item[3] > self._max_bytes:
                    break
                over_share = (
                    share.records >= self._share_records or share.nbytes + item[3] > self._share_bytes
                )
                # Beyond its share a plugin may use the queue only up to one share short of full:
                # that last share stays for the plugins below theirs.
                if over_share and (
                    room <= self._share_records or self._bytes + item[3] > self._max_bytes - self._share_bytes
                ):
                    break
                self._queue.append(item)
                self._bytes += item[3]
                share.records += 1
                share.nbytes += item[3]
                room -= 1
                accepted += 1
            if len(self._queue) >= self._batch_records:
                self._cond.notify()
        return items[accepted:]

    def depth(self) -> tuple[int, int]:
        """(records, bytes) waiting or in flight."""
        with self._cond:
            return len(self._queue) + self._in_flight, self._bytes

    def force_flush(self, timeout_seconds: float) -> bool:
        """Export everything queued now; True if done within the timeout."""
        deadline = time.monotonic() + timeout_seconds
        with self._cond:
            self._flush_requested += 1
            ticket = self._flush_requested
            self._cond.notify_all()
            while self._flushed < ticket:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._cond.wait(min(remaining, 0.1))
        return True

    def shutdown(self, deadline: float) -> int:
        """Export what is queued until ``deadline`` (monotonic), then count the rest. Returns that count."""
        with self._cond:
            if self._stop_deadline is None:
                self._stop_deadline = deadline
            self._cond.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()) + 0.2)
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
            self._bytes -= sum(item[3] for item in left)
            self._release_shares(left)
            # A batch still in the sink's hands past the deadline was not exported in time
            # (it is settled, exported or dropped, when the sink returns).
            late = self._in_flight if self._thread.is_alive() else 0
            given_up = self._shutdown_dropped
        if left:
            self._settle(left, DROP_SHUTDOWN)
        self.sink.shutdown()
        return len(left) + given_up + late

    def _release_shares(self, items: Sequence[Item]) -> None:
        """Items left the queue for good (lock held)."""
        for item in items:
            share = self._shares.get(_owner(item))
            if share is not None:
                share.records -= 1
                share.nbytes -= item[3]
                if share.records <= 0:
                    del self._shares[_owner(item)]

    def _take(self) -> list[Item]:
        """The next request: up to the batch's records and its encoded bytes (lock held)."""
        batch: list[Item] = []
        size = 0
        resources: set[ResourceInfo] = set()
        queue = self._queue
        limit = self._request_limit
        while queue and len(batch) < self._batch_records:
            resource, entry, ticket, memory = queue[0]
            cost = encoded_bytes(entry) + (0 if resource in resources else resource_bytes(resource))
            if batch and size + cost > limit:
                break
            queue.popleft()
            if cost > limit:  # alone larger than a request: cut down, never sent whole
                entry = fit_record(entry, limit - resource_bytes(resource))
            batch.append((resource, entry, ticket, memory))
            resources.add(resource)
            size += cost
        self._in_flight = len(batch)
        return batch

    def _shrink(self, batch: list[Item], shrinks: int) -> list[Item]:
        """A request refused as too large: retry its first half now, the rest after it.

        A single record is cut down to a quarter, at most ``_MAX_SHRINKS`` times, then dropped.
        """
        refused = sum(encoded_bytes(item[1]) for item in batch)
        limit = max(_MIN_REQUEST_BYTES, refused // 2)
        if limit < self._request_limit:
            self._request_limit = limit
            _log.warning(
                "the exporter refused a request of about %d bytes as too large; requests are cut at "
                "%d bytes from now on",
                refused,
                limit,
            )
        if len(batch) > 1:
            keep = batch[: len(batch) // 2]
            back = batch[len(batch) // 2 :]
            with self._cond:
                self._queue.extendleft(reversed(back))
                self._in_flight -= len(back)
            return keep
        resource, entry, ticket, memory = batch[0]
        if shrinks < _MAX_SHRINKS:
            return [(resource, fit_record(entry, encoded_bytes(entry) // 4), ticket, memory)]
        self._drop(batch, DROP_EXPORT_REJECTED)
        return []

    def _run(self) -> None:
        batch: list[Item] = []
        first_failure = 0.0
        backoff = 0.0
        shrinks = 0
        while True:
            with self._cond:
                if not batch:
                    flush_target = self._flush_requested
                    wait_until = time.monotonic() + self._delay_seconds
                    while (
                        len(self._queue) < self._batch_records
                        and self._stop_deadline is None
                        and self._flushed >= self._flush_requested
                    ):
                        remaining = wait_until - time.monotonic()
                        if remaining <= 0:
                            break
                        before = len(self._queue)
                        self._cond.wait(min(remaining, _IDLE_SLICE_SECONDS))
                        if before and len(self._queue) == before:
                            break  # nothing arrived for a slice: the burst is over, send its tail
                    flush_target = self._flush_requested
                    batch = self._take()
                    shrinks = 0
                    if not batch:
                        self._flushed = flush_target
                        self._cond.notify_all()
                        if self._stop_deadline is not None:
                            return
                        continue
                stop = self._stop_deadline
            if stop is not None and time.monotonic() >= stop:
                with self._cond:
                    self._shutdown_dropped += len(batch)
                self._drop(batch, DROP_SHUTDOWN)
                batch = []
                continue
            timeout = self._timeout_seconds if stop is None else max(0.05, stop - time.monotonic())
            try:
                if self._before_export is not None:
                    self._before_export(batch)
                outcome = self.sink.export(batch, timeout)
            except Exception as error:  # a sink must not raise; if one does, retry
                outcome = Outcome(False, retryable=True, error=f"{type(error).__name__}: {error}")
            if outcome.ok:
                self.failing_since = None
                backoff = 0.0
                self.exported += len(batch) - outcome.rejected
                if outcome.rejected:
                    self._drop(batch[: outcome.rejected], DROP_EXPORT_REJECTED)
                    self._done(batch[outcome.rejected :], None)
                else:
                    self._done(batch, None)
                batch = []
                continue
            self.attempts_failed += 1
            self.last_error = outcome.error
            if refused_as_too_large(outcome.error):
                single = len(batch) == 1
                batch = self._shrink(batch, shrinks)
                shrinks += 1 if single else 0
                continue
            now = time.monotonic()
            if self.failing_since is None:
                self.failing_since = now
                first_failure = now
            if not outcome.retryable:
                self._drop(batch, DROP_EXPORT_REJECTED)
                batch = []
                continue
            if self._max_elapsed_seconds and now - first_failure >= self._max_elapsed_seconds:
                self._drop(batch, DROP_EXPORT_FAILED)
                batch = []
                first_failure = now
                continue
            backoff = min(self._max_backoff_seconds, max(0.1, backoff * 2))
            sleep = backoff * random.uniform(0.8, 1.2)
            with self._cond:
                if self._stop_deadline is not None:
                    sleep = min(sleep, max(0.0, self._stop_deadline - time.monotonic()))
                self._cond.wait(sleep)

    def _done(self, batch: list[Item], reason: str | None) -> None:
        size = sum(item[3] for item in batch)
        with self._cond:
            self._bytes -= size
            self._release_shares(batch)
            self._in_flight = max(0, self._in_flight - len(batch))
        try:
            self._settle(batch, reason)
        except Exception:  # a bug in the accounting must not stop the exports
            _log.exception("settling %d record(s) failed", len(batch))

    def _drop(self, batch: list[Item], reason: str) -> None:
        self._done(batch, reason)
