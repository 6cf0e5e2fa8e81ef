"""Fixtures shared by the tests: logging and environment are restored after each test."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import CaptureHandler, MemorySink


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="run the long soak tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="long soak: run with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Every test leaves the logging tree and the environment as it found them."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    level = root.level
    manager = logging.Logger.manager
    known = set(manager.loggerDict)
    saved_levels = {
        name: (lg.level, lg.propagate, list(lg.handlers), lg.disabled)
        for name, lg in manager.loggerDict.items()
        if isinstance(lg, logging.Logger)
    }
    environ = dict(os.environ)
    basic_config = logging.basicConfig
    try:
        yield
    finally:
        logging.basicConfig = basic_config
        root.handlers[:] = handlers
        root.setLevel(level)
        for name in list(manager.loggerDict):
            logger = manager.loggerDict[name]
            if name not in known:
                del manager.loggerDict[name]
            elif isinstance(logger, logging.Logger) and name in saved_levels:
                logger.level, logger.propagate, handlers_, logger.disabled = saved_levels[name]
                logger.handlers[:] = handlers_
        logging.Logger.manager._clear_cache()
        os.environ.clear()
        os.environ.update(environ)


@pytest.fixture(autouse=True)
def _kill_leftover_processes() -> Iterator[None]:
    """Every process a test started and left running (a failed test too) is killed by pid."""
    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}
    try:
        yield
    finally:
        left = [child for child in me.children(recursive=True) if child.pid not in before]
        for child in left:
            with contextlib.suppress(psutil.Error):
                child.kill()
        psutil.wait_procs(left, timeout=5)


@pytest.fixture
def capture() -> Iterator[CaptureHandler]:
    """A handler on the `plugin` logger that keeps every replayed record."""
    handler = CaptureHandler()
    logger = logging.getLogger("plugin")
    logger.addHandler(handler)
    logger.setLevel(1)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
def host_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An environment with no OTLP endpoint and the file sink under tmp_path."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "OTEL_PLUGIN_LOGS_")):
            monkeypatch.delenv(name)
    out = tmp_path / "sink"
    monkeypatch.setenv("OTEL_PLUGIN_LOGS_FILE_DIR", str(out))
    return out
