"""Real programs, configured the way their frameworks document it, under `otel-plugin-logs run`.

Each test runs the program twice, on its own and under the bridge, and compares what its
loggers handled (the ground truth, recorded by a sitecustomize) with what the bridge
exported: every record once, with its logger, level, body and exception type.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from .support import Outcome, Rec, counted, run_bridged, run_plain, truth, wait_for_line

PROGRAMS = Path(__file__).parent / "programs"
pytestmark = pytest.mark.timeout(240)


def _argv(name: str, *args: str) -> list[str]:
    return [sys.executable, str(PROGRAMS / name), *args]


def _both(tmp_path: Path, argv: list[str], **options: object) -> tuple[Outcome, Outcome]:
    plain = run_plain(argv, tmp_path / "plain", **options)  # type: ignore[arg-type]
    bridged = run_bridged(argv, tmp_path / "bridged", "prog", **options)  # type: ignore[arg-type]
    return plain, bridged


def _echoes(bridged: Outcome) -> list[Rec]:
    """Raw output lines that repeat a record the bridge carried (the plugin's console echo)."""
    bodies = {r.body for r in bridged.records if len(r.body) >= 8}
    return [line for line in bridged.raw_lines if any(body in line.body for body in bodies)]


def _assert_same(plain: Outcome, bridged: Outcome, *, mask: bool = False) -> None:
    assert plain.records, "the program logged nothing: the test would prove nothing"
    assert counted(bridged.records, mask=mask) == counted(plain.records, mask=mask), bridged.output[-3000:]
    assert bridged.stats["emitted"] == len(plain.records) == bridged.stats["exported"]
    assert bridged.dropped == {}
    assert _echoes(bridged) == []


@pytest.mark.parametrize(
    "program",
    [
        "structlog_dictconfig.py",
        "structlog_factory.py",
        "django_logging.py",
        "loguru_intercept.py",
        "loguru_propagate.py",
    ],
)
def test_framework_recipe_delivers_every_record_once(tmp_path: Path, program: str) -> None:
    """A framework's documented logging recipe: the bridge delivers exactly what its loggers handle."""
    plain, bridged = _both(tmp_path, _argv(program))
    assert plain.returncode == bridged.returncode == 0
    _assert_same(plain, bridged)


def test_django_logging_keeps_what_its_config_filters_filtered(tmp_path: Path) -> None:
    """Loggers disabled by disable_existing_loggers and records below a logger's level stay out."""
    _, bridged = _both(tmp_path, _argv("django_logging.py"))
    bodies = {r.body for r in bridged.records}
    assert "checkout started" in bodies and "root handles this one" in bodies
    assert not any("filtered" in body or "never handled" in body for body in bodies)


def test_structlog_exception_arrives_with_its_type(tmp_path: Path) -> None:
    """structlog's log.exception under dictConfig arrives as one record carrying exception.type."""
    _, bridged = _both(tmp_path, _argv("structlog_dictconfig.py"))
    failed = [r for r in bridged.records if r.body == "refund failed"]
    assert [r.exc for r in failed] == ["ZeroDivisionError"]


def test_loguru_own_records_stay_raw_text_shown_once(tmp_path: Path) -> None:
    """loguru's own record (not a stdlib record) is captured once as stderr text; stdlib ones as records."""
    _, bridged = _both(tmp_path, _argv("loguru_intercept.py"))
    assert [line.body.split(" - ", 1)[-1] for line in bridged.raw_lines] == [
        "a loguru record: loguru's own text, not a stdlib record"
    ]


def test_pip_verbose_delivers_every_record(tmp_path: Path) -> None:
    """`pip -v list` (pip's own dictConfig, rich handlers) delivers every record once."""
    argv = [sys.executable, "-m", "pip", "-v", "list", "--disable-pip-version-check", "--no-index"]
    plain, bridged = _both(tmp_path, argv)
    assert plain.returncode == bridged.returncode == 0
    _assert_same(plain, bridged)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _uvicorn_driver(truth_file: Path, port: int) -> object:
    def drive(process: subprocess.Popen[bytes]) -> None:
        assert wait_for_line(truth_file, lambda line: "Uvicorn running" in line)
        for path in ("/", "/items", "/boom"):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30).read()
            except urllib.error.HTTPError:
                pass  # /boom answers 500
        assert wait_for_line(truth_file, lambda line: "uvicorn.access" in line and "/boom" in line)
        process.send_signal(signal.SIGTERM)

    return drive


def _uvicorn(tmp_path: Path, kind: str) -> Outcome:
    port = _free_port()
    argv = _argv("uvicorn_app.py", str(port))
    driver = _uvicorn_driver(tmp_path / kind / "truth.jsonl", port)
    if kind == "plain":
        return run_plain(argv, tmp_path / kind, driver=driver)  # type: ignore[arg-type]
    return run_bridged(argv, tmp_path / kind, "web", driver=driver)  # type: ignore[arg-type]


def test_uvicorn_default_config_then_sigterm_delivers_every_record(tmp_path: Path) -> None:
    """uvicorn (its dictConfig, propagate=False loggers, SIGTERM re-raised): every record, the last ones too."""
    plain, bridged = _uvicorn(tmp_path, "plain"), _uvicorn(tmp_path, "bridged")
    assert plain.returncode == -signal.SIGTERM and bridged.returncode == 128 + signal.SIGTERM
    _assert_same(plain, bridged, mask=True)
    bodies = [r.body for r in bridged.records]
    assert "Shutting down" in bodies and any(b.startswith("Finished server process") for b in bodies)
    errors = [r for r in bridged.records if r.level == "ERROR"]
    assert [(r.logger, r.exc) for r in errors] == [("uvicorn.error", "RuntimeError")]


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_multiprocessing_workers_deliver_every_record(tmp_path: Path, method: str) -> None:
    """Process and Pool workers of each start method: every record of every worker arrives."""
    plain, bridged = _both(tmp_path, _argv("multiproc.py", method))
    assert plain.returncode == bridged.returncode == 0
    assert len(plain.records) == 6 * 50 + 1
    _assert_same(plain, bridged)


@pytest.mark.parametrize(
    ("how", "code"),
    [("os_exit", 7), ("sigterm", 128 + signal.SIGTERM), ("thread_error", 0), ("after_shutdown", 0)],
)
def test_hard_exit_after_logging_delivers_every_record(tmp_path: Path, how: str, code: int) -> None:
    """os._exit, a default SIGTERM, an uncaught thread error, logging after logging.shutdown(): all delivered."""
    plain, bridged = _both(tmp_path, _argv("hard_exit.py", "2000", how))
    assert bridged.returncode == code
    _assert_same(plain, bridged)


def test_sigkill_mid_stream_delivers_or_counts_every_record(tmp_path: Path) -> None:
    """SIGKILL while logging: every record whose call returned is exported or counted as lost, exactly."""
    truth_file = tmp_path / "truth.jsonl"

    def kill_the_plugin(process: subprocess.Popen[bytes]) -> None:
        assert wait_for_line(truth_file, lambda line: '"step 2000"' in line)
        (child,) = psutil.Process(process.pid).children()
        child.kill()

    bridged = run_bridged(
        _argv("hard_exit.py", "100000000", "never"), tmp_path, "prog", driver=kill_the_plugin
    )
    logged = len(truth(tmp_path))  # written before the bridge sees the record: at most one ahead
    stats = bridged.stats
    assert bridged.returncode == 128 + signal.SIGKILL
    assert logged - 1 <= stats["emitted"] <= logged
    assert stats["exported"] + sum(bridged.dropped.values()) == stats["emitted"]
    # Reasons vary with timing (queued at shutdown, announced and lost, or known from the exit
    # counter); that each record is one of them is what the balance says.
    assert len(bridged.records) == stats["exported"]


def test_daemon_thread_logging_through_exit_is_delivered_or_counted(tmp_path: Path) -> None:
    """A daemon thread still logging while the interpreter exits: what came after shutdown is counted."""
    bridged = run_bridged(_argv("hard_exit.py", "10", "daemon_thread"), tmp_path, "prog")
    logged = len(truth(tmp_path))
    stats = bridged.stats
    assert bridged.returncode == 0
    assert logged - 1 <= stats["emitted"] <= logged
    assert stats["exported"] + sum(bridged.dropped.values()) == stats["emitted"]
    # Reasons vary with timing (queued at shutdown, announced and lost, or known from the exit
    # counter); that each record is one of them is what the balance says.
