"""Text from a plugin made safe to show and to send: control characters escaped, surrogates scrubbed.

One home for what the runner (its stderr fallback, its wire records) and the host (replayed
records, the console) each need; stdlib only and cheap to import.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final

# C0 and C1 controls, DEL, line/paragraph separators and bidirectional overrides (which can
# make a log line read differently from what it contains).
_ESCAPES: Final = {
    **{code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))},
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
    **{code: f"\\u{code:04x}" for code in (0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))},
}
_ESCAPES_MULTILINE: Final = {code: text for code, text in _ESCAPES.items() if code != 0x0A}


def escape_controls(text: str) -> str:
    """Show control characters instead of executing them; the result is one line."""
    if text.isprintable():
        return text
    return text.translate(_ESCAPES)


def escape_multiline(text: str) -> str:
    """Like ``escape_controls`` but keeps newlines (for stack traces)."""
    if text.isprintable():
        return text
    return text.translate(_ESCAPES_MULTILINE)


def scrub_surrogates(value: Any) -> Any:
    """``value`` with every string made UTF-8 encodable: lone surrogates become backslash escapes.

    Lists and dicts are scrubbed through (a wire record); other values are returned as they are.
    """
    if value.__class__ is str:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [scrub_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {scrub_surrogates(key): scrub_surrogates(item) for key, item in value.items()}
    return value
