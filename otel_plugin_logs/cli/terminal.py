"""What the CLI's output stream can take: colour, a live status line, the console's marks.

Colour only on a terminal, never with ``NO_COLOR``. ``PYTHONIOENCODING=ascii`` (or a C
locale) makes stdout refuse ``✓``: the CLI then writes ASCII marks, and plugin text it cannot
encode is escaped instead of raising.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import astuple, dataclass
from typing import IO, Final

_CLEAR_LINE: Final = "\r\x1b[K"


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


def is_terminal(stream: IO[str]) -> bool:
    """True when the stream is an interactive terminal that understands escape codes."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"
    except ValueError:  # a closed stream
        return False


def use_colour(stream: IO[str]) -> bool:
    """Colour when the stream is a terminal and NO_COLOR is not set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    return is_terminal(stream)


class StatusLine:
    """One live line at the bottom of a terminal (progress), redrawn around log lines.

    Inactive unless the stream is a terminal: a file or a pipe never gets ``\\r`` or escape
    codes. The console handler clears it before writing a record and draws it again after.
    """

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.active = is_terminal(stream)
        self.lock = threading.RLock()
        self._text = ""

    def update(self, text: str) -> None:
        if not self.active:
            return
        with self.lock:
            self._text = text
            self._write(_CLEAR_LINE + text)

    def clear(self) -> None:
        """Remove the line for good (before a summary is printed)."""
        if not self.active:
            return
        with self.lock:
            self._text = ""
            self._write(_CLEAR_LINE)

    def hide(self) -> None:
        if self.active and self._text:
            self._write(_CLEAR_LINE)

    def show(self) -> None:
        if self.active and self._text:
            self._write(self._text)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.active = False
