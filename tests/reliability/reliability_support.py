"""Helpers of the reliability suite: raw runner connections, wire records, sink readers, invariants."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import CaptureHandler, MemorySink, wait_until

from otel_plugin_logs import HostLogBridge
from otel_plugin_logs.export.items import Item
from otel_plugin_logs.export.sinks import Outcome
from otel_plugin_logs.host.stats import PluginStats
from otel_plugin_logs.wire.framing import FrameDecoder, encode_message
from otel_plugin_logs.wire.messages import ACK, BATCH, BYE, HELLO, PROTOCOL_VERSION

HERE = Path(__file__).resolve().parent


def wire_record(
    seq: int,
    body: Any = "raw record",
    *,
    time_ns: Any = None,
    observed_ns: Any = None,
    severity_number: Any = 9,
    severity_text: Any = "INFO",
    logger: Any = "raw",
    attributes: Any = None,
    trace_id: Any = None,
    span_id: Any = None,
    flags: Any = 0,
    exception: Any = None,
    levelno: Any = 20,
) -> list[Any]:
    """A record as a runner puts it on the wire (positional, see ``otel_plugin_logs.wire.protocol.Rec``)."""
    now = time.time_ns()
    return [
        seq,
        now if time_ns is None else time_ns,
        now if observed_ns is None else observed_ns,
        severity_number,
        severity_text,
        body,
        logger,
        {} if attributes is None else attributes,
        trace_id,
        span_id,
        flags,
        exception,
        levelno,
    ]


class RawRunner:
    """A hand-written runner: a real Unix-socket connection that sends exactly what a test crafts."""

    def __init__(self, socket_path: str, *, stream: int = 1) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(socket_path)
        self.stream = stream
        self.decoder = FrameDecoder()
        self.inbox: list[dict[str, Any]] = []
        self.closed_by_host = False

    def hello(self, token: str, *, pid: int | None = None, **extra: Any) -> dict[str, Any]:
        """Send a hello and return the host's answer (welcome or reject)."""
        message = {
            "t": HELLO,
            "v": PROTOCOL_VERSION,
            "token": token,
            "pid": os.getpid() if pid is None else pid,
            "stream": self.stream,
            **extra,
        }
        self.send(message)
        answer = self.next_message(10)
        assert answer is not None, "the host did not answer the hello"
        return answer

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(encode_message(message))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def batch(
        self,
        records: Sequence[Any],
        *,
        accepted: int | None = None,
        dropped: dict[str, int] | None = None,
        kind: str = BATCH,
    ) -> None:
        seqs = [r[0] for r in records if isinstance(r, list) and r and isinstance(r[0], int)]
        self.send(
            {
                "t": kind,
                "stream": self.stream,
                "dropped": dropped or {},
                "accepted": accepted if accepted is not None else max(seqs, default=0),
                "records": list(records),
            }
        )

    def bye(self, *, accepted: int, dropped: dict[str, int] | None = None) -> None:
        self.batch([], accepted=accepted, dropped=dropped, kind=BYE)

    def _pump(self, timeout: float) -> bool:
        """Read once; False when the host closed the connection."""
        if self.closed_by_host:
            return False
        self.sock.settimeout(max(0.001, timeout))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        except OSError:
            self.closed_by_host = True
            return False
        if not data:
            self.closed_by_host = True
            return False
        self.inbox.extend(self.decoder.feed(data))
        return True

    def next_message(self, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while not self.inbox:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._pump(remaining):
                break
        return self.inbox.pop(0) if self.inbox else None

    def wait_ack(self, seq: int, timeout: float = 20) -> bool:
        """Wait until the host acknowledged every record up to ``seq``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.next_message(max(0.0, deadline - time.monotonic()))
            if message is None:
                if self.closed_by_host:
                    return False
                continue
            if message.get("t") == ACK and message.get("seq", 0) >= seq:
                return True
        return False

    def wait_closed(self, timeout: float = 10) -> bool:
        """Wait until the host closed the connection (messages read meanwhile stay in the inbox)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._pump(max(0.0, deadline - time.monotonic())):
                return True
        return self.closed_by_host

    def close(self) -> None:
        self.sock.close()


class CountingSink:
    """A Sink that keeps only (plugin, seq, body) of what it exports, so long runs stay small."""

    description = "counting"

    def __init__(self, *, keep: bool = True) -> None:
        self.keep = keep  # False: count only, so a soak's memory does not grow with what was exported
        self.exported = 0
        self.fail = False
        self.delay = 0.0
        self.attempts = 0
        self.notices: list[tuple[str, dict[str, Any]]] = []
        self.seqs: dict[str, Counter[int]] = {}
        self._lock = threading.Lock()

    def export(self, items: Sequence[Item], timeout_seconds: float) -> Outcome:
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.attempts += 1
            if self.fail:
                return Outcome.errored("counting sink told to fail")
            self.exported += len(items)
            if not self.keep:
                return Outcome.delivered()
            for item in items:
                entry = item.entry
                plugin = str(item.resource.attributes.get("plugin.name", ""))
                if entry.seq > 0:
                    self.seqs.setdefault(plugin, Counter())[entry.seq] += 1
                else:
                    self.notices.append((plugin, dict(entry.attributes)))
        return Outcome.delivered()

    def shutdown(self) -> None:
        return None

    def unique(self, plugin: str) -> set[int]:
        with self._lock:
            return set(self.seqs.get(plugin, {}))

    def rows(self, plugin: str) -> int:
        with self._lock:
            return sum(self.seqs.get(plugin, Counter()).values())


def balanced(stats: PluginStats) -> bool:
    """The invariant: every emitted record is exported, discarded, dropped with a reason, or pending."""
    return stats.uncounted == 0


def settled(stats: PluginStats) -> bool:
    """Balanced and nothing pending any more."""
    return stats.uncounted == 0 and stats.pending == 0


def drained(bridge: Any, plugin: str) -> bool:
    """Every connection of ``plugin`` is closed and everything it sent is settled (checked in that order)."""
    return bool(bridge.wait_for_plugin(plugin, 0.05)) and settled(bridge.stats().plugins[plugin])


def describe(stats: PluginStats) -> str:
    return (
        f"emitted={stats.emitted} exported={stats.exported} discarded={stats.discarded} "
        f"dropped={stats.dropped} pending={stats.pending} uncounted={stats.uncounted} "
        f"duplicates={stats.duplicates} received={stats.received}"
    )


def read_sink_file(directory: Path) -> list[dict[str, Any]]:
    """Records of the embedded OTLP/JSON file sink: plugin, scope, body, attributes.

    A host killed while writing can leave a last line without its end: it is skipped (its
    records were not settled, so the runner sends them again to the next host).
    """
    out: list[dict[str, Any]] = []
    for path in sorted(directory.glob("plugin-logs.otlp.jsonl*")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                data = json.loads(line)
            except ValueError:
                continue
            for resource_logs in data.get("resourceLogs", []):
                resource = {
                    kv["key"]: _json_value(kv["value"])
                    for kv in resource_logs.get("resource", {}).get("attributes", [])
                }
                for scope_logs in resource_logs.get("scopeLogs", []):
                    scope = scope_logs.get("scope", {}).get("name", "")
                    for record in scope_logs.get("logRecords", []):
                        out.append(
                            {
                                "plugin": resource.get("plugin.name"),
                                "pid": resource.get("process.pid"),
                                "scope": scope,
                                "body": _json_value(record.get("body", {})),
                                "attributes": {
                                    kv["key"]: _json_value(kv["value"]) for kv in record.get("attributes", [])
                                },
                            }
                        )
    return out


def _json_value(value: dict[str, Any]) -> Any:
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "boolValue" in value:
        return value["boolValue"]
    if "doubleValue" in value:
        return value["doubleValue"]
    return value


def numbered(bodies: Iterable[Any], prefix: str) -> list[int]:
    """The numbers of bodies "<prefix> <n>" (a runner's own counter, independent of the bridge)."""
    out = []
    for body in bodies:
        if isinstance(body, str) and body.startswith(prefix + " "):
            out.append(int(body.split()[1]))
    return out


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.02) -> bool:
    """``helpers.wait_until`` with the longer default these fault cases need."""
    return wait_until(predicate, timeout, interval)


STEADY_RUNNER = """
import json, logging, os, sys, time
from otel_plugin_logs import runner

out_path, prefix, rate, count = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
handler = runner.installed_handler()
log = logging.getLogger("steady")
log.setLevel(logging.INFO)
peak_queued = peak_bytes = 0
start = time.monotonic()
for i in range(count):
    log.info("%s %d", prefix, i)
    if i % 25 == 0:
        s = handler.stats()
        peak_queued = max(peak_queued, s["queued"])
        peak_bytes = max(peak_bytes, s["queued_bytes"] + s["unacked_bytes"])
        if rate > 0:
            ahead = start + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
acked = handler.wait_acked(int(os.environ.get("RUNNER_ACK_WAIT_MILLIS", "30000")))
stats = handler.stats()
complete = handler.shutdown()
tmp = out_path + ".tmp"
with open(tmp, "w") as out:
    json.dump({"acked": acked, "complete": complete, "peak_queued": peak_queued,
               "peak_bytes": peak_bytes, "pid": os.getpid(), **stats}, out)
os.replace(tmp, out_path)
"""


TEXT_FORMAT = "%(levelname)s|%(name)s|%(threadName)s|%(funcName)s|%(filename)s|%(processName)s|%(message)s"

BYSTANDER = """
import logging, time
log = logging.getLogger("bystander")
log.setLevel(logging.INFO)
for i in range(200):
    log.info("bystander %d", i)
    time.sleep(0.003)
"""


@dataclass
class Host:
    bridge: HostLogBridge
    sink: MemorySink
    text: io.StringIO
    everything: CaptureHandler

    def token(self, plugin: str) -> str:
        return self.bridge.register_runner(plugin)["OTEL_PLUGIN_LOGS_TOKEN"]

    def text_lines(self) -> list[str]:
        return self.text.getvalue().splitlines()


def no_tracebacks(records: list[logging.LogRecord]) -> list[str]:
    """Host records that carry a traceback or report an internal error."""
    bad = []
    for record in records:
        message = record.getMessage()
        if record.exc_info or (record.exc_text and getattr(record, "otel", None) is None):
            bad.append(f"{record.name}: {message} (exc_info)")
        elif "Traceback" in message or "internal_error" in message:
            bad.append(f"{record.name}: {message}")
    return bad
