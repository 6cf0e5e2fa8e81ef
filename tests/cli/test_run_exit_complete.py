"""`run`'s prompt exit loses nothing: records, console lines, the plugin's exit code and its own exit work."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import Collector, parse_rotel_logs, wait_until

PYTHON = sys.executable
RECORDS = 300

# A plugin that logs, leaves a buffered file unclosed, says something from an exit function
# (after its runner's flush: registered first, atexit runs it last) and exits with code 3.
PLUGIN = """
import atexit, logging, sys
log = logging.getLogger("ending")
log.setLevel(logging.INFO)
atexit.register(lambda: print("exit function of the plugin ran", flush=True))
unclosed = open(sys.argv[1], "w", buffering=1 << 20)
unclosed.write("written, never flushed or closed by the plugin\\n")
for i in range(%d):
    log.info("record %%d of the plugin", i)
sys.exit(3)
"""


def _run_plugin(tmp_path: Path, endpoint: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    script = tmp_path / "ending.py"
    script.write_text(textwrap.dedent(PLUGIN % RECORDS))
    written = tmp_path / "unclosed.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    argv = [PYTHON, "-m", "otel_plugin_logs", "run", "--stats", "-p", "ending", "--endpoint", endpoint]
    argv += ["--", PYTHON, str(script), str(written)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    return result, written


@pytest.mark.collector
def test_run_exits_with_everything_delivered(tmp_path: Path) -> None:
    """Exit code 3 is run's; every record reached rotel and the console; the plugin's exit work happened."""
    with Collector(tmp_path / "rotel") as collector:
        result, written = _run_plugin(tmp_path, collector.grpc_endpoint)

        def bodies() -> list[str]:
            return [str(r["body"]) for r in parse_rotel_logs(collector.output())]

        expected = {f"record {i} of the plugin" for i in range(RECORDS)}
        assert wait_until(lambda: expected <= set(bodies()), timeout=10), result.stderr[-2000:]
        assert "exit function of the plugin ran" in bodies()
    assert result.returncode == 3, result.stderr[-2000:]
    shown = result.stderr
    assert all(f"record {i} of the plugin" in shown for i in range(RECORDS))
    assert "exit function of the plugin ran" in shown
    assert f"plugin ending: emitted {RECORDS}" in shown.splitlines()[-1]
    assert "dropped 0" in shown.splitlines()[-1] and "pending 0" in shown.splitlines()[-1]
    assert written.read_text() == "written, never flushed or closed by the plugin\n"
