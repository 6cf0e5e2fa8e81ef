"""The console's own marks, and output streams that cannot raise on what they cannot encode.

``PYTHONIOENCODING=ascii`` (or a C locale) makes stdout refuse ``✓``: the CLI then writes
ASCII marks, and plugin text it cannot encode is escaped instead of raising.
"""

from __future__ import annotations

import contextlib
from dataclasses import astuple, dataclass
from typing import IO, Final


@dataclass(frozen=True, slots=True)
class Symbols:
    """The console's own marks; ASCII ones for a stream that cannot encode the others."""

    ellipsis: str
    gutter: str
    check: str
    cross: str
    rule: str
    play: str


UNICODE_SYMBOLS: Final = Symbols(ellipsis="…", gutter="    │ ", check="✓", cross="✗", rule="─", play="▶")
ASCII_SYMBOLS: Final = Symbols(
    ellipsis="...", gutter="    | ", check="ok:", cross="FAILED:", rule="-", play=">"
)


def symbols_for(stream: IO[str]) -> Symbols:
    """Unicode marks when the stream's encoding has them (PYTHONIOENCODING=ascii has not)."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        "".join(astuple(UNICODE_SYMBOLS)).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return ASCII_SYMBOLS
    return UNICODE_SYMBOLS


def safe_output(stream: IO[str]) -> IO[str]:
    """The stream, made to escape what its encoding cannot write instead of raising."""
    reconfigure = getattr(stream, "reconfigure", None)
    if symbols_for(stream) is ASCII_SYMBOLS and reconfigure is not None:
        # A closed or detached stream is left as it is.
        with contextlib.suppress(ValueError, OSError):
            reconfigure(errors="backslashreplace")
    return stream
