"""`run` tunes the garbage collector of its own process only, never a library user's."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_plugin_logs import HostLogBridge
from otel_plugin_logs.cli.main import main
from otel_plugin_logs.cli.run import tune_gc_for_run
from otel_plugin_logs.testing import MemorySink

PYTHON = sys.executable


@pytest.fixture
def restored_gc() -> Iterator[tuple[tuple[int, int, int], int]]:
    """The collector's thresholds and frozen count before the test, restored after it."""
    thresholds = gc.get_threshold()
    frozen = gc.get_freeze_count()
    yield thresholds, frozen
    if gc.get_freeze_count() != frozen:
        gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_tune_gc_for_run_freezes_what_is_loaded_and_collects_less_often(
    restored_gc: tuple[tuple[int, int, int], int],
) -> None:
    """Every object alive at the call leaves the collected generations; a young collection comes rarer."""
    thresholds, _ = restored_gc
    tune_gc_for_run()
    assert gc.get_freeze_count() > 0
    assert gc.get_count()[0] < 100  # the young generation is (almost) empty: it was frozen
    assert gc.get_threshold()[0] > thresholds[0]


def test_an_embedded_bridge_leaves_the_gc_alone(
    restored_gc: tuple[tuple[int, int, int], int], sink: MemorySink
) -> None:
    """A HostLogBridge in someone's application runs a plugin without touching their collector settings."""
    thresholds, frozen = restored_gc
    with HostLogBridge(sink=sink) as bridge:
        process = bridge.spawn_plugin("embedded", [PYTHON, "-c", "import logging; logging.warning('hi')"])
        assert process.wait(60) == 0
    assert gc.get_threshold() == thresholds
    assert gc.get_freeze_count() == frozen


def test_run_called_in_process_leaves_the_gc_alone(
    restored_gc: tuple[tuple[int, int, int], int], host_env: Path
) -> None:
    """`main(["run", ...])` from a caller's code is not the process's entry point: the settings stay."""
    thresholds, frozen = restored_gc
    assert main(["run", "-p", "inprocess", "--", PYTHON, "-c", "pass"]) == 0
    assert gc.get_threshold() == thresholds
    assert gc.get_freeze_count() == frozen
