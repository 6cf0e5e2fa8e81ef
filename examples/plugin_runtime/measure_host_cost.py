"""Host CPU per record of the old payload against a frame of the same records.

Replay and export are off, so the figure is what ``handle_legacy_batch`` adds (validation of
the entries and conversion) on top of ``handle_batch``. Prints the median of three runs::

    .venv/bin/python examples/plugin_runtime/measure_host_cost.py
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import msgpack

from otel_plugin_logs import HostLogBridge
from otel_plugin_logs.host.legacy import parse_legacy_batch, to_wire_record

BATCHES = 2500
ENTRIES_PER_BATCH = 20  # the seed handler's batch size


def payloads() -> list[dict[str, Any]]:
    now_ms = int(time.time() * 1000)
    return [
        {
            "entries": [
                {
                    "timestamp_ms": now_ms,
                    "level": 20,
                    "logger_name": "plugin.w.http",
                    "message": f"record {b}.{i} of the weather plugin",
                    "exception_text": "",
                }
                for i in range(ENTRIES_PER_BATCH)
            ]
        }
        for b in range(BATCHES)
    ]


def frames_of(batches: list[dict[str, Any]]) -> list[bytes]:
    """The same records as msgpack batch frames, as a runner on RunnerLogHandler sends them."""
    now_ns = time.time_ns()
    frames, seq = [], 0
    for payload in batches:
        entries = parse_legacy_batch(payload, 8 << 20).entries
        records = [to_wire_record(seq + 1 + i, e, "w", now_ns) for i, e in enumerate(entries)]
        seq += len(records)
        message = {"t": "batch", "stream": 7, "accepted": seq, "records": records}
        frames.append(msgpack.packb(message, use_bin_type=True))
    return frames


def measure(label: str, feed: Callable[[HostLogBridge], object]) -> None:
    per_record = []
    with tempfile.TemporaryDirectory() as sink_dir:
        environ = {
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_PLUGIN_LOGS_REPLAY": "false",
            "OTEL_PLUGIN_LOGS_RATE_LIMIT_RECORDS_PER_SECOND": "0",
            "OTEL_PLUGIN_LOGS_FILE_DIR": sink_dir,
        }
        for _ in range(3):
            with HostLogBridge(environ=environ) as bridge:
                start = time.process_time()
                feed(bridge)
                elapsed = time.process_time() - start
                assert bridge.stats().plugins["w"].discarded == BATCHES * ENTRIES_PER_BATCH
            per_record.append(elapsed / (BATCHES * ENTRIES_PER_BATCH) * 1e6)
    runs = ", ".join(f"{value:.2f}" for value in per_record)
    print(f"{label}: {statistics.median(per_record):.2f} µs/record (runs {runs})")


def main() -> None:
    batches = payloads()
    as_json = [json.dumps(p).encode() for p in batches]
    frames = frames_of(batches)
    measure("handle_legacy_batch, map", lambda b: [b.handle_legacy_batch("w", p) for p in batches])
    measure("handle_legacy_batch, JSON bytes", lambda b: [b.handle_legacy_batch("w", p) for p in as_json])
    measure("handle_batch, msgpack frame", lambda b: [b.handle_batch("w", f) for f in frames])


if __name__ == "__main__":
    main()
