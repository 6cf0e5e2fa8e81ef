"""Goal 1: cost of ``logger.info("msg %s", x)`` through RunnerLogHandler vs a do-nothing handler.

Each handler hangs on its own logger (level INFO, no propagation). A *round* is ``round_size``
calls of ``logger.info("msg %s", i)`` timed with ``perf_counter_ns``; rounds of all handlers
are interleaved in a random order, repeated, and each handler's median per-call time is
divided by the baseline's median from the same run.

Handlers that keep records are drained after every round, outside the timed part, as a real
consumer would (keeping LogRecords forever makes the cyclic GC dominate).

RunnerLogHandler runs over an ``InMemoryTransport`` whose deliver callback discards the
batch (and acknowledges it). Two configurations:

* ``caller``: batches as big as a round and a long schedule delay. Since a record that finds
  the sender idle is sent at once (so little waits in a runner that dies), the sender wakes
  on a round's first record and then sends what gathered every 5 ms: the figure is the
  caller's cost plus the sender's, as a plugin's logging loop sees it, not the caller alone.
* ``default``: default settings; the sender wakes every 512 records and competes for the GIL
  during the round, so the figure is the caller's cost plus the background encoding and
  sending (the runner's total CPU per record, on one core).
"""

from __future__ import annotations

import gc
import logging
import queue
import random
import time
from collections import deque
from collections.abc import Callable
from logging.handlers import QueueHandler
from typing import Any

from ._common import median, otel_logging_handler


class DoNothing(logging.Handler):
    """The baseline: a handler whose emit does nothing (Handler.handle still takes its lock)."""

    def emit(self, record: logging.LogRecord) -> None:
        return None


class TupleDeque(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.items: deque[tuple[Any, ...]] = deque()

    def emit(self, record: logging.LogRecord) -> None:
        self.items.append((record.created, record.levelno, record.name, record.getMessage(), record))

    def drain(self) -> None:
        self.items.clear()


def _pydantic_handler() -> logging.Handler:
    from pydantic import BaseModel

    class Model(BaseModel):
        created: float
        levelno: int
        logger: str
        message: str
        pathname: str
        lineno: int
        thread: int | None

    class PydanticHandler(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.items: list[Model] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.items.append(
                Model(
                    created=record.created,
                    levelno=record.levelno,
                    logger=record.name,
                    message=record.getMessage(),
                    pathname=record.pathname,
                    lineno=record.lineno,
                    thread=record.thread,
                )
            )

        def drain(self) -> None:
            self.items.clear()

    return PydanticHandler()


class DrainedQueueHandler(QueueHandler):
    def __init__(self) -> None:
        super().__init__(queue.SimpleQueue())

    def drain(self) -> None:
        self.queue = queue.SimpleQueue()


def _sdk_handler() -> tuple[logging.Handler, Callable[[], None]]:
    """The OTel LoggingHandler (instrumentation-logging's) → BatchLogRecordProcessor → an exporter that discards."""
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExportResult
    from opentelemetry.sdk.resources import Resource

    class Discard:
        def export(self, batch: Any) -> Any:
            return LogRecordExportResult.SUCCESS

        def shutdown(self) -> None:
            return None

        def force_flush(self, timeout_millis: int = 0) -> bool:
            return True

    provider = LoggerProvider(resource=Resource({"service.name": "bench"}), shutdown_on_exit=False)
    provider.add_log_record_processor(BatchLogRecordProcessor(Discard()))  # type: ignore[arg-type]
    handler = otel_logging_handler(provider)
    return handler, provider.shutdown


def _runner_handler(caller_only: bool, round_size: int) -> logging.Handler:
    from otel_plugin_logs import InMemoryTransport, RunnerLogHandler

    transport = InMemoryTransport(lambda body: 1 << 62)  # discards; acknowledges everything
    if caller_only:
        return RunnerLogHandler(
            transport,
            max_batch_records=round_size + 1,
            schedule_delay_millis=3_600_000,
            max_queue_records=round_size * 4,
        )
    return RunnerLogHandler(transport)


def _stalled_runner_handler() -> logging.Handler:
    """A runner whose host takes batches but never acknowledges them (a frozen host): the
    buffer is full from the warm-up on, so every call also sheds the oldest record."""
    from otel_plugin_logs import InMemoryTransport, RunnerLogHandler

    transport = InMemoryTransport(lambda body: 0)
    return RunnerLogHandler(transport, max_queue_records=2_000, max_queue_bytes=2 * 1024 * 1024)


def _capture_variant(round_size: int, *, span: bool) -> dict[str, Any]:
    """What auto-install gives a plugin: the hook on Logger.callHandlers offers each record to
    the runner handler, then the plugin's own handler (a do-nothing one here) runs as before.
    The hook patches the Logger class, so it is installed only around this variant's rounds."""
    from otel_plugin_logs.runner.capture import Capture

    runner = _runner_handler(True, round_size)
    return {
        "handler": DoNothing(),
        "runner": runner,
        "capture": Capture(runner.capture, hide_console=True),  # type: ignore[attr-defined]
        "span": span,
        "label": "capture hook + RunnerLogHandler beside the plugin's handler" + (", span" if span else ""),
    }


def _hook_only_variant() -> dict[str, Any]:
    """The capture mechanism alone: the hook marks each record carried (a thread-local flag
    for the console gate) and hands it to a callable that keeps nothing."""
    from otel_plugin_logs.runner.capture import Capture

    return {
        "handler": DoNothing(),
        "capture": Capture(lambda record: True, hide_console=True),
        "span": False,
        "label": "capture hook alone, beside the plugin's handler",
    }


def build_variants(round_size: int) -> tuple[dict[str, dict[str, Any]], Callable[[], None]]:
    """The handlers compared: name -> {handler, span (run with a span active?), label}."""
    sdk_handler, sdk_shutdown = _sdk_handler()
    variants: dict[str, dict[str, Any]] = {
        # name: handler, in span?, description
        "baseline": {"handler": DoNothing(), "span": False, "label": "do-nothing handler (baseline)"},
        "baseline_span": {"handler": DoNothing(), "span": True, "label": "do-nothing handler, span active"},
        "tuple_deque": {"handler": TupleDeque(), "span": False, "label": "tuple into a deque"},
        "pydantic": {"handler": _pydantic_handler(), "span": False, "label": "pydantic model in emit"},
        "queue_handler": {"handler": DrainedQueueHandler(), "span": False, "label": "stdlib QueueHandler"},
        "otel_sdk_handler": {
            "handler": sdk_handler,
            "span": False,
            "label": "OTel LoggingHandler (BLRP)",
        },
        "runner": {
            "handler": _runner_handler(True, round_size),
            "span": False,
            "label": "RunnerLogHandler, round-size batches",
        },
        "runner_span": {
            "handler": _runner_handler(True, round_size),
            "span": True,
            "label": "RunnerLogHandler, round-size batches, span active",
        },
        "capture_hook": _hook_only_variant(),
        "runner_capture": _capture_variant(round_size, span=False),
        "runner_capture_span": _capture_variant(round_size, span=True),
        "runner_default": {
            "handler": _runner_handler(False, round_size),
            "span": True,
            "label": "RunnerLogHandler, defaults, sender running, span",
        },
        "runner_stalled": {
            "handler": _stalled_runner_handler(),
            "span": False,
            "flush": False,
            "label": "RunnerLogHandler, host never acks (buffer full)",
        },
    }
    return variants, sdk_shutdown


def run(params: dict[str, Any]) -> dict[str, Any]:
    round_size = int(params.get("round_size", 1000))
    rounds = int(params.get("rounds", 150))
    seed = int(params.get("seed", 7))

    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("bench")
    span = tracer.start_span("bench-span")
    span_context = trace.set_span_in_context(span)

    variants, cleanup = build_variants(round_size)
    for name, variant in variants.items():
        logger = logging.getLogger(f"bench.emit.{name}")
        logger.handlers[:] = [variant["handler"]]
        logger.setLevel(logging.INFO)
        logger.propagate = False
        variant["logger"] = logger
        variant["times"] = []
        variant["cpu"] = []

    def one_round(variant: dict[str, Any]) -> None:
        info = variant["logger"].info
        token = otel_context.attach(span_context) if variant["span"] else None
        capture = variant.get("capture")
        if capture is not None:
            capture.install()
        try:
            cpu0 = time.process_time_ns()
            t0 = time.perf_counter_ns()
            for i in range(round_size):
                info("msg %s", i)
            t1 = time.perf_counter_ns()
            cpu1 = time.process_time_ns()
        finally:
            if capture is not None:
                capture.uninstall()
            if token is not None:
                otel_context.detach(token)
        handler = variant.get("runner", variant["handler"])
        if variant.get("flush", True) and hasattr(handler, "wait_acked"):
            handler.force_flush(10_000)  # RunnerLogHandler: send the round, untimed
        drain = getattr(handler, "drain", None)
        if drain is not None:
            drain()
        variant["times"].append((t1 - t0) / round_size)
        variant["cpu"].append((cpu1 - cpu0) / round_size)

    # Warm-up: start threads, fill caches, let the SDK handler's lazy paths run.
    for variant in variants.values():
        for _ in range(3):
            one_round(variant)
        variant["times"].clear()
        variant["cpu"].clear()
    gc.collect()

    rng = random.Random(seed)
    names = list(variants)
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            one_round(variants[name])

    for variant in variants.values():
        handler = variant.get("runner", variant["handler"])
        if hasattr(handler, "wait_acked"):
            handler.shutdown(5_000 if variant.get("flush", True) else 100)
    cleanup()
    span.end()

    base = median(variants["baseline"]["times"])
    base_span = median(variants["baseline_span"]["times"])
    out: dict[str, Any] = {"round_size": round_size, "rounds": rounds, "variants": {}}
    for name, variant in variants.items():
        reference = base_span if variant["span"] else base
        reference_times = variants["baseline_span" if variant["span"] else "baseline"]["times"]
        times = variant["times"]
        paired = [t / b for t, b in zip(times, reference_times, strict=False) if b]
        out["variants"][name] = {
            "label": variant["label"],
            "span": variant["span"],
            "median_ns": median(times),
            "min_ns": min(times),
            "median_process_cpu_ns": median(variant["cpu"]),
            "baseline_median_ns": reference,
            "ratio": median(times) / reference,
            "ratio_min": min(times) / min(reference_times),
            "ratio_paired_median": median(paired),
        }
    return out
