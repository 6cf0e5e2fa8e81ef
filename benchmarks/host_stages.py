"""Per-record cost of each host stage, on real frames (a sanity tool, not a final figure).

Frames come from a real ``RunnerLogHandler`` (``encode.make_frames``); each stage runs the
host's own functions over the whole batch, repeated, and the median per record is printed.
Run: ``.venv/bin/python -m benchmarks.host_stages [records] [repeats]``.

A host whose sink sends protobuf builds and encodes in one step ("build_entry, encoded"), then
cuts and sends what it encoded ("encode_request, encoded", "encoded_bytes, encoded"); the rows
without "encoded" are the path of the other sinks (JSON file, SDK exporters, a user's own).
"""

from __future__ import annotations

import io
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from ._common import median
from .encode import make_frames, resource_info


def _discard_logger(name: str, handler: logging.Handler | None) -> None:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler] if handler is not None else []
    logger.setLevel(logging.INFO)
    logger.propagate = False


def stages(count: int) -> tuple[int, dict[str, Callable[[], Any]]]:
    """The stages over one real frame, and how many records that frame holds (a frame is
    capped by the runner's batch limits, so it may hold fewer than ``count``)."""
    from otel_plugin_logs.cli.console import PluginConsoleFormatter, PluginConsoleHandler
    from otel_plugin_logs.config.fields import resolve
    from otel_plugin_logs.config.host import HostConfig
    from otel_plugin_logs.export.batching import encoded_bytes
    from otel_plugin_logs.export.otlp import encode_request
    from otel_plugin_logs.host.entries import Limits, build_entry
    from otel_plugin_logs.host.replay import Replayer
    from otel_plugin_logs.wire.framing import decode_message
    from otel_plugin_logs.wire.validate import BatchHeader, validate_records

    body = make_frames(count)[0]
    message = decode_message(body)
    records = validate_records(BatchHeader.model_validate(message).records)[0]
    config, _ = resolve(HostConfig, {})
    limits = Limits(config.max_body_bytes, config.max_attribute_length, 128)
    now = time.time_ns()
    built = [build_entry(r, limits, now) for r in records]
    for entry, _, _ in built:
        entry.uid = f"{'0' * 16}{entry.seq:016x}"
    encoded = [build_entry(r, limits, now, uid_prefix="0" * 16)[0] for r in records]
    resource = resource_info()
    pairs = [(resource, entry) for entry, _, _ in built]
    encoded_pairs = [(resource, entry) for entry in encoded]
    otel = {"plugin": "bench", "plugin_version": None, "runner_pid": 4242, "resource": resource.attributes}

    class Discard(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            return None

    _discard_logger("stages", Discard())
    _discard_logger("quiet", None)
    replayer = Replayer("stages", "bench")
    quiet = Replayer("quiet", "bench")
    made = [replayer.make_record(replayer.base_name, e, lv, st, otel) for e, lv, st in built]
    formatter = PluginConsoleFormatter()
    console = PluginConsoleHandler(io.StringIO())
    console.setFormatter(PluginConsoleFormatter())
    # As `run` sets it up: records held and shown in time order, released together.
    held = PluginConsoleHandler(io.StringIO(), reorder_millis=400)
    held.setFormatter(PluginConsoleFormatter())

    def console_emit(handler: PluginConsoleHandler) -> None:
        for record in made:
            handler.handle(record)
        handler.flush()
        handler.stream = io.StringIO()

    return len(records), {
        "decode (msgpack)": lambda: decode_message(body),
        "validate (header + records)": lambda: validate_records(BatchHeader.model_validate(message).records),
        "build_entry": lambda: [build_entry(r, limits, now) for r in records],
        "build_entry, encoded": lambda: [build_entry(r, limits, now, uid_prefix="0" * 16) for r in records],
        "size_estimate": lambda: [e.size_estimate() for e, _, _ in built],
        "encode_request": lambda: encode_request(pairs),
        "encode_request, encoded": lambda: encode_request(encoded_pairs),
        "encoded_bytes (batch cutting)": lambda: [encoded_bytes(e) for e, _, _ in built],
        "encoded_bytes, encoded": lambda: [encoded_bytes(e) for e in encoded],
        "replay (a discarding handler)": lambda: [replayer.replay(e, lv, st, otel) for e, lv, st in built],
        "replay (no handler)": lambda: [quiet.replay(e, lv, st, otel) for e, lv, st in built],
        "console format": lambda: [formatter.format(r) for r in made],
        "console handle (StringIO)": lambda: console_emit(console),
        "console handle, reordered as run": lambda: console_emit(held),
        **_replay_console_stages(built, otel),
    }


def _replay_console_stages(built: list[Any], otel: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """replay_all of the frame into a console set up as `run` sets it up: the console alone on
    the records' way (it takes the bridge's entries), and with a filter on the logger (every
    record a LogRecord, as before); and replay_all when nothing takes the records."""
    from otel_plugin_logs.cli.console import PluginConsoleFormatter, PluginConsoleHandler
    from otel_plugin_logs.host.replay import Replayer

    def console_logger(name: str, with_filter: bool) -> PluginConsoleHandler:
        handler = PluginConsoleHandler(io.StringIO(), reorder_millis=400)
        handler.setFormatter(PluginConsoleFormatter())
        _discard_logger(name, handler)
        if with_filter:
            logging.getLogger(name).addFilter(lambda record: True)
        return handler

    def replay_into(replayer: Replayer, handler: PluginConsoleHandler) -> None:
        replayer.replay_all(built, otel)
        handler.flush()
        handler.stream = io.StringIO()

    fast = console_logger("fields", False)
    slow = console_logger("records", True)
    _discard_logger("nobody", None)
    fields, records, nobody = (
        Replayer("fields", "bench"),
        Replayer("records", "bench"),
        Replayer("nobody", "bench"),
    )
    return {
        "replay_all (no handler)": lambda: nobody.replay_all(built, otel),
        "replay_all+console, as run": lambda: replay_into(fields, fast),
        "replay_all+console, LogRecords": lambda: replay_into(records, slow),
    }


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 512
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    count, timed = stages(count)
    samples: dict[str, list[float]] = {name: [] for name in timed}
    for _ in range(repeats):
        for name, function in timed.items():
            t0 = time.perf_counter_ns()
            function()
            samples[name].append((time.perf_counter_ns() - t0) / count / 1000)
    for name, values in samples.items():
        print(f"{name:<32} {median(values):7.2f} us/record")


if __name__ == "__main__":
    main()
