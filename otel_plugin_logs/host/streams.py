"""The shapes the ledger keeps: stream keys, saved state, identities, streams and their tickets.

No I/O, no locks: the bridge's lock guards every instance.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from otel_plugin_logs.config.host import HostConfig
from otel_plugin_logs.export.otlp import ResourceInfo
from otel_plugin_logs.host.replay import Replayer
from otel_plugin_logs.host.stats import PluginCounters

# Host-side drop reasons.
DROP_RATE_LIMITED: Final = "rate_limited"
DROP_INVALID: Final = "invalid_record"
DROP_GAP: Final = "gap"
# Accepted by a runner that died before sending them: known from its exit counter.
DROP_UNSENT_AT_EXIT: Final = "unsent_at_exit"
DROP_OVERLOAD: Final = "host_overload"

# Where the registry file and the record uids name a host-RPC stream's (absent) token hash.
_RPC_DIGEST_TEXT: Final = "rpc"


@dataclass(frozen=True, slots=True)
class StreamKey:
    """One stream: a runner identity (its token's hash) and the runner's stream id.

    ``digest`` is None for a stream the host hands in over its own RPC (``handle_batch``).
    """

    stream_id: int
    digest: str | None = None

    @property
    def from_rpc(self) -> bool:
        return self.digest is None

    def registry_key(self) -> str:
        """Its name in the registry file: ``<digest>:<stream id>``."""
        return f"{self.digest or _RPC_DIGEST_TEXT}:{self.stream_id}"

    @classmethod
    def from_registry_key(cls, text: str) -> StreamKey | None:
        digest, _, stream_id = text.rpartition(":")
        if not digest or digest == _RPC_DIGEST_TEXT or not stream_id.isdigit():
            return None
        return cls(int(stream_id), digest)

    def record_uid_prefix(self, plugin: str) -> str:
        """The first half of each ``log.record.uid`` of the stream (the second is the sequence).

        From the plugin, the token's hash and the runner's stream id, which a restarted host
        gets back from its registry and the runner's hello: a resent record keeps its uid.
        """
        material = f"{plugin}\0{self.digest or _RPC_DIGEST_TEXT}\0{self.stream_id}".encode()
        return hashlib.sha256(material).hexdigest()[:16]


@dataclass(slots=True)
class SavedStream:
    """What an earlier host instance settled of a stream, as the registry file keeps it."""

    acked: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # runner drops it saw
    # Handed to its exporter up to here before it died without acknowledging them.
    in_doubt: int = 0


@dataclass(slots=True)
class Registration:
    """A runner identity the host issued: a token, for one plugin, for one spawned process."""

    plugin: str
    version: str | None
    digest: str
    pid: int | None = None
    token: str | None = None  # kept only until the runner is spawned; the registry stores the digest
    resource: ResourceInfo | None = None  # of the spawned process: its stderr and its stream
    connected: bool = False
    ended: bool = False  # its process is known to be gone: exit seen, or release_runner()


class Peer(Protocol):
    """The connection a stream is currently fed by, as the ledger sees it."""

    @property
    def closed(self) -> bool: ...

    def close(self) -> None: ...

    def send(self, message: Mapping[str, Any]) -> None: ...


class TokenBucket:
    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: int, now: float = 0.0) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last = now

    def take(self, wanted: int, now: float) -> int:
        if self.rate <= 0:
            return wanted
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now
        allowed = min(wanted, int(self.tokens))
        self.tokens -= allowed
        return allowed


class PluginState:
    __slots__ = (
        "byte_limiter",
        "counters",
        "last_resource",
        "limiter",
        "name",
        "pending",
        "replayer",
        "reported",
        "streams",
        "version",
    )

    def __init__(self, name: str, version: str | None, config: HostConfig) -> None:
        self.name = name
        self.version = version
        self.counters = PluginCounters()
        self.replayer = Replayer(config.replay_logger_prefix, name)
        self.limiter = TokenBucket(config.rate_limit_records_per_second, config.rate_limit_burst_records)
        self.byte_limiter = TokenBucket(config.rate_limit_bytes_per_second, config.rate_limit_burst_bytes)
        self.streams: dict[StreamKey, Stream] = {}
        self.pending = 0  # records of this plugin in the export queue
        self.reported: Counter[str] = Counter()  # drop totals already reported in a warning
        self.last_resource: ResourceInfo | None = None


class Ticket:
    """Records of one runner batch still waiting for the exporter; the batch is acked at zero."""

    __slots__ = ("last_seq", "pending", "stream")

    def __init__(self, stream: Stream, last_seq: int, pending: int) -> None:
        self.stream = stream
        self.last_seq = last_seq
        self.pending = pending


class Stream:
    """The records of one runner process (one handler; a forked child is a new stream)."""

    __slots__ = (
        "accepted",
        "acked",
        "base",
        "base_dropped",
        "closed",
        "conn",
        "exported_high",
        "finished",
        "flushed",
        "gap",
        "high",
        "in_doubt",
        "key",
        "otel",
        "plugin",
        "received",
        "resource",
        "runner_dropped",
        "runner_pid",
        "settled",
        "tickets",
    )

    def __init__(
        self, plugin: PluginState, key: StreamKey, resource: ResourceInfo, pid: int, saved: SavedStream
    ) -> None:
        self.plugin = plugin
        self.key = key
        self.resource = resource
        self.runner_pid = pid
        self.otel: dict[str, Any] = {
            "plugin": plugin.name,
            "plugin_version": plugin.version,
            "runner_pid": pid,
            "resource": resource.attributes,
        }
        self.base = saved.acked  # settled by an earlier host instance (after a host restart)
        self.high = self.settled = self.acked = self.accepted = self.base
        self.received = 0
        self.runner_dropped: dict[str, int] = {}
        self.base_dropped = dict(saved.dropped)  # runner drops an earlier host instance saw
        # An earlier host instance handed records up to here to its exporter before it died
        # without acknowledging them: resent, they are exported again (at least once).
        self.in_doubt = saved.in_doubt
        self.exported_high = self.base  # written to the registry before each export
        self.gap = 0
        self.tickets: deque[Ticket] = deque()
        self.conn: Peer | None = None
        self.closed = False
        self.finished = False  # its runner is gone for good: released once everything settled
        self.flushed = 0

    @property
    def in_runner(self) -> int:
        """Records its runner accepted that neither arrived, nor were dropped, nor count as gap."""
        missing = self.accepted - self.base - self.received - sum(self.runner_dropped.values()) - self.gap
        return max(0, missing)

    def saved_state(self) -> SavedStream:
        in_doubt = max(self.exported_high, self.in_doubt)
        dropped = {
            r: self.base_dropped.get(r, 0) + self.runner_dropped.get(r, 0)
            for r in {*self.base_dropped, *self.runner_dropped}
        }
        return SavedStream(self.acked, dropped, in_doubt if in_doubt > self.acked else 0)
