"""The plugin of the user-view benchmarks (issue 15): ``python _user_plugin.py MODE OUT [ARGS...]``.

It runs as a real plugin under ``otel-plugin-logs run`` (auto-installed, as for any plugin),
except in mode ``sdk``, the baseline, which is a plain program with the OTel SDK pipeline.
It imports nothing from ``benchmarks`` and of the package only ``otel_plugin_logs.runner``'s
public names. It writes one JSON object to OUT; wall clock stamps are ``time.time()``, so
that the benchmark can compare them with the moment ``run`` exited.

* ``insitu OUT ROUNDS ROUND_SIZE``: rounds of ``log.info("user %s fetched %s", i, "berlin")``,
  interleaved (ABBA) between a logger the runner captures and a logger with a do-nothing
  handler that logging dispatches the way it did before the runner hooked it.
* ``burst OUT COUNT``: a warm-up record, acknowledged; then COUNT records as fast as possible;
  then wait until all are acknowledged.
* ``sdk OUT COUNT ENDPOINT``: the same burst through the OTel SDK pipeline as a user builds it.
* ``trivial OUT``: a start-up stamp and one record.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

STARTED_AT = time.time()
MESSAGE = "user %s fetched %s"
CITY = "berlin"


class DoNothing(logging.Handler):
    """The baseline handler: ``Handler.handle`` still takes its lock and runs the filters."""

    def emit(self, record: logging.LogRecord) -> None:
        return None


def _write(path: str, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle)


def _plain_logger(name: str) -> logging.Logger:
    """A logger whose records do not pass through the runner's hook on ``Logger.callHandlers``.

    The hook keeps the function it wraps as ``__wrapped__`` (the functools convention); this
    logger's class calls that one, so its rounds cost what they cost before the runner came.
    """
    hooked = logging.Logger.callHandlers
    original: Callable[..., None] = getattr(hooked, "__wrapped__", hooked)

    class PlainLogger(logging.Logger):
        callHandlers = original

    logger = PlainLogger(name, logging.INFO)
    logger.propagate = False
    logger.addHandler(DoNothing())
    return logger


def _round(logger: logging.Logger, size: int, settle: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds of the calls, process CPU seconds of the calls and of sending them)."""
    info = logger.info
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(size):
        info(MESSAGE, i, CITY)
    t1 = time.perf_counter()
    settle()  # the sender's share of the round: it has sent (and the host acknowledged) it all
    return t1 - t0, time.process_time() - cpu0


def insitu(out: str, rounds: int, size: int) -> int:
    from otel_plugin_logs import runner

    handler = runner.installed_handler()
    if handler is None:
        _write(out, {"error": "no handler installed"})
        return 2
    ours = logging.getLogger("bench.insitu")
    ours.setLevel(logging.INFO)
    ours.propagate = False  # the runner's hook still sees every record; nothing else handles it
    plain = _plain_logger("bench.baseline")
    hooked = hasattr(logging.Logger.callHandlers, "__wrapped__")

    def settle() -> object:
        return handler.wait_acked(60_000)

    def nothing() -> object:
        return None

    samples: dict[str, dict[str, list[float]]] = {"runner": {"wall": [], "cpu": []}}
    samples["baseline"] = {"wall": [], "cpu": []}
    _round(ours, size, settle)  # warm-up: connection, caches, the sender thread
    _round(plain, size, nothing)
    for index in range(rounds):
        order = (("runner", ours, settle), ("baseline", plain, nothing))
        for name, logger, after in order if index % 2 == 0 else order[::-1]:
            wall, cpu = _round(logger, size, after)
            samples[name]["wall"].append(wall)
            samples[name]["cpu"].append(cpu)
    _write(out, {"round_size": size, "rounds": rounds, "hooked": hooked, "samples": samples})
    return 0


def burst(out: str, count: int) -> int:
    from otel_plugin_logs import runner

    handler = runner.installed_handler()
    if handler is None:
        _write(out, {"error": "no handler installed"})
        return 2
    log = logging.getLogger("bench.burst")
    log.setLevel(logging.INFO)
    log.info("warm-up")
    handler.wait_acked(30_000)
    info = log.info
    first = time.time()
    cpu0 = time.process_time()
    for i in range(count):
        info(MESSAGE, i, CITY)
    emitted = time.time()
    acked = handler.wait_acked(600_000)
    _write(
        out,
        {
            "first_record_at": first,
            "emitted_at": emitted,
            "acked_at": time.time(),
            "all_acked": acked,
            "runner_cpu_seconds": time.process_time() - cpu0,
        },
    )
    return 0


def sdk(out: str, count: int, endpoint: str) -> int:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    provider = LoggerProvider(resource=Resource({"service.name": "bench-sdk"}), shutdown_on_exit=False)
    # The queue size comes from OTEL_BLRP_MAX_QUEUE_SIZE, which the benchmark sets above COUNT.
    provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint, insecure=True))
    )
    log = logging.getLogger("bench.burst")
    log.handlers[:] = [LoggingHandler(logger_provider=provider)]
    log.setLevel(logging.INFO)
    log.propagate = False
    log.info("warm-up")
    provider.force_flush()
    info = log.info
    first = time.time()
    cpu0 = time.process_time()
    for i in range(count):
        info(MESSAGE, i, CITY)
    emitted = time.time()
    provider.shutdown()  # what the SDK's atexit hook does: flush the queue, then stop
    _write(
        out,
        {
            "first_record_at": first,
            "emitted_at": emitted,
            "acked_at": time.time(),
            "all_acked": True,
            "runner_cpu_seconds": time.process_time() - cpu0,
        },
    )
    return 0


def trivial(out: str) -> int:
    logging.getLogger("bench.trivial").warning("started")
    _write(out, {"started_at": STARTED_AT})
    return 0


def main(argv: list[str]) -> int:
    mode, out, rest = argv[1], argv[2], argv[3:]
    if mode == "insitu":
        return insitu(out, int(rest[0]), int(rest[1]))
    if mode == "burst":
        return burst(out, int(rest[0]))
    if mode == "sdk":
        return sdk(out, int(rest[0]), rest[1])
    if mode == "trivial":
        return trivial(out)
    raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
