"""The ``Sink`` interface a host's records are exported through, its ``Outcome``, and simple sinks.

A user's own destination is a ``Sink``: pass it as ``HostLogBridge(sink=...)``. Its ``export``
gets a batch of ``Item``s (each a record with its plugin's resource) and says what became of it
with an ``Outcome``; the bridge's queue retries an ``ERRORED`` batch with backoff, drops a
``REJECTED`` one (counted), and settles a ``DELIVERED`` one. ``otel_plugin_logs.testing.MemorySink``
is one to test with.
"""

from __future__ import annotations

import enum
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from otel_plugin_logs.export.items import Item, resource_entry_pairs
from otel_plugin_logs.export.otlp import encode_json_line
from otel_plugin_logs.export.sdk_records import SdkRecordBuilder

_log = logging.getLogger("otel_plugin_logs.export")


class ExportStatus(enum.Enum):
    """What became of a batch (Vector's ``BatchStatus``): the queue retries only ``ERRORED``."""

    DELIVERED = "delivered"  # the destination has it (minus ``rejected_records`` it refused)
    ERRORED = "errored"  # it failed in a way that may pass: an outage, a timeout, a full disk
    REJECTED = "rejected"  # refused for good: sending it again would fail again


@dataclass(frozen=True, slots=True)
class Outcome:
    """One export attempt's result: its status, why it failed, and records refused on delivery."""

    status: ExportStatus
    error: str = ""
    rejected_records: int = 0  # a partial success: the first this many of the batch were refused

    @classmethod
    def delivered(cls, rejected_records: int = 0) -> Outcome:
        return cls(ExportStatus.DELIVERED, rejected_records=rejected_records)

    @classmethod
    def errored(cls, error: str) -> Outcome:
        return cls(ExportStatus.ERRORED, error)

    @classmethod
    def rejected(cls, error: str) -> Outcome:
        return cls(ExportStatus.REJECTED, error)

    @property
    def ok(self) -> bool:
        """The batch was delivered."""
        return self.status is ExportStatus.DELIVERED

    @property
    def retryable(self) -> bool:
        """The batch failed and may succeed if sent again."""
        return self.status is ExportStatus.ERRORED


class Sink(Protocol):
    """Where a batch of records goes. ``export`` must not raise, and must return by ``timeout_seconds``."""

    description: str  # in words for a person: "OTLP/gRPC http://collector:4317"

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome: ...

    def shutdown(self) -> None: ...


class SdkExporterSink:
    """Any SDK ``LogRecordExporter`` (console, in-memory, a user's own), via SDK records."""

    def __init__(self, exporter: Any, description: str = "") -> None:
        self._exporter = exporter
        self._builder = SdkRecordBuilder()
        self.description = description or type(exporter).__name__

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome:
        try:
            records = self._builder.build(resource_entry_pairs(items))
            result = self._exporter.export(records)
        except Exception as error:
            return Outcome.errored(f"{type(error).__name__}: {error}")
        if getattr(result, "name", "SUCCESS") == "SUCCESS":
            return Outcome.delivered()
        return Outcome.errored("the exporter returned FAILURE")

    def shutdown(self) -> None:
        try:
            self._exporter.shutdown()
        except Exception as error:
            _log.debug("exporter shutdown failed: %s", error)


class StdoutJsonSink:
    """``OTEL_LOGS_EXPORTER=otlp_json_file``: OTLP/JSON lines on stdout, as that Python exporter
    writes by default (one export request per line, the file sink's format)."""

    description = "OTLP/JSON lines on stdout"

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome:
        try:
            line = encode_json_line(resource_entry_pairs(items)) + "\n"
        except Exception as error:
            return Outcome.rejected(f"encoding failed: {error}")
        try:
            sys.stdout.write(line)
            sys.stdout.flush()
        except (OSError, ValueError) as error:  # ValueError: stdout closed
            return Outcome.errored(f"{type(error).__name__}: {error}")
        return Outcome.delivered()

    def shutdown(self) -> None:
        return None


class NullSink:
    """OTEL_LOGS_EXPORTER=none or OTEL_SDK_DISABLED: records are replayed but not exported."""

    description = "none"

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome:
        return Outcome.delivered()

    def shutdown(self) -> None:
        return None
