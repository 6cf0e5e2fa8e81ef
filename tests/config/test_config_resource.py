"""``key=value,...`` variables: one parser for the resource attributes and the OTLP headers."""

from __future__ import annotations

import pytest

from otel_plugin_logs.config.errors import ConfigError
from otel_plugin_logs.config.resource import parse_key_values, with_resource_attributes


def test_values_are_percent_decoded_and_empty_entries_skipped() -> None:
    """``a%2Cb`` is ``a,b``, as the SDK reads it."""
    assert parse_key_values(" team = a%2Cb ,, x=1", "OTEL_EXPORTER_OTLP_HEADERS") == {"team": "a,b", "x": "1"}


def test_an_entry_without_a_key_names_the_variable() -> None:
    """The error says which variable and which entry."""
    with pytest.raises(ConfigError, match=r"^OTEL_EXPORTER_OTLP_HEADERS has an invalid entry '=v': expected"):
        parse_key_values("k=v,=v", "OTEL_EXPORTER_OTLP_HEADERS")


def test_added_values_are_encoded_and_read_back_intact() -> None:
    """A value with a comma or an equals sign survives the round trip; a present key is kept."""
    text = with_resource_attributes("a=1", {"a": "2", "host": "x,y=z"})
    assert parse_key_values(text, "OTEL_RESOURCE_ATTRIBUTES") == {"a": "1", "host": "x,y=z"}
