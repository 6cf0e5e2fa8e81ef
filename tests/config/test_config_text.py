"""Text from a plugin made safe: control characters shown, lone surrogates made encodable."""

from __future__ import annotations

from otel_plugin_logs.config.text import escape_controls, escape_multiline, scrub_surrogates


def test_controls_are_shown_escaped_on_one_line() -> None:
    """Escape sequences, newlines and bidirectional overrides cannot act on a terminal."""
    assert escape_controls("a\x1b[31mb\nc\u202e") == "a\\x1b[31mb\\nc\\u202e"


def test_printable_text_is_returned_as_it_is() -> None:
    """Non-ASCII letters are not escaped."""
    text = "héllo wörld ☃"
    assert escape_controls(text) is text


def test_multiline_keeps_its_newlines() -> None:
    """A stack trace keeps its lines; other controls are still escaped."""
    assert escape_multiline("one\ntwo\x07") == "one\ntwo\\x07"


def test_lone_surrogates_become_backslash_escapes_through_lists_and_dicts() -> None:
    """Every string of a wire record becomes UTF-8 encodable; other values are untouched."""
    scrubbed = scrub_surrogates(["ok", {"k\udcff": ["v\ud800", 3]}, b"\xff"])
    assert scrubbed == ["ok", {"k\\udcff": ["v\\ud800", 3]}, b"\xff"]
