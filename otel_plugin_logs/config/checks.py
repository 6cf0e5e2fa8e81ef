"""Checks of values that parse but cannot work, run on the host before anything starts."""

from __future__ import annotations

import os
import tempfile
import urllib.parse
from typing import Final

from otel_plugin_logs.config.errors import ConfigError
from otel_plugin_logs.config.fields import PREFIX

# sockaddr_un holds 108 bytes; a little room is kept for the file name and the terminator.
MAX_SOCKET_PATH_BYTES: Final = 100
SOCKET_NAME: Final = "bridge.sock"


def check_endpoint(name: str, url: str) -> None:
    """An OTLP endpoint must be an http(s) URL with a host and, if given, a port from 1 to 65535."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ConfigError(f"{name}={url!r} is invalid: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"{name}={url!r} is invalid: expected an http:// or https:// URL")
    if not parts.hostname:
        raise ConfigError(f"{name}={url!r} is invalid: the URL has no host")
    if port == 0:
        raise ConfigError(f"{name}={url!r} is invalid: port 0")


def check_runtime_dir(path: str, name: str = PREFIX + "RUNTIME_DIR") -> None:
    """The runtime dir must hold a Unix socket path and be a directory this user can create files in."""
    absolute = os.path.abspath(path)
    socket_path = os.path.join(absolute, SOCKET_NAME)
    if len(socket_path.encode()) > MAX_SOCKET_PATH_BYTES:
        raise ConfigError(
            f"{name}={path!r} is unusable: the socket path would be {len(socket_path.encode())} bytes, "
            f"more than a Unix socket takes ({MAX_SOCKET_PATH_BYTES}); choose a shorter directory"
        )
    probe = absolute
    while not os.path.lexists(probe):  # the nearest existing ancestor is where it would be created
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise ConfigError(f"{name}={path!r} is unusable: {probe} is not a directory")
    try:
        # A real file, not os.access: root passes access() where procfs or a read-only mount refuse.
        handle, probe_file = tempfile.mkstemp(prefix=".otel-plugin-logs-probe-", dir=probe)
    except OSError as error:
        raise ConfigError(f"{name}={path!r} is unusable: cannot create files in {probe}: {error}") from None
    os.close(handle)
    os.unlink(probe_file)
