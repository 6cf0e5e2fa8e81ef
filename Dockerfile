# syntax=docker/dockerfile:1
# Image for `otel-plugin-logs` (used by the `demo` service of docker-compose.yml).
#   docker build -t otel-plugin-logs:local .
#   docker run --rm -e OTEL_EXPORTER_OTLP_ENDPOINT=http://host.docker.internal:4317 \
#     otel-plugin-logs:local demo --duration 30

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin app
USER app
WORKDIR /home/app
ENTRYPOINT ["otel-plugin-logs"]
CMD ["demo", "--duration", "0"]
