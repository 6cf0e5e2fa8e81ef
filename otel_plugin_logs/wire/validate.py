"""The shapes a host accepts from a runner, checked strictly: the one validation of each frame.

Everything here is input from an untrusted process. pydantic checks shape and types strictly
(no str->int coercion, bounded strings); what is well-typed but unreasonable is clamped later,
by the host, when it builds its records. The field order of ``WireRecord`` is ``records.Rec``'s.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBytes,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from otel_plugin_logs.wire.records import INT64_MAX, INT64_MIN, UINT64_MAX

_Seq = Annotated[StrictInt, Field(ge=1, le=INT64_MAX)]
_Time = Annotated[StrictInt, Field(ge=INT64_MIN, le=UINT64_MAX)]
_Severity = Annotated[StrictInt, Field(ge=0, le=24)]
_Short = Annotated[StrictStr, Field(max_length=256)]
Name = Annotated[StrictStr, Field(max_length=4096)]
_Flags = Annotated[StrictInt, Field(ge=0, le=0xFFFFFFFF)]
Level = Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX)]
_Id = StrictBytes | None
_Exception = tuple[StrictStr, StrictStr, StrictStr] | None

WireRecord = tuple[
    _Seq,
    _Time,
    _Time,
    _Severity,
    _Short,
    StrictStr,
    Name,
    dict[StrictStr, Any],
    _Id,
    _Id,
    _Flags,
    _Exception,
    Level,
]
RECORD: Final = TypeAdapter(WireRecord)
RECORDS: Final = TypeAdapter(list[WireRecord])


class Hello(BaseModel):
    """The first frame of a connection."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    t: StrictStr
    v: StrictInt
    token: Annotated[StrictStr, Field(min_length=1, max_length=512)]
    pid: Annotated[StrictInt, Field(ge=0, le=2**31)]
    stream: Annotated[StrictInt, Field(ge=0, le=INT64_MAX)]
    plugin_version: Annotated[StrictStr, Field(max_length=128)] | None = None
    python: Annotated[StrictStr, Field(max_length=64)] | None = None


class BatchHeader(BaseModel):
    """A batch or bye frame, without its records."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    t: StrictStr
    stream: Annotated[StrictInt, Field(ge=0, le=INT64_MAX)] = 0
    dropped: Annotated[
        dict[Annotated[StrictStr, Field(max_length=64)], Annotated[StrictInt, Field(ge=0)]],
        Field(max_length=32),
    ] = Field(default_factory=dict)
    accepted: Annotated[StrictInt, Field(ge=0, le=INT64_MAX)] = 0
    flushed: Annotated[StrictInt, Field(ge=0, le=INT64_MAX)] = 0
    records: list[Any] = Field(default_factory=list)


def first_error(error: ValidationError) -> str:
    """A one-line reason from a pydantic error, naming the field."""
    detail = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in detail.get("loc", ())) or "frame"
    return f"{where}: {detail.get('msg', 'invalid')}"


def validate_records(raw: list[Any]) -> tuple[list[Any], list[str]]:
    """Valid records, and one reason per invalid record. Fast when all are valid.

    A strict check by hand takes a frame of plain records (what a runner sends); anything it
    does not take, pydantic decides, so the reasons and the records are pydantic's own.
    """
    checked = checked_records(raw)
    if checked is not None:
        return checked, []
    return validated_records(raw)


def validated_records(raw: list[Any]) -> tuple[list[Any], list[str]]:
    """``validate_records`` by pydantic alone: the reference the strict check must agree with."""
    try:
        return RECORDS.validate_python(raw), []
    except ValidationError:
        pass
    valid: list[Any] = []
    reasons: list[str] = []
    for item in raw:
        try:
            valid.append(RECORD.validate_python(item))
        except ValidationError as error:
            reasons.append(first_error(error))
    return valid, reasons


def checked_records(raw: list[Any]) -> list[Any] | None:
    """The records as ``RECORDS`` validates them, when every one is a plain valid record; else None.

    Only exact types pass (no subclasses, no bools for ints): what this accepts, pydantic
    accepts with the same result. None says "let pydantic decide", never "invalid".
    """
    out = []
    for item in raw:
        kind = item.__class__
        if (kind is not list and kind is not tuple) or len(item) != _FIELDS:
            return None
        seq, time_ns, seen_ns, severity, text, body, name, attrs, trace, span, flags, exc, level = item
        if not (
            seq.__class__ is int
            and 1 <= seq <= INT64_MAX
            and time_ns.__class__ is int
            and INT64_MIN <= time_ns <= UINT64_MAX
            and seen_ns.__class__ is int
            and INT64_MIN <= seen_ns <= UINT64_MAX
            and severity.__class__ is int
            and 0 <= severity <= 24
            and text.__class__ is str
            and len(text) <= 256
            and body.__class__ is str
            and name.__class__ is str
            and len(name) <= 4096
            and attrs.__class__ is dict
            and (trace is None or trace.__class__ is bytes)
            and (span is None or span.__class__ is bytes)
            and flags.__class__ is int
            and 0 <= flags <= 0xFFFFFFFF
            and level.__class__ is int
            and INT64_MIN <= level <= INT64_MAX
        ):
            return None
        for key in attrs:
            if key.__class__ is not str:
                return None
        if exc is not None:
            if (exc.__class__ is not list and exc.__class__ is not tuple) or len(exc) != 3:
                return None
            if exc[0].__class__ is not str or exc[1].__class__ is not str or exc[2].__class__ is not str:
                return None
            exc = (exc[0], exc[1], exc[2])
        out.append((seq, time_ns, seen_ns, severity, text, body, name, attrs, trace, span, flags, exc, level))
    return out


_FIELDS: Final = 13
