"""The OpenTelemetry resource of each plugin process: the host's own attributes, named for the plugin."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from otel_plugin_logs.config.resource import detect_host_resource
from otel_plugin_logs.conventions import (
    DEFAULT_HOST_SERVICE_NAME,
    RESOURCE_PLUGIN_NAME,
    RESOURCE_PLUGIN_VERSION,
)
from otel_plugin_logs.export.otlp import ResourceInfo
from otel_plugin_logs.host.streams import PluginState


class PluginResources:
    def __init__(self) -> None:
        self._base: dict[str, Any] = {}
        self.host_service = DEFAULT_HOST_SERVICE_NAME  # the namespace of every plugin's service

    def detect(self, environ: Mapping[str, str], service_name: str | None) -> None:
        """Read the host's resource once, at start."""
        attributes = detect_host_resource(environ)
        host_service = (
            service_name
            or environ.get("OTEL_SERVICE_NAME", "").strip()
            or str(attributes.get("service.name", ""))
        )
        if not host_service or host_service.startswith("unknown_service"):
            host_service = DEFAULT_HOST_SERVICE_NAME
        self._base, self.host_service = attributes, host_service

    def for_process(self, plugin: PluginState, pid: int) -> ResourceInfo:
        attributes = dict(self._base)
        attributes.setdefault("service.namespace", self.host_service)
        attributes["service.name"] = plugin.name
        attributes[RESOURCE_PLUGIN_NAME] = plugin.name
        if plugin.version:
            attributes[RESOURCE_PLUGIN_VERSION] = plugin.version
        attributes["process.pid"] = pid
        attributes["service.instance.id"] = str(uuid.uuid4())
        return ResourceInfo(attributes)
