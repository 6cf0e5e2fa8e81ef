"""The capture hook through the public API, each case in a fresh interpreter.

``runner.install()`` over an ``InMemoryTransport``; the scenario then reconfigures logging
the way real programs do, and the test reads which record bodies reached the transport.
A subprocess keeps the test runner's own logging handlers out of the plugin's dictConfig.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

PRELUDE = """
import json, logging, logging.config, os, sys
import msgpack
from otel_plugin_logs import InMemoryTransport, runner
from otel_plugin_logs.wire.records import Rec

bodies = []

def deliver(body):
    records = msgpack.unpackb(body, raw=False).get("records", [])
    bodies.extend(record[Rec.BODY] for record in records)
    return records[-1][Rec.SEQ] if records else 0

handler = runner.install(transport=InMemoryTransport(deliver), keep_console=KEEP_CONSOLE)

def report():
    handler.force_flush(5000)
    with open(sys.argv[1], "w") as out:
        json.dump(bodies, out)
"""


def _delivered(tmp_path: Path, scenario: str, *, keep_console: bool = True) -> tuple[list[str], str]:
    script = tmp_path / "scenario.py"
    prelude = PRELUDE.replace("KEEP_CONSOLE", repr(keep_console))
    script.write_text(prelude + textwrap.dedent(scenario) + "\nreport()\n")
    out = tmp_path / "delivered.json"
    result = subprocess.run(
        [sys.executable, str(script), str(out)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text()), result.stderr


def test_dictconfig_after_install_keeps_the_capture(tmp_path: Path) -> None:
    """A dictConfig that clears and closes every handler does not stop the capture."""
    bodies, _ = _delivered(
        tmp_path,
        """
        logging.config.dictConfig({"version": 1, "root": {"level": "INFO", "handlers": []}})
        logging.getLogger("app").info("after dictConfig")
        """,
    )
    assert bodies == ["after dictConfig"]


def test_basicconfig_force_after_install_keeps_the_capture(tmp_path: Path) -> None:
    """basicConfig(force=True) removes and closes root's handlers: records still arrive."""
    bodies, _ = _delivered(
        tmp_path,
        """
        logging.basicConfig(level=logging.INFO, force=True)
        logging.getLogger("app").info("after basicConfig")
        """,
    )
    assert bodies == ["after basicConfig"]


def test_logging_shutdown_then_logging_still_arrives(tmp_path: Path) -> None:
    """A record logged after an explicit logging.shutdown() arrives."""
    bodies, _ = _delivered(
        tmp_path,
        """
        logging.shutdown()
        logging.getLogger("app").warning("after shutdown")
        """,
    )
    assert bodies == ["after shutdown"]


def test_non_propagating_logger_is_captured(tmp_path: Path) -> None:
    """A logger with propagate=False and its own handler is captured."""
    bodies, _ = _delivered(
        tmp_path,
        """
        own = logging.getLogger("own")
        own.propagate = False
        own.addHandler(logging.NullHandler())
        own.warning("no propagation")
        """,
    )
    assert bodies == ["no propagation"]


def test_records_the_plugin_filters_stay_filtered(tmp_path: Path) -> None:
    """Below a logger's level, a disabled logger, logging.disable: nothing arrives."""
    bodies, _ = _delivered(
        tmp_path,
        """
        quiet = logging.getLogger("quiet")
        quiet.setLevel(logging.ERROR)
        quiet.warning("below its level")
        gone = logging.getLogger("gone")
        gone.disabled = True
        gone.error("disabled")
        logging.disable(logging.CRITICAL)
        logging.getLogger("app").critical("disabled everywhere")
        logging.disable(logging.NOTSET)
        logging.getLogger("app").warning("kept")
        """,
    )
    assert bodies == ["kept"]


def test_record_handed_to_another_logger_arrives_once(tmp_path: Path) -> None:
    """A handler that re-dispatches the record it handles to another logger does not duplicate it."""
    bodies, _ = _delivered(
        tmp_path,
        """
        class Forward(logging.Handler):
            def emit(self, record):
                logging.getLogger("mirror").handle(record)
        logging.getLogger("source").addHandler(Forward())
        logging.getLogger("source").warning("once")
        """,
    )
    assert bodies == ["once"]


def test_console_echo_of_a_carried_record_is_hidden(tmp_path: Path) -> None:
    """With keep_console off, a StreamHandler's line for a carried record is hidden; a print is not."""
    bodies, stderr = _delivered(
        tmp_path,
        """
        logging.basicConfig(level=logging.INFO, format="LINE %(message)s")
        logging.getLogger("app").info("carried")
        print("a plain print", file=sys.stderr)
        """,
        keep_console=False,
    )
    assert bodies == ["carried"]
    assert "a plain print" in stderr and "LINE carried" not in stderr


def test_keep_console_shows_the_plugins_own_output(tmp_path: Path) -> None:
    """With keep_console on, the plugin's own console handler still writes its line."""
    _, stderr = _delivered(
        tmp_path,
        """
        logging.basicConfig(level=logging.INFO, format="LINE %(message)s")
        logging.getLogger("app").info("carried")
        """,
        keep_console=True,
    )
    assert "LINE carried" in stderr


def test_uninstall_restores_logging_and_streams(tmp_path: Path) -> None:
    """After uninstall(), Logger.callHandlers and sys.stderr are the originals and nothing more arrives."""
    bodies, _ = _delivered(
        tmp_path,
        """
        original_stderr = sys.__stderr__
        logging.getLogger("app").warning("before")
        handler.force_flush(5000)
        assert runner.uninstall(5000)
        assert not hasattr(logging.Logger.callHandlers, "__wrapped__")
        assert sys.stderr is original_stderr
        logging.getLogger("app").warning("after uninstall")
        """,
        keep_console=False,
    )
    assert bodies == ["before"]
