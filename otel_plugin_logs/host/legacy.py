"""Host side of the seed runtime's payload: ``{"entries": [{timestamp_ms, level, ...}]}``.

A plugin runtime that already ships its runners' logs as ``runner.log_batch`` events can hand
those payloads to ``HostLogBridge.handle_legacy_batch`` and get them replayed and exported
without touching a runner. The entries are validated here (strictly, like frames), turned into
wire records with sequence numbers the host assigns, and fed to ``handle_batch``: the same
ingest, rate limit, replay, export and accounting as every other record.

What the old payload cannot carry stays absent: no trace context, no typed attributes, no
source location; its runner reports no drops, so records it lost never reach any count.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from otel_plugin_logs.host.entries import LegacyBatch, LegacyEntry, validate_legacy_entries
from otel_plugin_logs.wire.framing import ProtocolError, unpack_bounded
from otel_plugin_logs.wire.messages import BATCH, BYE
from otel_plugin_logs.wire.validate import first_error

# The seed handler forwards loggers named ``plugin.<name>...``: their own plugin prefix is
# dropped so that the replay (``plugin.<name>.<logger>``) does not say it twice.
SEED_LOGGER_PREFIX: Final = "plugin."
INVALID_ENTRY: Final = "invalid_entry"
MAX_LEGACY_STREAMS: Final = 4096
_LAST_LINE_CHARS: Final = 4096
_EXCEPTION_LINE: Final = re.compile(r"([A-Za-z_][A-Za-z0-9_.]{0,255})(?:: (.*))?")

HandleBatch = Callable[..., int]
CountBadInput = Callable[[str, str, int, str], None]


@dataclass(frozen=True, slots=True)
class LegacyBatchResult:
    """What became of one seed-style payload.

    ``records``: entries taken in (replayed and exported like any record, or counted);
    ``rejected``: invalid entries refused, counted in the plugin's ``bad_input`` under
    ``invalid_entry``; ``reason``: why the first of them was refused ("" when none);
    ``settled``: the host-assigned sequence number up to which this runner's records are
    exported or counted.
    """

    records: int
    rejected: int
    reason: str
    settled: int


@dataclass(frozen=True, slots=True)
class ParsedLegacyBatch:
    """The valid entries of a payload, and one reason per entry refused."""

    entries: list[LegacyEntry]
    reasons: list[str]


@dataclass(slots=True)
class _LegacyStream:
    """The host-side sequence of one legacy runner (one plugin, one pid)."""

    stream_id: int
    last_seq: int
    lock: threading.Lock
    ended: bool = False  # said final: a batch still waiting for the lock goes to a new stream


class LegacyIngest:
    """Turns seed-style payloads into batches for ``handle_batch``; one per bridge.

    Sequence numbers are assigned under the runner's own lock and its batch is ingested
    before the lock is released: two batches of one runner handed over concurrently cannot
    arrive out of order (the later one would make the bridge discard the earlier as resent).
    """

    def __init__(
        self, handle_batch: HandleBatch, count_bad_input: CountBadInput, max_frame_bytes: int
    ) -> None:
        self._handle_batch = handle_batch
        self._count_bad_input = count_bad_input
        self._max_frame_bytes = max_frame_bytes
        self._lock = threading.Lock()
        self._streams: OrderedDict[tuple[str, int], _LegacyStream] = OrderedDict()

    def take(
        self, plugin: str, payload: bytes | str | Mapping[str, Any], pid: int | None, final: bool
    ) -> LegacyBatchResult:
        try:
            parsed = parse_legacy_batch(payload, self._max_frame_bytes)
        except ProtocolError as error:
            self._count_bad_input(plugin, error.reason, 1, error.detail)
            raise
        entries, reasons = parsed.entries, parsed.reasons
        if reasons:
            self._count_bad_input(plugin, INVALID_ENTRY, len(reasons), reasons[0])
        key = (plugin, pid or 0)
        while True:
            stream = self._stream(key)
            with stream.lock:
                if stream.ended:
                    continue
                first = stream.last_seq + 1
                now_ns = time.time_ns()
                records = [to_wire_record(first + i, e, plugin, now_ns) for i, e in enumerate(entries)]
                stream.last_seq += len(records)
                message = {
                    "t": BYE if final else BATCH,
                    "stream": stream.stream_id,
                    "accepted": stream.last_seq,
                    "records": records,
                }
                if final:
                    stream.ended = True
                    with self._lock:
                        if self._streams.get(key) is stream:
                            del self._streams[key]
                settled = self._handle_batch(plugin, message, pid=pid)
            return LegacyBatchResult(len(records), len(reasons), reasons[0] if reasons else "", settled)

    def _stream(self, key: tuple[str, int]) -> _LegacyStream:
        with self._lock:
            stream = self._streams.get(key)
            if stream is not None:
                self._streams.move_to_end(key)
            else:
                # Random like a runner's own stream id: a legacy runner's records cannot be
                # taken for resends of another stream of the same plugin.
                stream = self._streams[key] = _LegacyStream(secrets.randbits(63), 0, threading.Lock())
                while len(self._streams) > MAX_LEGACY_STREAMS:
                    self._streams.popitem(last=False)  # a runtime that never says final=True
            return stream


def parse_legacy_batch(payload: bytes | str | Mapping[str, Any], max_frame_bytes: int) -> ParsedLegacyBatch:
    """The valid entries of a payload and one reason per invalid entry.

    Raises ``ProtocolError`` (``frame_too_large``, ``malformed``, ``malformed_batch``: the
    reasons a frame gets) when the payload as a whole is not a seed-style batch.
    """
    message = _decode(payload, max_frame_bytes)
    if not isinstance(message, Mapping):
        raise ProtocolError(
            "malformed_batch", f"a legacy batch is a map with 'entries', got {_kind(message)}"
        )
    try:
        batch = LegacyBatch.model_validate(message)
    except ValidationError as error:
        raise ProtocolError("malformed_batch", first_error(error)) from None
    valid, reasons = validate_legacy_entries(batch.entries)
    total_chars = sum(len(e.message) + len(e.exception_text or "") + len(e.logger_name) for _, e in valid)
    if total_chars > max_frame_bytes:
        raise ProtocolError("frame_too_large", f"entries of {total_chars} characters > max {max_frame_bytes}")
    levels: dict[str, int] | None = None
    entries: list[LegacyEntry] = []
    for index, entry in valid:
        if isinstance(entry.level, str):
            levels = levels if levels is not None else logging.getLevelNamesMapping()
            if entry.level.upper() not in levels:
                reasons.append(f"entries.{index}.level: unknown level name {entry.level[:32]!r}")
                continue
        entries.append(entry)
    return ParsedLegacyBatch(entries, reasons)


def to_wire_record(seq: int, entry: LegacyEntry, plugin: str, now_ns: int) -> list[Any]:
    """A wire record (``Rec`` layout) from a validated entry; ``build_entry`` does the rest."""
    level = entry.level
    levelno = logging.getLevelNamesMapping()[level.upper()] if isinstance(level, str) else level
    body = entry.message
    exception = None
    text = entry.exception_text
    if text and text.strip():
        # The seed renders with Formatter.format, which appends the traceback to the message.
        if body.endswith(text) and len(body) > len(text):
            body = body[: -len(text)].rstrip("\n")
        kind, message = _exception_line(text)
        exception = [kind, message, text]
    return [
        seq,
        entry.timestamp_ms * 1_000_000,
        now_ns,
        0,  # severity number and text: derived from the stdlib level by build_entry
        "",
        body,
        _own_logger_name(entry.logger_name, plugin),
        {},
        None,
        None,
        0,
        exception,
        levelno,
    ]


def _own_logger_name(name: str, plugin: str) -> str:
    own = SEED_LOGGER_PREFIX + plugin
    if name == own:
        return "root"
    if name.startswith(own + "."):
        return name[len(own) + 1 :]
    return name  # the replay keeps it under plugin.<name> anyway


def _exception_line(text: str) -> tuple[str, str]:
    """Type and message from a formatted traceback's last line (``pkg.Error: message``)."""
    last = text.rstrip()[-_LAST_LINE_CHARS:].rsplit("\n", 1)[-1].strip()
    match = _EXCEPTION_LINE.fullmatch(last)
    if match is None:
        return "", ""
    return match.group(1), match.group(2) or ""


def _decode(payload: object, max_frame_bytes: int) -> Any:  # typed loosely: callers pass anything
    if isinstance(payload, Mapping):
        return payload
    if isinstance(payload, bytearray | memoryview):
        payload = bytes(payload)
    if not isinstance(payload, bytes | str):
        return payload  # already decoded by the runtime's channel: the shape check says what is wrong
    if len(payload) > max_frame_bytes:
        raise ProtocolError("frame_too_large", f"payload of {len(payload)} > max {max_frame_bytes}")
    try:
        # msgpack never starts a map with "{" or "[" (those are small positive ints there).
        if isinstance(payload, str) or payload[:64].lstrip()[:1] in (b"{", b"["):
            return json.loads(payload)
        return unpack_bounded(payload, max_frame_bytes)
    except Exception as error:
        # json and msgpack raise several unrelated types (ValueError, RecursionError,
        # StackError, TypeError for unhashable keys); to the caller they are all one thing.
        raise ProtocolError(
            "malformed", f"not JSON or msgpack: {type(error).__name__}: {str(error)[:200]}"
        ) from None


def _kind(value: object) -> str:
    return type(value).__name__
