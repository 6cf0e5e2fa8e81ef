"""The typed ledger of plugins, runner identities, streams, tickets and gaps; no I/O, no locks.

Every method runs with the bridge's lock held. What needs the outside world (the exit
counter files of a runner identity) comes in through the two callables the ledger is given.
The stream and ticket shapes live in ``host.streams``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.export.otlp import ResourceInfo
from otel_plugin_logs.host.streams import (
    DROP_GAP,
    DROP_UNSENT_AT_EXIT,
    PluginState,
    Registration,
    SavedStream,
    Stream,
    StreamKey,
)

MAX_RETIRED_RPC_STREAMS: Final = 4096


@dataclass(frozen=True, slots=True)
class RetiredRpc:
    """A host-RPC stream that said bye and settled: a retried bye must not start it over."""

    plugin: str
    stream_id: int


@dataclass(slots=True)
class RegistrySnapshot:
    """What the registry file holds: the live runner identities and each stream's saved state."""

    registrations: list[Registration]
    saved: dict[StreamKey, SavedStream] = field(default_factory=dict)


class Ledger:
    """Plugins, the runner identities the host issued, and what each stream has settled."""

    def __init__(
        self,
        config: HostConfig,
        *,
        on_retired: Callable[[Stream], None],
        take_unsent_at_exit: Callable[[str], int],
    ) -> None:
        self._config = config
        self._on_retired = on_retired  # a runner stream's count is written to its exit counter
        self._take_unsent_at_exit = take_unsent_at_exit  # records a gone identity never sent
        self.plugins: dict[str, PluginState] = {}
        self.registrations: dict[str, Registration] = {}
        self.saved: dict[StreamKey, SavedStream] = {}  # taken back from an earlier host instance
        self.retired_rpc: dict[RetiredRpc, int] = {}  # -> its settled sequence number
        self.dirty = False  # the registry file is behind

    # --- plugins and identities ----------------------------------------------------------

    def plugin(self, name: str, version: str | None = None) -> PluginState:
        plugin = self.plugins.get(name)
        if plugin is None:
            plugin = self.plugins[name] = PluginState(name, version, self._config)
        elif version and not plugin.version:
            plugin.version = version
        return plugin

    def register(self, registration: Registration) -> None:
        self.registrations[registration.digest] = registration
        self.plugin(registration.plugin, registration.version)
        self.dirty = True

    def streams(self) -> Iterator[Stream]:
        for plugin in self.plugins.values():
            yield from plugin.streams.values()

    def streams_of(self, digest: str) -> list[Stream]:
        return [s for s in self.streams() if s.key.digest == digest]

    def runner_gone(self, stream: Stream) -> bool:
        """Whether the process behind ``stream`` is known to have ended.

        Known from the registration, not from a pid, which the system may give to another
        process; a forked child shares its parent's token but not its pid.
        """
        registration = self.registrations.get(stream.key.digest or "")
        return (
            registration is not None
            and registration.ended
            and (registration.pid is None or stream.runner_pid == registration.pid)
        )

    def end_registration(self, digest: str) -> None:
        registration = self.registrations.get(digest)
        if registration is not None:
            registration.ended = True
            self.dirty = True

    def release_registration(self, digest: str) -> None:
        """Forget a runner's token once it ended and none of its streams is left."""
        registration = self.registrations.get(digest)
        if registration is None or not registration.ended:
            return
        plugin = self.plugins.get(registration.plugin)
        if plugin is not None and any(key.digest == digest for key in plugin.streams):
            return
        del self.registrations[digest]
        lost = self._take_unsent_at_exit(digest)
        if lost:
            counters = self.plugin(registration.plugin).counters
            counters.retired_emitted += lost
            counters.host_dropped[DROP_UNSENT_AT_EXIT] += lost
        for key in [key for key in self.saved if key.digest == digest]:
            del self.saved[key]
        self.dirty = True

    def retired_rpc_settled(self, plugin: str, stream_id: int) -> int | None:
        return self.retired_rpc.get(RetiredRpc(plugin, stream_id))

    # --- streams -------------------------------------------------------------------------

    def open_stream(self, plugin: PluginState, key: StreamKey, resource: ResourceInfo, pid: int) -> Stream:
        saved = self.saved.get(key, SavedStream())
        stream = Stream(plugin, key, resource, pid, saved)
        plugin.streams[key] = stream
        plugin.last_resource = resource
        return stream

    def make_room_for_stream(self, plugin: PluginState, digest: str) -> bool:
        """Whether a runner may open one more stream; retires its oldest disconnected one if needed.

        A stream is kept while its process may come back; a runner that opens new stream ids
        without saying bye must not make the host keep each of them.
        """
        mine = [s for key, s in plugin.streams.items() if key.digest == digest and not s.finished]
        if len(mine) < self._config.max_streams_per_runner:
            return True
        for old in mine:  # oldest first (insertion order)
            if old.conn is None:
                self.finish(old)  # what it announced but never sent is counted as gap
                return True
        return False

    def advance(self, stream: Stream) -> None:
        tickets = stream.tickets
        while tickets and tickets[0].pending <= 0:
            stream.settled = max(stream.settled, tickets.popleft().last_seq)
        if stream.finished and not tickets:
            self.retire(stream)

    def finish(self, stream: Stream) -> None:
        """The stream's runner is gone (bye, or its process exited): count its gap."""
        self.check_gap(stream, final=True)
        stream.finished = True
        if not stream.tickets:
            self.retire(stream)

    def retire(self, stream: Stream) -> None:
        """Fold a finished, settled stream into its plugin's counters and let it go.

        A host that restarts plugins for weeks must not keep every runner it ever saw.
        """
        plugin = stream.plugin
        key = stream.key
        if plugin.streams.get(key) is not stream or stream.conn is not None:
            return
        del plugin.streams[key]
        if key.digest is None:
            self.retired_rpc[RetiredRpc(plugin.name, key.stream_id)] = stream.settled
            while len(self.retired_rpc) > MAX_RETIRED_RPC_STREAMS:
                del self.retired_rpc[next(iter(self.retired_rpc))]
        else:  # what the host counted survives a host restart
            self._on_retired(stream)
        counters = plugin.counters
        counters.retired_emitted += stream.accepted - stream.base
        counters.retired_dropped.update(stream.runner_dropped)
        self.dirty = True
        self.saved.pop(key, None)
        if key.digest is not None:
            self.release_registration(key.digest)

    def check_gap(self, stream: Stream, *, final: bool) -> None:
        """Count sequence numbers that neither arrived nor were reported dropped."""
        top = stream.accepted if final else stream.high
        missing = top - stream.base - stream.received - sum(stream.runner_dropped.values())
        if missing > stream.gap:
            stream.plugin.counters.host_dropped[DROP_GAP] += missing - stream.gap
            stream.gap = missing

    def finalize(self) -> None:
        """Nothing arrives any more: every disconnected stream's gap is final."""
        for stream in self.streams():
            if stream.closed or stream.conn is None:
                self.check_gap(stream, final=True)

    def acks_due(self) -> list[tuple[Stream, int]]:
        """Streams whose runner may be told a higher settled sequence number, marked as acked."""
        due = []
        for stream in self.streams():
            if stream.settled > stream.acked and stream.conn is not None:
                due.append((stream, stream.settled))
                stream.acked = stream.settled
                self.dirty = True
        return due

    @staticmethod
    def take_runner_drops(stream: Stream, reported: Mapping[str, int]) -> None:
        """Take a runner's cumulative drop counters, clamped to what it can have dropped.

        A runner cannot have dropped more records than it sequenced and did not send: a claim
        of 2^64-1 must not reach the counters, the notices or an export request.
        """
        for reason, total in sorted(reported.items()):
            count = total - stream.base_dropped.get(reason, 0)  # minus drops seen before a restart
            others = sum(v for r, v in stream.runner_dropped.items() if r != reason)
            ceiling = max(0, stream.accepted - stream.base - stream.received - others)
            count = min(count, ceiling)
            # Counters are cumulative, but a resent old frame carries older values.
            if count > stream.runner_dropped.get(reason, 0):
                stream.runner_dropped[reason] = count

    @staticmethod
    def dropped_totals(plugin: PluginState) -> Counter[str]:
        totals: Counter[str] = Counter(plugin.counters.host_dropped)
        totals.update(plugin.counters.retired_dropped)
        for stream in plugin.streams.values():
            totals.update(stream.runner_dropped)
        return totals

    # --- the registry's view -------------------------------------------------------------

    def snapshot(self) -> RegistrySnapshot:
        """What a restarted host needs back; clears ``dirty``."""
        self.dirty = False
        saved = dict(self.saved)
        for stream in self.streams():
            if stream.key.digest is not None:
                saved[stream.key] = stream.saved_state()
        return RegistrySnapshot(list(self.registrations.values()), saved)

    def restore(self, snapshot: RegistrySnapshot) -> None:
        """Take back an earlier host instance's identities; streams of forgotten ones are not kept."""
        for registration in snapshot.registrations:
            self.registrations[registration.digest] = registration
        self.saved = {k: v for k, v in snapshot.saved.items() if k.digest in self.registrations}

    def release(self, digest: str) -> bool:
        """A runner identity ended (``release_runner``): its disconnected streams finish now."""
        registration = self.registrations.get(digest)
        if registration is None or registration.ended:
            return False
        self.end_registration(digest)
        for stream in self.streams_of(digest):
            if stream.conn is None and not stream.finished:
                self.finish(stream)
        self.release_registration(digest)
        return True
