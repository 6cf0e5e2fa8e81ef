"""Filters of ``otel-plugin-logs logs``: levels, times, and what a record must match."""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from otel_plugin_logs.cli.logs_read import SinkRecord
from otel_plugin_logs.wire.records import EXCEPTION_STACKTRACE

_SEVERITIES: Final = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "WARNING": 13, "ERROR": 17}
_SEVERITIES_HIGH: Final = {"FATAL": 21, "CRITICAL": 21}
_DURATION: Final = re.compile(r"^(?P<amount>[0-9]+(?:\.[0-9]+)?)(?P<unit>ms|s|m|h|d)$")
_PLAIN: Final = re.compile(r"[A-Za-z0-9 _.,:;=+*#@!?%$~^|()\[\]{}'`/-]+")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_severity(text: str) -> int:
    """A level name (stdlib or OTel) or an OTel severity number 1..24."""
    cleaned = text.strip().upper()
    if cleaned.isdigit() and 1 <= int(cleaned) <= 24:
        return int(cleaned)
    number = _SEVERITIES.get(cleaned) or _SEVERITIES_HIGH.get(cleaned)
    if number is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a level: use TRACE, DEBUG, INFO, WARNING, ERROR, CRITICAL or 1..24"
        )
    return number


def parse_time(text: str, now_seconds: float | None = None) -> float:
    """A duration back from now (``90s``, ``10m``, ``2h``, ``1d``) or an ISO 8601 time; epoch seconds."""
    cleaned = text.strip()
    match = _DURATION.match(cleaned)
    if match:
        now = time.time() if now_seconds is None else now_seconds
        return now - float(match.group("amount")) * _UNIT_SECONDS[match.group("unit")]
    try:
        return datetime.fromisoformat(cleaned).timestamp()  # a time without offset is local time
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration (30s, 10m, 2h, 1d) nor a time (2026-12-01T16:05:00)"
        ) from None


def positive_lines(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of records >= 0")
    return int(text)


@dataclass(slots=True)
class Filter:
    plugins: frozenset[str] = frozenset()
    min_severity: int = 0
    since_nanos: int | None = None
    until_nanos: int | None = None
    trace_prefix: str = ""
    text: str = ""
    ignore_case: bool = False
    logger_prefix: str = ""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Filter:
        grep = args.grep or ""
        return cls(
            plugins=frozenset(args.plugin),
            min_severity=args.level or 0,
            since_nanos=None if args.since is None else int(args.since * 1e9),
            until_nanos=None if args.until is None else int(args.until * 1e9),
            trace_prefix=(args.trace or "").strip().lower(),
            text=grep.lower() if grep.islower() else grep,
            ignore_case=grep.islower(),
            logger_prefix=args.logger or "",
        )

    def matches(self, record: SinkRecord) -> bool:
        if self.plugins and record.plugin not in self.plugins:
            return False
        if record.severity_number < self.min_severity:
            return False
        if self.since_nanos is not None and record.time_unix_nano < self.since_nanos:
            return False
        if self.until_nanos is not None and record.time_unix_nano >= self.until_nanos:
            return False
        if self.trace_prefix and not record.trace_id.lower().startswith(self.trace_prefix):
            return False
        if self.logger_prefix and not _under(record.scope, self.logger_prefix):
            return False
        return not self.text or self._text_matches(record)

    def line_test(self) -> Callable[[bytes], bool] | None:
        """A cheap test on a raw sink line, False only when no record of it can match; or None.

        Whatever wrote the line, a string holding only plain ASCII characters appears in it as
        they are: a line without the plugin's name or the text is not worth parsing.
        """
        names = [name.encode() for name in self.plugins]
        if not all(map(_plain, self.plugins)):
            names = []
        text = self.text.encode() if _plain(self.text) else b""
        if not names and not text:
            return None
        lower = self.ignore_case

        def may_match(line: bytes) -> bool:
            if names and not any(name in line for name in names):
                return False
            if not text:
                return True
            if lower:
                return not line.isascii() or text in line.lower()
            return text in line

        return may_match

    def _text_matches(self, record: SinkRecord) -> bool:
        stack = record.attributes.get(EXCEPTION_STACKTRACE)
        haystack = record.body if not isinstance(stack, str) else f"{record.body}\n{stack}"
        return self.text in (haystack.lower() if self.ignore_case else haystack)


def _plain(text: str) -> bool:
    """Characters no JSON writer escapes (Go's escapes <, > and &; some escape all non-ASCII)."""
    return bool(text) and _PLAIN.fullmatch(text) is not None


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix.rstrip(".") + ".")
