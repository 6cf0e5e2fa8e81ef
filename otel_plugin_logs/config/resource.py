"""``OTEL_RESOURCE_ATTRIBUTES``: the one parser and writer of it, and the host's resource detection.

The specification has the values percent-encoded (``team=a%2Cb`` is ``a,b``) and the SDK
decodes them, so this reads them the same way, and writes the values it adds to a runner's
environment encoded, so that a host name with a comma or an equals sign reaches the
plugin's own SDK intact. Parsing and writing are stdlib only (a runner may import them);
``detect_host_resource`` imports the SDK lazily and runs on the host only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote, unquote

from otel_plugin_logs.config.errors import ConfigError

ENV_RESOURCE_ATTRIBUTES: Final = "OTEL_RESOURCE_ATTRIBUTES"
ENV_RESOURCE_DETECTORS: Final = "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS"
# Characters a value keeps as they are: the W3C baggage value octets, less the separators
# this format splits on (``,`` between pairs, ``=`` inside one) and ``%`` itself.
_SAFE_VALUE_CHARACTERS: Final = "!#$&'()*+-./:<>?@[]^_`{|}~"
# Detected process.* attributes describe the host process, not the plugin's runner; the
# bridge sets the runner's own process.pid.
_HOST_ONLY_PREFIXES: Final = ("process.",)


def parse_key_values(text: str, variable: str) -> dict[str, str]:
    """``key=value,...`` with percent-decoded values: the format of ``OTEL_RESOURCE_ATTRIBUTES``
    and ``OTEL_EXPORTER_OTLP_HEADERS``.

    Empty entries are skipped; an entry without ``=`` or with an empty key raises
    ``ConfigError`` naming the variable (the SDK would only warn and drop it).
    """
    pairs: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, separator, value = item.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"{variable} has an invalid entry {item.strip()!r}: expected key=value pairs")
        pairs[key.strip()] = unquote(value.strip())
    return pairs


def parse_resource_attributes(text: str, variable: str = ENV_RESOURCE_ATTRIBUTES) -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES`` as the SDK's ``OTELResourceDetector`` reads it."""
    return parse_key_values(text, variable)


def encode_resource_value(value: str) -> str:
    """A value percent-encoded for ``OTEL_RESOURCE_ATTRIBUTES``."""
    return quote(value, safe=_SAFE_VALUE_CHARACTERS)


def with_resource_attributes(existing: str, extra: Mapping[str, str]) -> str:
    """``existing`` with each of ``extra`` appended, encoded, unless its key is already there."""
    present = parse_resource_attributes(existing)
    added = [f"{key}={encode_resource_value(value)}" for key, value in extra.items() if key not in present]
    return ",".join(part for part in (existing.strip(), *added) if part)


def detect_host_resource(environ: Mapping[str, str]) -> dict[str, Any]:
    """The host's resource attributes: SDK identity, configured detectors, then the variables.

    ``OTEL_EXPERIMENTAL_RESOURCE_DETECTORS`` names detectors as the SDK loads them (entry
    points of ``opentelemetry_resource_detector``: ``host`` gives ``host.name``, ``os``, ...),
    in order, with ``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_SERVICE_NAME`` merged last, as the
    SDK's ``Resource.create`` does. The detectors themselves look at the process, not at
    ``environ``. ``otel`` and ``service_instance`` are skipped: the bridge reads the
    variables itself and gives each runner its own instance id.
    """
    from opentelemetry.sdk.resources import Resource, get_aggregated_resources
    from opentelemetry.sdk.version import __version__ as sdk_version

    attributes: dict[str, Any] = {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "telemetry.sdk.version": sdk_version,
    }
    names = [n.strip() for n in environ.get(ENV_RESOURCE_DETECTORS, "").split(",") if n.strip()]
    names = [n for n in names if n not in ("otel", "service_instance")]  # both are the bridge's to set
    if names:
        detected = get_aggregated_resources(_load_detectors(names), Resource.get_empty())
        for key, value in detected.attributes.items():
            if not key.startswith(_HOST_ONLY_PREFIXES):
                attributes[key] = value
    attributes.update(parse_resource_attributes(environ.get(ENV_RESOURCE_ATTRIBUTES, "")))
    service = environ.get("OTEL_SERVICE_NAME", "").strip()
    if service:
        attributes["service.name"] = service
    return attributes


def _load_detectors(names: list[str]) -> list[Any]:
    """Each named detector from the SDK's entry-point group; an unknown name is a ConfigError."""
    from importlib.metadata import entry_points

    registered = {point.name: point for point in entry_points(group="opentelemetry_resource_detector")}
    if "*" in names:
        names = [n for n in names if n != "*"] + sorted(set(registered) - set(names) - {"otel"})
    unknown = [name for name in names if name not in registered]
    if unknown:
        raise ConfigError(
            f"{ENV_RESOURCE_DETECTORS} names unknown detector(s) {', '.join(unknown)}: installed are "
            f"{', '.join(sorted(registered)) or 'none'}"
        )
    return [registered[name].load()() for name in names]


__all__ = [
    "detect_host_resource",
    "encode_resource_value",
    "parse_key_values",
    "parse_resource_attributes",
    "with_resource_attributes",
]
