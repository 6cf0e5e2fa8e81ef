"""The plugins of ``otel-plugin-logs demo``: small, ordinary programs that log with ``logging``.

None of them imports the bridge: the host that spawns them (``HostLogBridge.spawn_plugin``)
installs the log handler from the outside. Each one also runs on its own, e.g.
``python -m otel_plugin_logs.demo_plugins.weather --rate 2`` (Ctrl-C stops it).

- ``weather``: looks up forecasts inside OpenTelemetry spans (its records carry trace ids).
- ``inventory``: structured events, through structlog when it is installed.
- ``payments``: exceptions with their cause; with ``--crash-after`` it dies once.
- ``crawler``: bursts of hundreds of records, far faster than the others.
"""
