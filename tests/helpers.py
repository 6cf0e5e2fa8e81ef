"""Test helpers: capturing handler, plugin scripts, a real collector (and the public MemorySink)."""

from __future__ import annotations

import logging
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

from benchmarks._common import Rotel
from otel_plugin_logs.testing import MemorySink

__all__ = [
    "PYTHON",
    "CaptureHandler",
    "Collector",
    "MemorySink",
    "parse_rotel_logs",
    "wait_until",
    "write_plugin",
]

PYTHON = sys.executable


class CaptureHandler(logging.Handler):
    """Keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__(1)
        self.records: list[logging.LogRecord] = []
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self._changed:
            self.records.append(record)
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[list[logging.LogRecord]], bool], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.records):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.1))
        return True

    def plugin_records(self, plugin: str | None = None) -> list[logging.LogRecord]:
        return [
            r
            for r in self.records
            if getattr(r, "otel", None) is not None
            and r.otel.logger_name != "stderr"
            and (plugin is None or r.otel.plugin == plugin)
        ]


def write_plugin(directory: Path, name: str, code: str) -> Path:
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(code))
    return path


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


class Collector(Rotel):
    """A real OTLP collector (rotel) on free loopback ports, printing every record it gets."""

    def __init__(
        self,
        directory: Path,
        *,
        grpc_port: int | None = None,
        http_port: int | None = None,
        debug_log: Sequence[str] = ("logs",),
    ) -> None:
        super().__init__(
            directory, grpc_port=grpc_port, http_port=http_port, debug_log=debug_log, receive_traces=True
        )


_FIELD_STARTS = (
    "ObservedTimestamp:",
    "Timestamp:",
    "SeverityText:",
    "SeverityNumber:",
    "Body:",
    "Attributes:",
    "    Trace ID",
    "    Span ID",
    "Flags:",
    "LogRecord #",
    "ScopeLogs #",
    "ResourceLog #",
    "Resource attributes:",
    "InstrumentationScope",
    "Resource SchemaURL",
    "ScopeLogs SchemaURL",
    "     -> ",
)


def parse_rotel_logs(text: str) -> list[dict[str, Any]]:
    """Records from rotel's `--debug-log logs --debug-log-verbosity detailed` output."""
    lines = text.splitlines()
    records: list[dict[str, Any]] = []
    resource: dict[str, Any] = {}
    scope = ""
    current: dict[str, Any] | None = None
    section = ""
    index = 0

    def take_value(first: str) -> str:
        nonlocal index
        value = first
        while (
            index + 1 < len(lines)
            and not lines[index + 1].startswith(_FIELD_STARTS)
            and "Starting Rotel" not in lines[index + 1]
        ):
            index += 1
            value += "\n" + lines[index]
        return value

    def typed(raw: str) -> Any:
        kind, _, rest = raw.partition("(")
        rest = rest[:-1] if rest.endswith(")") else rest
        if kind == "Int":
            return int(rest)
        if kind == "Double":
            return float(rest)
        if kind == "Bool":
            return rest == "true"
        return rest if kind == "Str" else (kind, rest)

    while index < len(lines):
        line = lines[index]
        if line.startswith("ResourceLog #"):
            resource, section = {}, "resource"
        elif line.startswith("Resource attributes:"):
            section = "resource"
        elif line.startswith("InstrumentationScope"):
            scope = (
                line[len("InstrumentationScope") :].strip().split(" ")[0]
                if line.strip() != "InstrumentationScope"
                else ""
            )
        elif line.startswith("LogRecord #"):
            current = {"resource": resource, "scope": scope, "attributes": {}}
            records.append(current)
            section = "record"
        elif line.startswith("     -> "):
            key, _, raw = line[len("     -> ") :].partition(": ")
            value = typed(take_value(raw))
            if section == "resource":
                resource[key] = value
            elif current is not None and section == "attributes":
                current["attributes"][key] = value
        elif current is not None:
            if line.startswith("ObservedTimestamp:"):
                current["observed"] = int(line.split(":", 1)[1])
            elif line.startswith("Timestamp:"):
                current["time"] = int(line.split(":", 1)[1])
            elif line.startswith("SeverityText:"):
                current["severity_text"] = line.split(":", 1)[1].strip()
            elif line.startswith("SeverityNumber:"):
                current["severity_number"] = int(line.rsplit("(", 1)[1].rstrip(")"))
            elif line.startswith("Body:"):
                current["body"] = typed(take_value(line.split(": ", 1)[1]) if ": " in line else "")
            elif line.startswith("Attributes:"):
                section = "attributes"
            elif line.startswith("    Trace ID"):
                current["trace_id"] = line.split(":", 1)[1].strip()
            elif line.startswith("    Span ID"):
                current["span_id"] = line.split(":", 1)[1].strip()
            elif line.startswith("Flags:"):
                current["flags"] = int(line.split(":", 1)[1])
        index += 1
    return records


def process_gone(pid: int) -> bool:
    """The process has ended (a zombie not yet reaped counts as ended)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_pid(pid: int) -> None:
    """SIGKILL ``pid`` if it still runs (fixtures' clean-up)."""
    try:
        psutil.Process(pid).kill()
    except psutil.Error:
        pass
