"""Per-record cost of each stage a record goes through, and fast protobuf vs SDK encoder.

Records are real: ``batch_records`` records of the benchmark's standard shape (see
``RECORD_SHAPE``) are logged through a ``RunnerLogHandler`` whose transport keeps the frames,
then taken through the host's own functions stage by stage. Each stage is timed over the
whole batch, repeated, interleaved; the median per record is reported.

Two comparisons with a baseline from the same run:

* encoder only: ``encode_request`` (fast path) vs the SDK path (``SdkRecordBuilder.build`` +
  the SDK's ``encode_logs`` + ``SerializeToString``), what the fast path replaces;
* sink, end to end against the real collector: ``OtlpGrpcSink.export`` vs ``SdkExporterSink``
  around the SDK's gRPC ``OTLPLogExporter`` (same items, same collector, batch by batch).
"""

from __future__ import annotations

import gc
import logging
import random
import time
import warnings
from collections.abc import Callable
from typing import Any

from ._common import median

# The record every benchmark logs (runner and SDK baseline alike): a formatted message with
# two arguments and two extras, inside a span for a quarter of the records.
MESSAGE = "request %d handled in %.1f ms"
EXTRA = {"user_id": "u-1234", "http.status_code": 200}


def resource_info() -> Any:
    import uuid

    from otel_plugin_logs.export.otlp import ResourceInfo

    return ResourceInfo(
        {
            "telemetry.sdk.language": "python",
            "telemetry.sdk.name": "opentelemetry",
            "telemetry.sdk.version": "1.45.2",
            "service.namespace": "otel-plugin-logs",
            "service.name": "bench",
            "plugin.name": "bench",
            "process.pid": 4242,
            "service.instance.id": str(uuid.uuid4()),
        }
    )


def make_frames(count: int) -> list[bytes]:
    """Frame bodies a real RunnerLogHandler sends for ``count`` records of the standard shape."""
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from otel_plugin_logs import InMemoryTransport, RunnerLogHandler

    frames: list[bytes] = []

    def keep(body: bytes) -> int:
        frames.append(body)
        return 1 << 62

    handler = RunnerLogHandler(
        InMemoryTransport(keep), max_batch_records=count, schedule_delay_millis=3_600_000
    )
    logger = logging.getLogger("bench.plugin.encode")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    span = TracerProvider().get_tracer("bench").start_span("request")
    logger.info("warm-up: starts the sender, which then sleeps until a full batch")
    handler.force_flush(10_000)
    frames.clear()
    for i in range(count):
        token = otel_context.attach(trace.set_span_in_context(span)) if i % 4 == 0 else None
        logger.info(MESSAGE, i, 12.5, extra=EXTRA)
        if token is not None:
            otel_context.detach(token)
    handler.force_flush(10_000)
    handler.shutdown(5_000)
    span.end()
    return [f for f in frames if b"records" in f]


def _timed(function: Callable[[], Any], records: int) -> float:
    t0 = time.perf_counter_ns()
    function()
    return (time.perf_counter_ns() - t0) / records


def run(params: dict[str, Any]) -> dict[str, Any]:
    count = int(params.get("batch_records", 512))
    repeats = int(params.get("repeats", 30))
    endpoint = params.get("grpc_endpoint")
    http_endpoint = params.get("http_endpoint")

    import msgpack
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs

    from otel_plugin_logs.config.fields import resolve
    from otel_plugin_logs.config.host import HostConfig
    from otel_plugin_logs.export.items import Item
    from otel_plugin_logs.export.otlp import encode_request
    from otel_plugin_logs.export.sdk_records import SdkRecordBuilder
    from otel_plugin_logs.export.sinks import Outcome, SdkExporterSink
    from otel_plugin_logs.host.entries import Limits, build_entry
    from otel_plugin_logs.host.replay import Replayer
    from otel_plugin_logs.wire.framing import decode_message
    from otel_plugin_logs.wire.validate import BatchHeader, validate_records

    frames = make_frames(count)
    body = frames[0]
    message = decode_message(body)
    header = BatchHeader.model_validate(message)
    records = validate_records(header.records)[0]
    n = len(records)
    config, _ = resolve(HostConfig, {})
    limits = Limits(config.max_body_bytes, config.max_attribute_length, 128)
    now = time.time_ns()
    built = [build_entry(r, limits, now) for r in records]
    resource = resource_info()
    pairs = [(resource, entry) for entry, _, _ in built]
    items = [Item.of(resource, entry) for entry, _, _ in built]

    # Replay into a `plugin` logger at INFO with one handler that discards.
    class Discard(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            return None

    plugin_logger = logging.getLogger("plugin")
    plugin_logger.handlers[:] = [Discard()]
    plugin_logger.setLevel(logging.INFO)
    plugin_logger.propagate = False
    replayer = Replayer("plugin", "bench")
    otel = {"plugin": "bench", "plugin_version": None, "runner_pid": 4242, "resource": resource.attributes}

    # Runner side: what the sender thread does per record (a wire row, packed with one Packer).
    from otel_plugin_logs.config.runner import RunnerConfig
    from otel_plugin_logs.runner import intake
    from otel_plugin_logs.runner.encoding import WireLimits, to_wire

    wire_limits = WireLimits.of(RunnerConfig())
    sample_records = [
        logging.LogRecord("bench.plugin", logging.INFO, __file__, 10, MESSAGE, (i, 12.5), None)
        for i in range(n)
    ]
    for record in sample_records:
        record.__dict__.update(EXTRA)
    wire_items = [(i + 1, *intake.take(r)) for i, r in enumerate(sample_records)]
    packer = msgpack.Packer(use_bin_type=True)

    builder = SdkRecordBuilder()

    def sdk_encode() -> bytes:
        return encode_logs(builder.build(pairs)).SerializeToString()  # type: ignore[no-any-return]

    stages: dict[str, Callable[[], Any]] = {
        "runner_to_wire_msgpack": lambda: [
            packer.pack(to_wire(item, wire_limits, now)) for item in wire_items
        ],
        "host_decode_msgpack": lambda: decode_message(body),
        "host_validate_pydantic": lambda: validate_records(BatchHeader.model_validate(message).records),
        "host_build_entry": lambda: [build_entry(r, limits, now) for r in records],
        "host_replay": lambda: [replayer.replay(e, lv, st, otel) for e, lv, st in built],
        "host_encode_fast": lambda: encode_request(pairs),
        "sdk_encode": sdk_encode,
    }
    sinks: dict[str, Any] = {}
    if endpoint:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        from otel_plugin_logs.export.otlp_sinks import OtlpGrpcSink, OtlpHttpSink

        sinks["sink_grpc_fast"] = OtlpGrpcSink(endpoint, 10.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sinks["sink_grpc_sdk"] = SdkExporterSink(
                OTLPLogExporter(endpoint=endpoint, insecure=True, timeout=10)
            )
        if http_endpoint:
            sinks["sink_http_fast"] = OtlpHttpSink(http_endpoint, 10.0)
    failures: dict[str, int] = {}

    def export_with(sink: Any) -> Callable[[], Any]:
        def call() -> None:
            outcome: Outcome = sink.export(items, 10.0)
            if not outcome.ok:
                failures[sink.description] = failures.get(sink.description, 0) + 1

        return call

    for name, sink in sinks.items():
        stages[name] = export_with(sink)

    size_fast = len(encode_request(pairs))
    size_sdk = len(sdk_encode())

    for function in stages.values():  # warm-up
        function()
        function()
    gc.collect()
    samples: dict[str, list[float]] = {name: [] for name in stages}
    order = list(stages)
    rng = random.Random(3)
    for _ in range(repeats):
        rng.shuffle(order)
        for name in order:
            samples[name].append(_timed(stages[name], n))
    for sink in sinks.values():
        sink.shutdown()

    result: dict[str, Any] = {
        "batch_records": n,
        "repeats": repeats,
        "request_bytes_fast": size_fast,
        "request_bytes_sdk": size_sdk,
        "export_failures": failures,
        "stages_ns_per_record": {name: median(values) for name, values in samples.items()},
        "stages_min_ns_per_record": {name: min(values) for name, values in samples.items()},
    }
    return result
