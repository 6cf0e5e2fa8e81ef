"""Names shared by the package, the collector config, Loki and the Grafana dashboard.

They are the contract between the bridge and `collector-config/`: a test checks that the
stack filters on exactly these names, so change them together or not at all.
"""

from __future__ import annotations

import re
from typing import Final

# Plugin names: they become `service.name`, logger names (`plugin.<name>`), thread names and
# console text, so the alphabet is small and the whole name must match (no trailing newline).
PLUGIN_NAME_RULE: Final = (
    "1 to 64 characters: ASCII letters, digits, '_' and '-', starting with a letter or a digit"
)
_PLUGIN_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def is_valid_plugin_name(name: object) -> bool:
    return isinstance(name, str) and _PLUGIN_NAME.fullmatch(name) is not None


def check_plugin_name(name: object) -> str:
    """``name`` if it follows ``PLUGIN_NAME_RULE``; else ValueError saying what is wrong and the rule."""
    if not is_valid_plugin_name(name):
        raise ValueError(f"invalid plugin name {name!r}: {PLUGIN_NAME_RULE}")
    assert isinstance(name, str)
    return name


# Resource attributes stamped on every plugin's records.
# Decision: each plugin is its own OTel service (`service.name` = plugin name) and the host
# application is the `service.namespace`. Loki indexes both by default, so a Grafana user
# selects one plugin with `{service_name="weather"}`; `plugin.name` is also promoted to the
# Loki label `plugin_name` (collector-config/loki.yaml) so the dashboard filter does not
# depend on the service naming scheme.
RESOURCE_PLUGIN_NAME: Final = "plugin.name"
RESOURCE_PLUGIN_VERSION: Final = "plugin.version"
LOKI_PLUGIN_LABEL: Final = "plugin_name"
DEFAULT_HOST_SERVICE_NAME: Final = "otel-plugin-logs"

# Attributes the bridge puts on its own notices (drop warnings, suppression notices,
# runner exits), exported on the plugin's resource with the scope below.
BRIDGE_SCOPE_NAME: Final = "otel_plugin_logs.bridge"
BRIDGE_EVENT_ATTRIBUTE: Final = "bridge.event"
BRIDGE_REASON_ATTRIBUTE: Final = "bridge.reason"
BRIDGE_COUNT_ATTRIBUTE: Final = "bridge.count"
BRIDGE_EVENTS: Final = ("dropped", "suppressed", "gap", "runner_exit")

# Where the demo and `doctor` send OTLP when told to use the local stack.
DEFAULT_OTLP_GRPC_ENDPOINT: Final = "http://localhost:4317"
DEFAULT_OTLP_HTTP_ENDPOINT: Final = "http://localhost:4318"
GRAFANA_URL: Final = "http://localhost:3000"
JAEGER_URL: Final = "http://localhost:16686"
