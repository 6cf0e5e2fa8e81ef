"""A bridge shut down by an atexit function of its process ends as cleanly as one shut down earlier."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

APP = """
import atexit
from otel_plugin_logs import HostLogBridge
from otel_plugin_logs.testing import MemorySink
bridge = HostLogBridge(sink=MemorySink()).start()
atexit.register(lambda: print("shut down:", bridge.shutdown(5000), flush=True))
print(bridge.runtime_dir, flush=True)
"""


def test_a_shutdown_from_an_atexit_function_removes_the_runtime_dir(tmp_path: Path, host_env: Path) -> None:
    """At interpreter exit (where Python 3.12+ starts no thread) shutdown completes; its dir is gone."""
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent(APP))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    runtime_dir, shut_down = result.stdout.splitlines()
    assert shut_down == "shut down: True"
    assert not os.path.exists(runtime_dir)
