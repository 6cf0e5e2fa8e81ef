"""otel-plugin-logs: carry the logs of plugin subprocesses into the host's logging and OpenTelemetry.

Runner side (inside a plugin process)::

    from otel_plugin_logs import runner
    runner.install()                     # or: automatic under `otel-plugin-logs run`

Host side::

    from otel_plugin_logs import HostLogBridge
    with HostLogBridge() as bridge:
        process = bridge.spawn_plugin("weather", [sys.executable, "weather.py"])
        process.wait()

A destination of your own for the host's records is a ``Sink`` (``HostLogBridge(sink=...)``):
its ``export`` gets ``Item``s and returns an ``Outcome`` (``ExportStatus``);
``otel_plugin_logs.testing.MemorySink`` is one for tests.

Host-side names are imported lazily, so that a plugin process importing the runner side
never loads the OTel SDK, its exporters or pydantic.
"""

from __future__ import annotations

from otel_plugin_logs.config.errors import ConfigError

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from typing import Any

    from otel_plugin_logs.export.items import Item
    from otel_plugin_logs.export.sinks import ExportStatus, Outcome, Sink
    from otel_plugin_logs.host.bridge import HostLogBridge, PluginProcess
    from otel_plugin_logs.host.legacy import LegacyBatchResult
    from otel_plugin_logs.host.replay import ReplayedRecord, ReplayedRecordFilter, is_replayed
    from otel_plugin_logs.host.stats import BridgeStats, PluginStats
    from otel_plugin_logs.runner.handler import RunnerLogHandler
    from otel_plugin_logs.runner.rpc_transport import FrameEncoding, RpcTransport, frame_from_event
    from otel_plugin_logs.runner.transport import (
        InMemoryTransport,
        Transport,
        TransportError,
        TransportRejected,
        UnixSocketTransport,
    )
    from otel_plugin_logs.wire.framing import ProtocolError
    from otel_plugin_logs.wire.messages import PROTOCOL_VERSION

__version__ = "0.1.0"

__all__ = [
    "PROTOCOL_VERSION",
    "BridgeStats",
    "ConfigError",
    "ExportStatus",
    "FrameEncoding",
    "HostLogBridge",
    "InMemoryTransport",
    "Item",
    "LegacyBatchResult",
    "Outcome",
    "PluginProcess",
    "PluginStats",
    "ProtocolError",
    "ReplayedRecord",
    "ReplayedRecordFilter",
    "RpcTransport",
    "RunnerLogHandler",
    "Sink",
    "Transport",
    "TransportError",
    "TransportRejected",
    "UnixSocketTransport",
    "__version__",
    "frame_from_event",
    "is_replayed",
]

# Imported on first use: a plugin process pays at start-up only for what auto-install needs.
_LAZY = {
    "RunnerLogHandler": ".runner.handler",
    "FrameEncoding": ".runner.rpc_transport",
    "RpcTransport": ".runner.rpc_transport",
    "frame_from_event": ".runner.rpc_transport",
    "InMemoryTransport": ".runner.transport",
    "Transport": ".runner.transport",
    "TransportError": ".runner.transport",
    "TransportRejected": ".runner.transport",
    "UnixSocketTransport": ".runner.transport",
    "ProtocolError": ".wire.framing",
    "PROTOCOL_VERSION": ".wire.messages",
    "ExportStatus": ".export.sinks",
    "Item": ".export.items",
    "Outcome": ".export.sinks",
    "Sink": ".export.sinks",
    "HostLogBridge": ".host.bridge",
    "PluginProcess": ".host.bridge",
    "LegacyBatchResult": ".host.legacy",
    "ReplayedRecord": ".host.replay",
    "ReplayedRecordFilter": ".host.replay",
    "is_replayed": ".host.replay",
    "BridgeStats": ".host.stats",
    "PluginStats": ".host.stats",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'otel_plugin_logs' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
