"""Runner identity: session tokens, their hashes, and what the kernel says about a peer process.

A plugin's records are bound to the runner that the host spawned with a fresh token. The
token is checked in constant time, the peer's uid and pid come from the kernel
(SO_PEERCRED), and nothing in a payload can change which plugin a record belongs to.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass

from otel_plugin_logs.host.streams import Registration
from otel_plugin_logs.wire.exit_counter import token_digest


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str  # handed to the runner only
    digest: str  # what the host keeps, and writes to its registry


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    detail: str


def issue_token() -> IssuedToken:
    token = secrets.token_urlsafe(32)
    return IssuedToken(token, token_digest(token))


def check_peer_uid(peer_uid: int | None) -> Refusal | None:
    """Only processes of the host's own user may speak for a plugin."""
    if peer_uid is not None and peer_uid != os.getuid():
        return Refusal("peer_uid", f"peer uid {peer_uid} is not the host's uid {os.getuid()}")
    return None


def check_token(registration: Registration | None, digest: str) -> Refusal | None:
    """Whether the hello's token names a live identity the host issued."""
    known = registration is not None and hmac.compare_digest(registration.digest, digest)
    if not known or registration is None or registration.ended:
        return Refusal("bad_token", "unknown session token")
    return None


def check_pid(registration: Registration, peer_pid: int) -> Refusal | None:
    """Whether the token is presented by the process it was issued for, or a descendant of it."""
    if registration.pid is not None and not same_or_descendant(peer_pid, registration.pid):
        return Refusal(
            "token_pid_mismatch", f"token of runner pid {registration.pid} presented by pid {peer_pid}"
        )
    return None


def same_or_descendant(pid: int, ancestor: int) -> bool:
    """True if ``pid`` is ``ancestor`` or one of its descendants (per /proc)."""
    current = pid
    for _ in range(64):
        if current == ancestor:
            return True
        if current <= 1:
            return False
        try:
            with open(f"/proc/{current}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            return not os.path.isdir("/proc/self")  # no procfs: the token alone must do
        try:
            current = int(stat[stat.rindex(b")") + 2 :].split()[1])
        except (ValueError, IndexError):
            return False
    return False


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    end = stat.rindex(b")")
    return stat[end + 2 : end + 3] not in (b"Z", b"X")
