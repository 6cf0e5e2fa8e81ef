"""The typed ledger of streams, tickets and gaps, without I/O: its hooks are plain callables."""

from __future__ import annotations

from otel_plugin_logs.config.fields import resolve
from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.export.otlp import ResourceInfo
from otel_plugin_logs.host.ledger import Ledger
from otel_plugin_logs.host.streams import (
    DROP_GAP,
    DROP_UNSENT_AT_EXIT,
    Registration,
    SavedStream,
    Stream,
    StreamKey,
    Ticket,
)

DIGEST = "d" * 64
RESOURCE = ResourceInfo({"service.name": "p"})


class Hooks:
    """What the ledger asks of the outside world, recorded."""

    def __init__(self, unsent: int = 0) -> None:
        self.retired: list[StreamKey] = []
        self.unsent = unsent
        self.asked: list[str] = []

    def on_retired(self, stream: Stream) -> None:
        self.retired.append(stream.key)

    def take_unsent(self, digest: str) -> int:
        self.asked.append(digest)
        return self.unsent


def make_ledger(hooks: Hooks | None = None, **settings: object) -> Ledger:
    config, _ = resolve(HostConfig, dict(settings), {})
    hooks = hooks or Hooks()
    return Ledger(config, on_retired=hooks.on_retired, take_unsent_at_exit=hooks.take_unsent)


def open_runner_stream(ledger: Ledger, stream_id: int = 0) -> Stream:
    ledger.register(Registration("p", None, DIGEST, pid=100))
    return ledger.open_stream(ledger.plugin("p"), StreamKey(stream_id, DIGEST), RESOURCE, 100)


def queue(stream: Stream, last_seq: int, pending: int) -> Ticket:
    ticket = Ticket(stream, last_seq, pending)
    stream.tickets.append(ticket)
    stream.high = stream.accepted = max(stream.accepted, last_seq)
    return ticket


def test_stream_keys_are_values() -> None:
    """Two keys of the same identity and stream id are equal and hash alike."""
    assert StreamKey(3, DIGEST) == StreamKey(3, DIGEST)
    assert len({StreamKey(3, DIGEST), StreamKey(3, DIGEST), StreamKey(3)}) == 2


def test_a_stream_key_round_trips_through_its_registry_name() -> None:
    """The registry's ``<digest>:<id>`` name gives the same key back."""
    key = StreamKey(12, DIGEST)
    assert key.registry_key() == f"{DIGEST}:12"
    assert StreamKey.from_registry_key(key.registry_key()) == key


def test_registry_names_of_rpc_streams_and_garbage_are_no_keys() -> None:
    """An ``rpc:`` name or one without a numeric id is not taken back from a registry."""
    assert StreamKey.from_registry_key("rpc:1") is None
    assert StreamKey.from_registry_key(f"{DIGEST}:x") is None
    assert StreamKey.from_registry_key("nocolon") is None


def test_the_record_uid_prefix_is_stable_per_stream() -> None:
    """The uid prefix depends on the plugin, the identity and the stream id only."""
    assert StreamKey(1, DIGEST).record_uid_prefix("p") == StreamKey(1, DIGEST).record_uid_prefix("p")
    assert StreamKey(1, DIGEST).record_uid_prefix("p") != StreamKey(2, DIGEST).record_uid_prefix("p")
    assert len(StreamKey(1).record_uid_prefix("p")) == 16


def test_a_stream_starts_where_an_earlier_host_left_it() -> None:
    """A saved stream's acked position becomes the new stream's base and settled position."""
    ledger = make_ledger()
    ledger.saved[StreamKey(0, DIGEST)] = SavedStream(acked=40, dropped={"runner_queue_full": 2}, in_doubt=45)
    stream = open_runner_stream(ledger)
    assert (stream.base, stream.settled, stream.in_doubt) == (40, 40, 45)
    assert stream.base_dropped == {"runner_queue_full": 2}


def test_settled_advances_only_past_finished_tickets_in_order() -> None:
    """A later ticket that is done does not settle past an earlier one still pending."""
    ledger = make_ledger()
    stream = open_runner_stream(ledger)
    first = queue(stream, 5, 1)
    queue(stream, 9, 0)
    ledger.advance(stream)
    assert stream.settled == 0
    first.pending = 0
    ledger.advance(stream)
    assert stream.settled == 9


def test_acks_are_due_once_per_settled_position() -> None:
    """A connected stream whose settled position moved is due one ack, then none."""
    ledger = make_ledger()
    stream = open_runner_stream(ledger)
    stream.conn = FakePeer()
    queue(stream, 3, 0)
    ledger.advance(stream)
    assert ledger.acks_due() == [(stream, 3)]
    assert ledger.acks_due() == []


def test_missing_sequence_numbers_count_as_gap_once() -> None:
    """Records announced but neither received nor reported dropped are counted as gap, once."""
    ledger = make_ledger()
    stream = open_runner_stream(ledger)
    stream.accepted = 10
    stream.received = 7
    ledger.check_gap(stream, final=True)
    ledger.check_gap(stream, final=True)
    assert stream.plugin.counters.host_dropped[DROP_GAP] == 3


def test_runner_drop_claims_are_clamped_to_what_it_can_have_dropped() -> None:
    """A runner claiming more drops than records it did not send is held to that number."""
    ledger = make_ledger()
    stream = open_runner_stream(ledger)
    stream.accepted = 10
    stream.received = 4
    ledger.take_runner_drops(stream, {"runner_queue_full": 2**64 - 1})
    assert stream.runner_dropped == {"runner_queue_full": 6}


def test_a_finished_settled_stream_is_retired_into_its_plugin() -> None:
    """Once finished with nothing pending, a stream is folded into the plugin's counters and forgotten."""
    hooks = Hooks()
    ledger = make_ledger(hooks)
    stream = open_runner_stream(ledger)
    stream.accepted = stream.received = 5
    ledger.finish(stream)
    assert ledger.plugin("p").streams == {}
    assert ledger.plugin("p").counters.retired_emitted == 5
    assert hooks.retired == [StreamKey(0, DIGEST)]


def test_a_finished_stream_with_pending_records_waits_for_them() -> None:
    """A finished stream is kept while a ticket is pending, and retired once it settles."""
    ledger = make_ledger()
    stream = open_runner_stream(ledger)
    ticket = queue(stream, 2, 1)
    ledger.finish(stream)
    assert stream.key in ledger.plugin("p").streams
    ticket.pending = 0
    ledger.advance(stream)
    assert stream.key not in ledger.plugin("p").streams


def test_an_ended_identity_is_released_with_what_it_never_sent() -> None:
    """Releasing an ended identity counts its unsent records as emitted and dropped."""
    hooks = Hooks(unsent=4)
    ledger = make_ledger(hooks)
    ledger.register(Registration("p", None, DIGEST, pid=100))
    ledger.end_registration(DIGEST)
    ledger.release_registration(DIGEST)
    counters = ledger.plugin("p").counters
    assert DIGEST not in ledger.registrations
    assert (counters.retired_emitted, counters.host_dropped[DROP_UNSENT_AT_EXIT]) == (4, 4)
    assert hooks.asked == [DIGEST]


def test_an_identity_with_a_live_stream_is_kept() -> None:
    """An ended identity is not forgotten while one of its streams is still there."""
    ledger = make_ledger()
    open_runner_stream(ledger)
    ledger.end_registration(DIGEST)
    ledger.release_registration(DIGEST)
    assert DIGEST in ledger.registrations


def test_a_retired_rpc_stream_remembers_where_it_settled() -> None:
    """A host-RPC stream that said bye keeps its settled position for a retried bye."""
    ledger = make_ledger()
    stream = ledger.open_stream(ledger.plugin("p"), StreamKey(2), RESOURCE, 0)
    queue(stream, 6, 0)
    ledger.advance(stream)
    ledger.finish(stream)
    assert ledger.retired_rpc_settled("p", 2) == 6


def test_a_runner_over_its_stream_cap_retires_its_oldest_disconnected_stream() -> None:
    """With the cap reached, room is made by finishing the oldest stream that has no connection."""
    ledger = make_ledger(max_streams_per_runner=1)
    old = open_runner_stream(ledger, 0)
    assert ledger.make_room_for_stream(ledger.plugin("p"), DIGEST)
    assert old.finished


def test_a_runner_over_its_stream_cap_with_all_connected_gets_no_room() -> None:
    """With every stream of the runner connected, no new stream is allowed."""
    ledger = make_ledger(max_streams_per_runner=1)
    open_runner_stream(ledger, 0).conn = FakePeer()
    assert not ledger.make_room_for_stream(ledger.plugin("p"), DIGEST)


def test_the_snapshot_holds_live_runner_streams_and_clears_dirty() -> None:
    """A snapshot names each runner stream's acked position and leaves RPC streams out."""
    ledger = make_ledger()
    stream = open_runner_stream(ledger)
    stream.acked = 8
    ledger.open_stream(ledger.plugin("p"), StreamKey(1), RESOURCE, 0)
    snapshot = ledger.snapshot()
    assert snapshot.saved == {StreamKey(0, DIGEST): SavedStream(acked=8)}
    assert [r.digest for r in snapshot.registrations] == [DIGEST]
    assert not ledger.dirty


def test_restore_keeps_only_streams_of_known_identities() -> None:
    """Saved streams of identities the registry no longer holds are not taken back."""
    source = make_ledger()
    source.register(Registration("p", None, DIGEST))
    snapshot = source.snapshot()
    snapshot.saved[StreamKey(0, "e" * 64)] = SavedStream(acked=3)
    snapshot.saved[StreamKey(0, DIGEST)] = SavedStream(acked=5)
    ledger = make_ledger()
    ledger.restore(snapshot)
    assert ledger.saved == {StreamKey(0, DIGEST): SavedStream(acked=5)}


class FakePeer:
    """A connection as the ledger sees it: something that can be closed and sent to."""

    closed = False

    def close(self) -> None:
        self.closed = True

    def send(self, message: object) -> None:
        pass
