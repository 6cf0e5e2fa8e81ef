"""The exit counter: how many records a runner accepted, readable after the runner died.

A runner killed by SIGKILL, ``os._exit`` or a re-raised signal takes its buffer with it, and
the host only knows the records the runner announced. So each runner stream keeps a small
file in the host's private runtime dir, mapped into memory, and stores the number of records
it accepted there on every accepted record (one 8-byte store into a shared page: the kernel
keeps it when the process dies). Once the runner is gone, the host reads the file and counts
what never arrived as ``unsent_at_exit``.

Layout, one definition for both sides (little-endian, 32 bytes)::

    0   8 bytes  magic  b"OPLEXIT1"
    8   u64      stream id (the runner's, as in its hello)
    16  u64      accepted: records the runner accepted (written by the runner)
    24  u64      accounted: records the host already counted (written by the host)

Standard library only: both the runner and the host import it.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from hashlib import sha256
    from typing import Final
else:
    # CPython's built-in SHA-256, the same digest: hashlib loads OpenSSL for it, ~5 ms of every
    # plugin's start. hashlib only where the built-in is absent (another interpreter).
    try:
        from _sha256 import sha256  # Python 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # Python 3.12 and later
        except ImportError:
            from hashlib import sha256

MAGIC: Final = b"OPLEXIT1"
FILE_BYTES: Final = 32
_LAYOUT: Final = struct.Struct("<8sQQQ")
ACCEPTED_WORD: Final = 2  # the index of ``accepted`` in the page viewed as u64 words
_ACCOUNTED_OFFSET: Final = 24
SUFFIX: Final = ".exit"
DIR_NAME: Final = "exit"
# Far above what a process logs in its life, far below what breaks the counters it joins.
MAX_ACCEPTED: Final = 1 << 48


def token_digest(token: str) -> str:
    """How both sides name a runner identity without its secret: in a counter file's name, in the registry."""
    return sha256(token.encode()).hexdigest()


def counter_dir(socket_path: str) -> str:
    """Where the counters of the host listening on ``socket_path`` live (its runtime dir)."""
    return os.path.join(os.path.dirname(socket_path), DIR_NAME)


def file_name(tag: str, stream: int) -> str:
    return f"{tag}-{stream:016x}{SUFFIX}"


class ExitCounter:
    """The runner's side: a mapped page whose ``accepted`` word follows every accepted record."""

    __slots__ = ("_map", "_words", "path")

    def __init__(self, path: str, stream: int) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, _LAYOUT.pack(MAGIC, stream, 0, 0))
            self._map = mmap.mmap(fd, FILE_BYTES)
        finally:
            os.close(fd)
        self._words = memoryview(self._map).cast("Q")
        self.path = path

    @property
    def words(self) -> memoryview:
        """The page as u64 words: ``words[ACCEPTED_WORD] = n`` is ``set(n)`` without a call (the hot path)."""
        return self._words

    def set(self, accepted: int) -> None:
        self._words[ACCEPTED_WORD] = accepted

    def release(self) -> None:
        """Unmap (the file stays for the host to read)."""
        with contextlib.suppress(BufferError, ValueError):
            self._words.release()
            self._map.close()


def scratch_words() -> memoryview:
    """Words laid out as a counter's, in private memory: written where the host keeps no counter."""
    return memoryview(bytearray(FILE_BYTES)).cast("Q")


def open_for_stream(socket_path: str, token: str, stream: int) -> ExitCounter | None:
    """A new counter for ``stream``, or None where the host keeps none (no such dir, no access)."""
    if not socket_path or not token:
        return None
    path = os.path.join(counter_dir(socket_path), file_name(token_digest(token), stream))
    try:
        return ExitCounter(path, stream)
    except (OSError, ValueError):
        return None


class CounterReading:
    """What the host reads from one counter file.

    A slotted class, not a dataclass: the runner imports this module, and its path does not import
    dataclasses (it loads inspect and ast, which every plugin would pay for at start and at exit).
    """

    __slots__ = ("accepted", "accounted", "path", "stream")

    def __init__(self, path: str, stream: int, accepted: int, accounted: int) -> None:
        self.path = path
        self.stream = stream
        self.accepted = accepted
        self.accounted = accounted

    @property
    def unaccounted(self) -> int:
        return max(0, self.accepted - self.accounted)


def read_counters(directory: str, tag: str) -> list[CounterReading]:
    """Every well-formed counter file of one runner identity (odd files are skipped)."""
    prefix = tag + "-"
    readings = []
    try:
        names = [name for name in os.listdir(directory) if name.startswith(prefix) and name.endswith(SUFFIX)]
    except OSError:
        return []
    for name in names:
        path = os.path.join(directory, name)
        try:
            with open(path, "rb") as handle:
                data = handle.read(FILE_BYTES + 1)
        except OSError:
            continue
        if len(data) != FILE_BYTES:
            continue
        magic, stream, accepted, accounted = _LAYOUT.unpack(data)
        if magic != MAGIC:
            continue
        readings.append(CounterReading(path, stream, min(accepted, MAX_ACCEPTED), min(accounted, accepted)))
    return readings


def prune(directory: str, known_tags: set[str]) -> int:
    """Remove the counters of runner identities the host no longer knows; how many went."""
    removed = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        if name.endswith(SUFFIX) and name.split("-", 1)[0] not in known_tags:
            remove(os.path.join(directory, name))
            removed += 1
    return removed


def mark_accounted(path: str, accounted: int) -> None:
    """Record that the host counted the stream up to ``accounted`` (survives a host restart)."""
    with contextlib.suppress(OSError), open(path, "r+b") as handle:
        handle.seek(_ACCOUNTED_OFFSET)
        handle.write(struct.pack("<Q", accounted))


def remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
