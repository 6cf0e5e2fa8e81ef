"""The console's text of a record's attributes: ``key=value`` pairs, internal keys hidden.

Every key and value goes through ``escape_controls`` and a long value is cut. Records of one
call site have the same keys, and most of their values repeat: which keys are shown per set of
keys, and the text of each scalar pair, are kept once made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from otel_plugin_logs.config.text import escape_controls

HIDDEN_PREFIXES: Final = ("code.", "thread.", "exception.", "otel_plugin_logs.", "log.")
MAX_VALUE_CHARS: Final = 40
_MAX_CACHED: Final = 4096


class AttributeTexts:
    """The attribute texts of one console formatter (``ellipsis`` marks a value cut short)."""

    __slots__ = ("_pairs", "_shown_keys", "ellipsis")

    def __init__(self, ellipsis: str) -> None:
        self.ellipsis = ellipsis
        self._shown_keys: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._pairs: dict[tuple[str, type, Any], str] = {}

    def text(self, attributes: Mapping[str, Any], max_attributes: int) -> str:
        """The first ``max_attributes`` shown pairs, made afresh (for records seen once)."""
        shown = []
        for key, value in attributes.items():
            if key.startswith(HIDDEN_PREFIXES):
                continue
            shown.append(self.pair(key, value))
            if len(shown) >= max_attributes:
                break
        return " ".join(shown)

    def cached_text(self, attributes: Mapping[str, Any], max_attributes: int) -> str:
        """``text``'s result, from the kept shown keys and scalar pairs' texts."""
        keys = tuple(attributes)  # records of one call site have the same keys, in the same order
        shown_keys = self._shown_keys.get(keys)
        if shown_keys is None:
            shown_keys = tuple(key for key in keys if not key.startswith(HIDDEN_PREFIXES))
            shown_keys = shown_keys[:max_attributes]
            if len(self._shown_keys) >= _MAX_CACHED:
                self._shown_keys.clear()
            self._shown_keys[keys] = shown_keys
        if not shown_keys:
            return ""
        pairs = self._pairs
        shown = []
        for key in shown_keys:
            value = attributes[key]
            kind = value.__class__
            if kind is str or kind is int or kind is float or kind is bool:
                pair_key = (key, kind, value)  # the class too: True, 1 and 1.0 are one dict key
                text = pairs.get(pair_key)
                if text is None:
                    text = self.pair(key, value)
                    if len(pairs) >= _MAX_CACHED:
                        pairs.clear()
                    pairs[pair_key] = text
            else:
                text = self.pair(key, value)
            shown.append(text)
        return " ".join(shown)

    def pair(self, key: str, value: Any) -> str:
        """``key=value``, escaped, the value cut to ``MAX_VALUE_CHARS``."""
        text = escape_controls(str(value))
        if len(text) > MAX_VALUE_CHARS:
            text = text[: MAX_VALUE_CHARS - 1] + self.ellipsis
        return f"{escape_controls(key)}={text}"
