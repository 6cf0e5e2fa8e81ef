"""Test helpers: capturing handler, in-memory sink, plugin scripts, a real collector."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from otel_plugin_logs._export import Item, Outcome
from otel_plugin_logs._otlp import Entry, ResourceInfo

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


class MemorySink:
    """A Sink that keeps what it is given; ``fail`` makes exports fail (retryably)."""

    description = "memory"

    def __init__(self) -> None:
        self.items: list[tuple[ResourceInfo, Entry]] = []
        self.fail = False
        self.permanent = False
        self.attempts = 0
        self._lock = threading.Lock()

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome:
        with self._lock:
            self.attempts += 1
            if self.fail:
                return Outcome(False, retryable=not self.permanent, error="memory sink told to fail")
            self.items.extend((item[0], item[1]) for item in items)
        return Outcome(True)

    def shutdown(self) -> None:
        return None

    def entries(self, plugin: str | None = None, *, records_only: bool = True) -> list[Entry]:
        with self._lock:
            return [
                e
                for r, e in self.items
                if (plugin is None or r.attributes.get("plugin.name") == plugin)
                and (not records_only or e.seq > 0)
            ]


def write_plugin(directory: Path, name: str, code: str) -> Path:
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(code))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def rotel_binary() -> str:
    import rotel

    path = Path(rotel.__file__).parent / "rotel-agent"
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return str(path)


class Collector:
    """A real OTLP collector (rotel) on free loopback ports, printing every record it gets."""

    def __init__(
        self, directory: Path, *, grpc_port: int | None = None, http_port: int | None = None
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.log_file = directory / "rotel.log"
        self.pid_file = directory / "rotel.pid"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1/logs"

    def start(self) -> Collector:
        argv = [
            rotel_binary(),
            "start",
            "--exporter",
            "blackhole",
            "--debug-log",
            "logs",
            "--debug-log-verbosity",
            "detailed",
            "--otlp-grpc-endpoint",
            f"127.0.0.1:{self.grpc_port}",
            "--otlp-http-endpoint",
            f"127.0.0.1:{self.http_port}",
            "--log-file",
            str(self.log_file),
            "--pid-file",
            str(self.pid_file),
        ]
        self.stdout = open(self.directory / "rotel.stdout", "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            argv, stdout=self.stdout, stderr=subprocess.STDOUT, cwd=self.directory
        )
        if not wait_until(lambda: _port_open(self.grpc_port) and _port_open(self.http_port), 20):
            self.stop()
            raise RuntimeError(f"rotel did not start: {self.output()[-2000:]}")
        return self

    def output(self) -> str:
        text = ""
        for path in (self.directory / "rotel.stdout", self.log_file):
            if path.exists():
                text += path.read_text(errors="replace")
        return text

    def stop(self) -> None:
        pid = None
        if self.pid_file.exists():
            try:
                pid = int(self.pid_file.read_text().strip())
            except ValueError:
                pid = None
        for target in {pid, self.process.pid if self.process else None} - {None}:
            try:
                os.kill(target, signal.SIGTERM)  # type: ignore[arg-type]
            except ProcessLookupError:
                pass
        if self.process is not None:
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if hasattr(self, "stdout"):
            self.stdout.close()

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


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
