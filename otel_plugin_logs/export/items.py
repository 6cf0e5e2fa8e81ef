"""What travels through the export stage: one record with its resource, as a sink receives it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from otel_plugin_logs.conventions import RESOURCE_PLUGIN_NAME
from otel_plugin_logs.export.otlp import Entry, ResourceInfo


@dataclass(slots=True)
class Item:
    """One record on its way to a ``Sink``.

    A sink writing records somewhere reads ``resource`` (the plugin's OTel resource) and
    ``entry`` (the record itself); ``ticket`` belongs to whoever queued the item (the host
    settles it with its runner once the record is exported or dropped) and ``size_bytes`` is
    what the item holds of the queue's memory bound. Items are not changed once queued: the
    queue replaces an item whose record it must cut down (``with_entry``).
    """

    resource: ResourceInfo
    entry: Entry
    ticket: Any = None
    size_bytes: int = 0

    @classmethod
    def of(cls, resource: ResourceInfo, entry: Entry, ticket: Any = None) -> Item:
        """An item sized by its record's own estimate."""
        return cls(resource, entry, ticket, entry.size_estimate())

    def with_entry(self, entry: Entry) -> Item:
        """The same item carrying ``entry`` instead (a record cut down to fit a request)."""
        return Item(self.resource, entry, self.ticket, self.size_bytes)

    @property
    def plugin_name(self) -> str:
        """The plugin the record belongs to, as its resource names it ('' when it does not)."""
        return str(self.resource.attributes.get(RESOURCE_PLUGIN_NAME, ""))


def resource_entry_pairs(items: Sequence[Item]) -> list[tuple[ResourceInfo, Entry]]:
    """What the encoders take: each record with its resource."""
    return [(item.resource, item.entry) for item in items]
