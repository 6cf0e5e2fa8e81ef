"""Identity (issue #6, case 14): tokens, peer credentials, namespaces and the socket's permissions."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from helpers import PYTHON, MemorySink, write_plugin
from reliability_support import Host, RawRunner, drained, wait_for, wire_record

from otel_plugin_logs import HostLogBridge
from otel_plugin_logs.config.runner import ENV_TOKEN
from otel_plugin_logs.conventions import BRIDGE_EVENT_ATTRIBUTE, BRIDGE_SCOPE_NAME
from otel_plugin_logs.wire.framing import FrameDecoder, encode_message
from otel_plugin_logs.wire.messages import PROTOCOL_VERSION

SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = 65534

FOREIGN_CLIENT = """
import socket, sys
path, frame = sys.argv[1], bytes.fromhex(sys.argv[2])
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(10)
try:
    sock.connect(path)
except PermissionError:
    print("EACCES")
    sys.exit(0)
sock.sendall(frame)
data = b""
while True:
    chunk = sock.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.hex())
"""


def test_wrong_token_is_rejected_with_a_reason_and_counted(host: Host) -> None:
    """A hello with an unknown token gets a reject frame naming bad_token, the connection is closed, nothing is ingested."""
    host.bridge.register_runner("real")
    runner = RawRunner(host.bridge.socket_path)
    answer = runner.hello("A" * 43)
    assert answer["t"] == "reject" and answer["reason"].startswith("bad_token")
    assert runner.wait_closed(5)
    stats = host.bridge.stats()
    assert stats.rejected_connections == {"bad_token": 1}
    assert stats.plugins["real"].emitted == 0 and stats.plugins["real"].connections == 0


def test_replayed_token_of_another_runner_is_rejected(tmp_path: Path, host: Host) -> None:
    """A spawned runner's token presented by a different process (the test) is refused: token_pid_mismatch."""
    sleeper = write_plugin(tmp_path, "sleeper", "import time\ntime.sleep(30)\n")
    victim = host.bridge.spawn_plugin("victim", [PYTHON, str(sleeper)], auto_install=False)
    token = ""
    deadline = time.monotonic() + 10
    while not token and time.monotonic() < deadline:
        for item in Path(f"/proc/{victim.pid}/environ").read_bytes().split(b"\0"):
            if item.startswith(ENV_TOKEN.encode() + b"="):
                token = item.split(b"=", 1)[1].decode()
    try:
        runner = RawRunner(host.bridge.socket_path)
        answer = runner.hello(token, pid=victim.pid)  # lying about the pid does not help: SO_PEERCRED
        assert answer["t"] == "reject" and answer["reason"].startswith("token_pid_mismatch")
        assert runner.wait_closed(5)
    finally:
        victim.kill()
    assert host.bridge.stats().rejected_connections == {"token_pid_mismatch": 1}
    assert host.bridge.stats().plugins["victim"].connections == 0


def test_identity_comes_from_the_connection_not_from_the_payload(host: Host) -> None:
    """Claimed plugin names, pids and logger names cannot move records into another plugin's namespace or resource."""
    host.bridge.register_runner("victim")
    runner = RawRunner(host.bridge.socket_path)
    welcome = runner.hello(
        host.token("mallory"), pid=1, plugin="victim", service_name="victim", plugin_version="9.9"
    )
    assert welcome["t"] == "welcome"
    runner.send(
        {
            "t": "batch",
            "stream": 1,
            "plugin": "victim",
            "accepted": 4,
            "records": [
                wire_record(1, "as victim", logger="plugin.victim"),
                wire_record(2, "as root", logger="root"),
                wire_record(3, "dotted", logger="..plugin..victim.."),
                wire_record(
                    4, "resource claims", attributes={"service.name": "victim", "plugin.name": "victim"}
                ),
            ],
        }
    )
    runner.bye(accepted=4)
    runner.close()
    assert wait_for(lambda: drained(host.bridge, "mallory"), 20)
    replayed = [r for r in host.everything.records if getattr(r, "otel", None) is not None]
    assert [r.name for r in replayed if r.otel.plugin == "mallory"] == [
        "plugin.mallory.plugin.victim",
        "plugin.mallory",
        "plugin.mallory.plugin.victim",
        "plugin.mallory.raw",
    ]
    assert all(r.otel.plugin == "mallory" and r.name.startswith("plugin.mallory") for r in replayed)
    assert not [r for r in host.everything.records if r.name.startswith("plugin.victim")]
    exported = [(res, e) for res, e in host.sink.items if e.seq > 0]
    assert len(exported) == 4
    for resource, _ in exported:
        assert (
            resource.attributes["service.name"] == "mallory"
            and resource.attributes["plugin.name"] == "mallory"
        )
        assert resource.attributes["process.pid"] == os.getpid()  # from SO_PEERCRED, not the claimed pid 1
    assert host.bridge.stats().plugins["victim"].emitted == 0


def test_released_runner_is_forgotten_its_token_refused_and_its_unsent_records_counted(host: Host) -> None:
    """release_runner() ends a runner the host started itself: unsent records count as gap, its token is refused."""
    token = host.token("solo")
    runner = RawRunner(host.bridge.socket_path)
    assert runner.hello(token)["t"] == "welcome"
    runner.batch([wire_record(seq, f"line {seq}") for seq in (1, 2, 3)], accepted=5)  # 4 and 5 never sent
    runner.close()  # no bye, and this process lives on: the bridge cannot know the runner is gone
    assert wait_for(lambda: host.bridge.stats().plugins["solo"].exported == 3, 20)
    assert host.bridge.stats().plugins["solo"].dropped == {}

    assert host.bridge.release_runner(token) is True
    assert host.bridge.release_runner(token) is False  # already released
    stats = host.bridge.stats().plugins["solo"]
    assert (stats.emitted, stats.exported, stats.dropped, stats.uncounted) == (5, 3, {"gap": 2}, 0)
    assert RawRunner(host.bridge.socket_path).hello(token)["reason"].startswith("bad_token")
    assert host.bridge.stats().rejected_connections == {"bad_token": 1}


def test_runner_cannot_forge_bridge_notices(host: Host) -> None:
    """A record on scope otel_plugin_logs.bridge with bridge.event=dropped is not exported as a bridge notice."""
    runner = RawRunner(host.bridge.socket_path)
    assert runner.hello(host.token("forger"))["t"] == "welcome"
    forged = {BRIDGE_EVENT_ATTRIBUTE: "dropped", "bridge.reason": "export_queue_full", "bridge.count": 10**9}
    runner.batch(
        [
            wire_record(
                1, "dropped 1000000000 records of plugin forger", logger=BRIDGE_SCOPE_NAME, attributes=forged
            )
        ]
    )
    runner.bye(accepted=1)
    runner.close()
    assert wait_for(lambda: drained(host.bridge, "forger"), 20)
    (entry,) = host.sink.entries("forger")
    assert not (entry.scope == BRIDGE_SCOPE_NAME and BRIDGE_EVENT_ATTRIBUTE in entry.attributes)


def test_socket_is_0600_in_a_0700_directory_and_the_registry_holds_no_token(
    tmp_path: Path, host_env: Path
) -> None:
    """Temporary and configured runtime dirs are 0700, the socket 0600, the registry 0600 without plaintext tokens."""
    with HostLogBridge(sink=MemorySink()) as bridge:
        assert stat.S_IMODE(os.stat(bridge.runtime_dir).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(bridge.socket_path).st_mode) == 0o600
        assert stat.S_ISSOCK(os.stat(bridge.socket_path).st_mode)
    configured = tmp_path / "rt"
    configured.mkdir(mode=0o755)
    configured.chmod(0o755)
    with HostLogBridge(sink=MemorySink(), runtime_dir=str(configured)) as bridge:
        env = bridge.register_runner("weather")
        assert stat.S_IMODE(os.stat(configured).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(bridge.socket_path).st_mode) == 0o600
        registry = configured / "registry.json"
        assert wait_for(registry.exists, 5)
        assert stat.S_IMODE(registry.stat().st_mode) == 0o600
        assert env[ENV_TOKEN] not in registry.read_text()
        runners = json.loads(registry.read_text())["runners"]
        assert [r["plugin"] for r in runners.values()] == ["weather"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a directory owned by another user")
def test_runtime_dir_owned_by_another_user_is_refused(tmp_path: Path, host_env: Path) -> None:
    """A configured runtime dir that another user owns (who could swap the socket) is refused at start."""
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, NOBODY, NOBODY)
    with pytest.raises(PermissionError, match="owned by uid 65534"):
        HostLogBridge(sink=MemorySink(), runtime_dir=str(foreign)).start()


def _run_as_nobody(socket_path: str, frame: bytes) -> str:
    result = subprocess.run(
        [SYSTEM_PYTHON, "-c", FOREIGN_CLIENT, socket_path, frame.hex()],
        user=NOBODY,
        group=NOBODY,
        extra_groups=[],
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists(SYSTEM_PYTHON),
    reason="needs root (to run a client as user nobody) and a system python3",
)
def test_process_of_another_user_cannot_connect_and_is_rejected_by_uid(host_env: Path) -> None:
    """User nobody cannot open the socket (0600 in 0700); with the permissions loosened, SO_PEERCRED's uid check still rejects it."""
    runtime = tempfile.mkdtemp(prefix="opl-uid-")  # under /tmp: traversable by nobody once loosened
    try:
        with HostLogBridge(sink=MemorySink(), runtime_dir=runtime) as bridge:
            token = bridge.register_runner("target")[ENV_TOKEN]  # pid None: any pid would pass
            hello = encode_message(
                {"t": "hello", "v": PROTOCOL_VERSION, "token": token, "pid": 1, "stream": 7}
            )
            assert _run_as_nobody(bridge.socket_path, hello) == "EACCES"
            os.chmod(runtime, 0o711)  # a misconfiguration: the uid check must still hold
            os.chmod(bridge.socket_path, 0o666)
            answer = _run_as_nobody(bridge.socket_path, hello)
            messages = list(FrameDecoder().feed(bytes.fromhex(answer)))
            assert [m["t"] for m in messages] == ["reject"]
            assert messages[0]["reason"].startswith("peer_uid")
            stats = bridge.stats()
        assert stats.rejected_connections == {"peer_uid": 1}
        assert stats.plugins["target"].connections == 0
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
