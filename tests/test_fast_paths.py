"""The host's fast paths change costs, not results: lazy replay hands logging the same records, the
batch cutter's sizes still bound the real encoding."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator

import pytest
from helpers import CaptureHandler
from hypothesis import example, given, settings
from hypothesis import strategies as st

from otel_plugin_logs.export.batching import encoded_bytes, fit_record, resource_bytes
from otel_plugin_logs.export.model import Entry, new_entry
from otel_plugin_logs.export.otlp import ResourceInfo, encode_request
from otel_plugin_logs.host.entries import Limits, build_entry
from otel_plugin_logs.host.replay import Replayer

OTEL = {"plugin": "lazy", "plugin_version": None, "runner_pid": 7, "resource": {}}


def _replay(replayer: Replayer, level: int, logger: str = "app") -> bool:
    now = time.time_ns()
    entry = new_entry(
        seq=1,
        time=now,
        observed_time=now,
        severity_number=9,
        severity_text=logging.getLevelName(level),
        body="hello",
        scope=logger,
        attributes={},
        trace_id=None,
        span_id=None,
        flags=0,
    )
    return replayer.replay(entry, level, None, OTEL)


@pytest.fixture
def last_resort() -> Iterator[io.StringIO]:
    """logging.lastResort writing to a buffer, restored afterwards."""
    saved = logging.lastResort
    stream = io.StringIO()
    logging.lastResort = logging.StreamHandler(stream)
    logging.lastResort.setLevel(logging.WARNING)
    try:
        yield stream
    finally:
        logging.lastResort = saved


def test_a_record_no_handler_would_take_is_not_replayed() -> None:
    """Handlers on the way up all above the record's level: replay says no, and no handler sees anything."""
    capture = CaptureHandler()
    capture.setLevel(logging.WARNING)
    base = logging.getLogger("lazyA")
    base.handlers[:] = [capture]
    base.propagate = False
    base.setLevel(logging.DEBUG)
    replayer = Replayer("lazyA", "p")
    assert _replay(replayer, logging.INFO) is False
    assert _replay(replayer, logging.ERROR) is True
    assert [r.levelno for r in capture.records] == [logging.ERROR]


def test_a_handler_above_the_plugins_loggers_still_gets_its_records() -> None:
    """A handler on the root logger takes records of the plugin's loggers, which propagate to it."""
    capture = CaptureHandler()
    logging.getLogger().addHandler(capture)
    logging.getLogger("lazyB").setLevel(logging.DEBUG)
    replayer = Replayer("lazyB", "p")
    assert _replay(replayer, logging.DEBUG, logger="deep.er") is True
    assert [r.name for r in capture.records] == ["lazyB.p.deep.er"]


def test_without_any_handler_last_resort_still_shows_warnings(last_resort: io.StringIO) -> None:
    """No handler on the chain: logging's last resort takes WARNING and above, as it would without the fast path."""
    base = logging.getLogger("lazyC")
    base.propagate = False
    base.setLevel(logging.DEBUG)
    replayer = Replayer("lazyC", "p")
    assert _replay(replayer, logging.INFO) is False
    assert _replay(replayer, logging.WARNING) is True
    assert last_resort.getvalue() == "hello\n"


def test_a_filter_on_the_logger_still_sees_every_record() -> None:
    """A filter on the target logger may count what it sees: records are built for it even with no handler."""
    seen: list[int] = []
    base = logging.getLogger("lazyD")
    base.propagate = False
    base.setLevel(logging.DEBUG)
    replayer = Replayer("lazyD", "p")
    replayer.base.addFilter(lambda record: seen.append(record.levelno) or False)
    assert _replay(replayer, logging.INFO, logger="") is True
    assert seen == [logging.INFO]


_values = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=40)
_values |= (
    st.binary(max_size=20)
    | st.lists(_values, max_size=3)
    | st.dictionaries(st.text(max_size=5), _values, max_size=3)
)
RESOURCE = ResourceInfo({"service.name": "bound", "plugin.name": "bound"})


def _random_entry(body: str, attributes: dict, scope: str, traced: bool) -> Entry:
    now = time.time_ns()
    entry = new_entry(
        seq=3,
        time=now,
        observed_time=now,
        severity_number=9,
        severity_text="INFO",
        body=body,
        scope=scope,
        attributes=attributes,
        trace_id=b"\x01" * 16 if traced else None,
        span_id=b"\x02" * 8 if traced else None,
        flags=1 if traced else 0,
    )
    entry.uid = "0123456789abcdef0123456789abcdef"
    return entry


_entries = {
    "body": st.text(max_size=200),
    "attributes": st.dictionaries(st.text(min_size=1, max_size=20), _values, max_size=8),
    "scope": st.text(max_size=20),
    "traced": st.booleans(),
}


@example(body="0" * 6 + "\U00010000" * 30, attributes={}, scope="0", traced=True)
@settings(max_examples=200, deadline=None)
@given(**_entries)
def test_encoded_bytes_bounds_the_real_encoding(
    body: str, attributes: dict, scope: str, traced: bool
) -> None:
    """The batch cutter's per-record size is never below what encode_request really writes for the record."""
    entry = _random_entry(body, attributes, scope, traced)
    assert encoded_bytes(entry) + resource_bytes(RESOURCE) >= len(encode_request([(RESOURCE, entry)]))


def test_a_record_cut_to_fit_keeps_its_uid_and_event_name() -> None:
    """fit_record's smaller copy is the same record: same log.record.uid and event name."""
    now = time.time_ns()
    entry = new_entry(
        seq=4,
        time=now,
        observed_time=now,
        severity_number=9,
        severity_text="INFO",
        body="x" * 100_000,
        scope="big",
        attributes={"k": "v" * 50_000},
        trace_id=None,
        span_id=None,
        flags=0,
        event_name="big.record",
    )
    entry.uid = "0123456789abcdef0123456789abcdef"
    cut = fit_record(entry, 4096)
    assert encoded_bytes(cut) <= 4096
    assert (cut.uid, cut.event_name) == (entry.uid, entry.event_name)


_plain_values = (
    st.text(max_size=30)
    | st.integers(-(2**63), 2**63 - 1)
    | st.integers(-(2**70), 2**70)
    | st.booleans()
    | st.floats()
)


@settings(max_examples=200, deadline=None)
@given(
    attributes=st.dictionaries(st.text(max_size=300).filter(lambda k: k != "big"), _plain_values, max_size=10)
)
def test_attributes_that_need_no_cleaning_come_out_as_the_cleaning_path_makes_them(attributes: dict) -> None:
    """A record's attributes without one that needs cleaning are built just as with it (the cleaning path)."""
    now = time.time_ns()
    limits = Limits(65536, 4096, 128)

    def built(raw: dict) -> dict:
        record = (1, now, now, 9, "INFO", "body", "app", raw, None, None, 0, None, 20)
        return build_entry(record, limits, now)[0].attributes

    plain = built(dict(attributes))
    cleaned = built({"big": 2**64, **attributes})  # beyond int64: sent on as text
    assert cleaned.pop("big") == str(2**64)
    assert list(plain.items()) == list(cleaned.items())
    assert [type(v) for v in plain.values()] == [type(v) for v in cleaned.values()]


def _made(replayer: Replayer, attributes: dict) -> logging.LogRecord:
    now = time.time_ns()
    entry = new_entry(
        seq=1,
        time=now,
        observed_time=now,
        severity_number=9,
        severity_text="INFO",
        body="hello",
        scope="app",
        attributes=attributes,
        trace_id=None,
        span_id=None,
        flags=0,
    )
    return replayer.make_record("site.p.app", entry, logging.INFO, None, OTEL)


def test_records_of_one_call_site_get_the_fields_a_fresh_replayer_gives() -> None:
    """The second record of a call site (its fields copied from the first) equals one a fresh replayer makes."""
    site = {"code.file.path": "/srv/app/jobs.py", "code.line.number": 12, "code.function.name": "run"}
    warm = Replayer("site", "p")
    _made(warm, dict(site))
    second = _made(warm, dict(site)).__dict__
    fresh = _made(Replayer("site", "p"), dict(site)).__dict__
    for fields in (second, fresh):
        del fields["otel"], fields["created"], fields["msecs"], fields["relativeCreated"]
    assert list(second.items()) == list(fresh.items())


def test_a_call_site_is_not_mistaken_for_one_with_equal_but_other_typed_values() -> None:
    """A line number or thread id of True or 1.0 does not take the fields of 1, nor list values fail."""
    replayer = Replayer("site", "q")
    assert _made(replayer, {"code.line.number": 1, "thread.id": 1}).lineno == 1
    odd = _made(replayer, {"code.line.number": True, "thread.id": 1.0})
    assert (odd.lineno, odd.thread) == (0, None)
    listed = _made(replayer, {"code.function.name": ["a"], "thread.name": {"b": 1}})
    assert (listed.funcName, listed.threadName) == ("", None)


def test_a_batch_replayed_at_once_reaches_the_handlers_one_by_one_replay_reaches() -> None:
    """replay_all (targets decided once per batch) hands logging the records, in order, that replay does."""
    now = time.time_ns()
    levels = [logging.INFO, logging.WARNING, logging.INFO, logging.ERROR, logging.DEBUG]
    batch = [
        (
            new_entry(
                seq=seq,
                time=now,
                observed_time=now,
                severity_number=9,
                severity_text=logging.getLevelName(level),
                body=f"record {seq}",
                scope=("app", "app.db")[seq % 2],
                attributes={"code.line.number": seq},
                trace_id=None,
                span_id=None,
                flags=0,
            ),
            level,
            None,
        )
        for seq, level in enumerate(levels, 1)
    ]
    seen: dict[str, list[tuple[str, int, str]]] = {}
    counts = []
    for name, replay_batch in (
        ("one", lambda r: sum(r.replay(e, lv, trace, OTEL) for e, lv, trace in batch)),
        ("all", lambda r: r.replay_all(batch, OTEL)),
    ):
        capture = CaptureHandler()
        capture.setLevel(logging.WARNING)
        base = logging.getLogger(f"batch{name}")
        base.handlers[:] = [capture]
        base.propagate = False
        base.setLevel(logging.DEBUG)
        logging.getLogger(f"batch{name}.p.app.db").setLevel(logging.ERROR)
        counts.append(replay_batch(Replayer(f"batch{name}", "p")))
        seen[name] = [(r.name.split(".", 1)[1], r.levelno, r.getMessage()) for r in capture.records]
    assert counts == [2, 2]
    expected = [("p.app", logging.WARNING, "record 2"), ("p.app", logging.ERROR, "record 4")]
    assert seen["one"] == seen["all"] == expected
