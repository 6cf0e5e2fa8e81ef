"""weather: looks up forecasts inside OpenTelemetry spans, so its records carry trace ids.

The plugin exports its spans itself when OTEL_EXPORTER_OTLP_ENDPOINT (or the _TRACES_ variant)
is set. The host sets OTEL_SERVICE_NAME to the plugin's name, so the spans and the logs share
one service and Grafana links each record to its trace in Jaeger. Without an endpoint the
spans are still created (no exporter), so the records still carry trace and span ids.
"""

from __future__ import annotations

import logging
import os
import random

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_plugin_logs.demo_plugins._common import every, parser, pause

log = logging.getLogger("weather.forecast")
CITIES = ("Zürich", "Lisbon", "Nairobi", "Osaka", "Toronto", "Santiago", "Reykjavík", "Hobart")
SKIES = ("sunny", "cloudy", "light rain", "snow", "fog", "thunderstorms")


def tracing() -> TracerProvider:
    """A tracer provider; with an OTLP exporter when an endpoint is configured."""
    provider = TracerProvider()  # its resource reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
    env = os.environ.get
    if env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env("OTEL_EXPORTER_OTLP_ENDPOINT"):
        protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc"
        if protocol == "http/protobuf":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[assignment]
                OTLPSpanExporter,
            )
        # A short timeout: a plugin asked to stop should not wait long for an absent collector.
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(timeout=3)))
    trace.set_tracer_provider(provider)
    return provider


def forecast(tracer: trace.Tracer, rng: random.Random, city: str) -> None:
    with tracer.start_as_current_span("forecast", attributes={"city": city}) as span:
        log.info("looking up the forecast for %s", city, extra={"city": city})
        with tracer.start_as_current_span("GET /v1/forecast", kind=SpanKind.CLIENT) as call:
            latency = rng.lognormvariate(-3.2, 0.7)  # about 40 ms, now and then far more
            pause(latency)
            status = 503 if rng.random() < 0.05 else 200
            call.set_attribute("http.response.status_code", status)
        if status != 200:
            span.set_status(Status(StatusCode.ERROR, f"upstream answered {status}"))
            log.error("the weather service answered %d for %s", status, city, extra={"city": city})
            return
        if latency > 0.15:
            log.warning("slow answer for %s: %.0f ms", city, latency * 1000, extra={"city": city})
        sky, temperature = rng.choice(SKIES), rng.randint(-12, 36)
        span.set_attribute("weather.sky", sky)
        log.info(
            "%s: %s, %d °C",
            city,
            sky,
            temperature,
            extra={"city": city, "sky": sky, "temperature_c": temperature},
        )


def main() -> None:
    args = parser(__doc__).parse_args()
    logging.basicConfig(level=logging.INFO)
    provider = tracing()
    tracer = trace.get_tracer("weather")
    rng = random.Random(args.seed)
    for _ in every(2.0 / args.rate):  # two records per forecast
        forecast(tracer, rng, rng.choice(CITIES))
    provider.shutdown()  # sends the last spans


if __name__ == "__main__":
    main()
