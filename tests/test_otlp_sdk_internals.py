"""The private SDK names the bridge relies on, checked against the installed SDK."""

from __future__ import annotations

from importlib.metadata import version

from otel_plugin_logs.export.sdk_private import missing_internals


def test_installed_sdk_still_has_every_private_name_the_exporters_use() -> None:
    """Every private exporter attribute _sdk_internals uses exists in this SDK; a release that moves one fails here."""
    assert missing_internals() == [], (
        f"opentelemetry-sdk {version('opentelemetry-sdk')} / -exporter-otlp "
        f"{version('opentelemetry-exporter-otlp')} changed what otel_plugin_logs/export/sdk_private.py uses"
    )
