"""The CLI's console: a stdlib formatter that shows replayed plugin records well.

This is the host's local replay as the CLI sets it up, with ordinary logging handlers; the
library's replay itself stays handler-agnostic. Colour only on a terminal, never with
``NO_COLOR``; every field a plugin controls goes through ``escape_controls`` so a record is
one line and cannot move the cursor or clear the screen.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import IO, Any, Final

from ._replay import REPLAY_ATTRIBUTE, ReplayedRecord, escape_controls, escape_multiline

_HIDDEN_PREFIXES: Final = ("code.", "thread.", "exception.", "otel_plugin_logs.", "log.")
_LEVEL_COLOURS: Final = {
    "DEBUG": "\x1b[2m",
    "INFO": "\x1b[32m",
    "WARNING": "\x1b[33m",
    "ERROR": "\x1b[31m",
    "CRITICAL": "\x1b[1;41;97m",
}
_PLUGIN_COLOURS: Final = (
    "\x1b[36m",
    "\x1b[35m",
    "\x1b[34m",
    "\x1b[96m",
    "\x1b[95m",
    "\x1b[94m",
    "\x1b[92m",
    "\x1b[93m",
)
_DIM: Final = "\x1b[2m"
_RESET: Final = "\x1b[0m"
_SHORT_LEVELS: Final = {"WARNING": "WARN", "CRITICAL": "CRIT"}


def use_colour(stream: IO[str]) -> bool:
    """Colour when the stream is a terminal and NO_COLOR is not set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


class PluginConsoleFormatter(logging.Formatter):
    """time, level, plugin, logger, message, key attributes, trace id prefix — aligned."""

    def __init__(self, *, colour: bool = False, max_attributes: int = 6, plugin_width: int = 10) -> None:
        super().__init__()
        self.colour = colour
        self.max_attributes = max_attributes
        self.plugin_width = plugin_width
        self._plugin_colours: dict[str, str] = {}

    def format(self, record: logging.LogRecord) -> str:
        info = getattr(record, REPLAY_ATTRIBUTE, None)
        clock = time.strftime("%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"
        level = escape_controls(record.levelname)
        level = _SHORT_LEVELS.get(level, level)[:5]
        if isinstance(info, ReplayedRecord):
            source = info.plugin
            logger = escape_controls(info.logger_name) or "root"
            message = escape_controls(info.body)
            extras = self._attributes(info.attributes)
            trace = f"trace={info.trace_id[:8]}" if info.trace_id else ""
        else:
            source = "host"
            logger = escape_controls(record.name)
            message = escape_controls(record.getMessage())
            extras = ""
            trace = ""
        parts = [
            self._paint(_DIM, clock),
            self._paint(_LEVEL_COLOURS.get(record.levelname, ""), f"{level:<5}"),
            self._paint(self._plugin_colour(source), f"{source[: self.plugin_width]:<{self.plugin_width}}"),
            self._paint(_DIM, logger[:40]),
            message,
        ]
        if extras:
            parts.append(self._paint(_DIM, extras))
        if trace:
            parts.append(self._paint(_DIM, trace))
        line = " ".join(parts)
        stack = record.exc_text if isinstance(info, ReplayedRecord) else None
        if stack is None and record.exc_info:
            stack = self.formatException(record.exc_info)
        if stack:
            gutter = self._paint(_DIM, "    │ ")
            line += "".join(f"\n{gutter}{escape_multiline(text)}" for text in stack.rstrip("\n").split("\n"))
        return line

    def _attributes(self, attributes: Any) -> str:
        shown = []
        for key, value in attributes.items():
            if key.startswith(_HIDDEN_PREFIXES):
                continue
            text = escape_controls(str(value))
            if len(text) > 40:
                text = text[:39] + "…"
            shown.append(f"{escape_controls(key)}={text}")
            if len(shown) >= self.max_attributes:
                break
        return " ".join(shown)

    def _plugin_colour(self, name: str) -> str:
        if name == "host":
            return "\x1b[1m"
        colour = self._plugin_colours.get(name)
        if colour is None:
            colour = _PLUGIN_COLOURS[len(self._plugin_colours) % len(_PLUGIN_COLOURS)]
            self._plugin_colours[name] = colour
        return colour

    def _paint(self, colour: str, text: str) -> str:
        return f"{colour}{text}{_RESET}" if self.colour and colour else text


def install_console(level: int = logging.INFO, stream: IO[str] | None = None) -> logging.Handler:
    """Put a console handler with ``PluginConsoleFormatter`` on the root logger."""
    target = stream or sys.stderr
    handler = logging.StreamHandler(target)
    handler.setFormatter(PluginConsoleFormatter(colour=use_colour(target)))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > level or root.level == logging.NOTSET:
        root.setLevel(level)
    # The SDK's and gRPC's own chatter during an outage is the bridge's business to summarise.
    logging.getLogger("opentelemetry").setLevel(logging.ERROR)
    return handler
