"""otel-plugin-logs: carry the logs of plugin subprocesses into the host's logging and OpenTelemetry.

Runner side (inside a plugin process)::

    from otel_plugin_logs import runner
    runner.install()                     # or: automatic under `otel-plugin-logs run`

Host side::

    from otel_plugin_logs import HostLogBridge
    with HostLogBridge() as bridge:
        process = bridge.spawn_plugin("weather", [sys.executable, "weather.py"])
        process.wait()

Host-side names are imported lazily, so that a plugin process importing the runner side
never loads the OTel SDK, its exporters or pydantic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._config import ConfigError
from ._handler import RunnerLogHandler
from ._protocol import PROTOCOL_VERSION, ProtocolError
from ._rpc_transport import FrameEncoding, RpcTransport, frame_from_event
from ._transport import InMemoryTransport, Transport, TransportError, TransportRejected, UnixSocketTransport

if TYPE_CHECKING:
    from ._host import HostLogBridge, PluginProcess
    from ._legacy import LegacyBatchResult
    from ._replay import ReplayedRecord, ReplayedRecordFilter, is_replayed
    from ._stats import BridgeStats, PluginStats

__version__ = "0.1.0"

__all__ = [
    "PROTOCOL_VERSION",
    "BridgeStats",
    "ConfigError",
    "FrameEncoding",
    "HostLogBridge",
    "InMemoryTransport",
    "LegacyBatchResult",
    "PluginProcess",
    "PluginStats",
    "ProtocolError",
    "ReplayedRecord",
    "ReplayedRecordFilter",
    "RpcTransport",
    "RunnerLogHandler",
    "Transport",
    "TransportError",
    "TransportRejected",
    "UnixSocketTransport",
    "__version__",
    "frame_from_event",
    "is_replayed",
]

_LAZY = {
    "HostLogBridge": "._host",
    "PluginProcess": "._host",
    "LegacyBatchResult": "._legacy",
    "ReplayedRecord": "._replay",
    "ReplayedRecordFilter": "._replay",
    "is_replayed": "._replay",
    "BridgeStats": "._stats",
    "PluginStats": "._stats",
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
