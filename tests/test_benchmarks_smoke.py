"""The benchmark suite runs end to end in its quick mode (no timing is asserted: only that it runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any], Path]:
    """One `python -m benchmarks --quick` for the module: its table, its saved JSON, its directory."""
    directory = tmp_path_factory.mktemp("bench")
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--output-dir", str(directory)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout, json.loads((directory / "latest.json").read_text()), directory


@pytest.mark.collector
@pytest.mark.timeout(420)
def test_quick_run_prints_every_goal_row(quick_run: tuple[str, dict[str, Any], Path]) -> None:
    """The table has a row for each goal of issue 15 and the rows of issue 7, with same-run baselines."""
    stdout, _, _ = quick_run
    assert "baseline (same run)" in stdout
    for section in (
        "G1 emit in situ",
        "G2 throughput",
        "G3 zero loss",
        "G4 start, exit",
        "G6 stages host",
        "G6 stages runner",
        "1 emit",
        "2 throughput",
        "4 latency",
        "5 scale",
        "encoder",
    ):
        assert section in stdout, section


@pytest.mark.collector
@pytest.mark.timeout(420)
def test_quick_run_saves_every_figure(quick_run: tuple[str, dict[str, Any], Path]) -> None:
    """The JSON result has the machine facts, each goal's figures and one timestamped copy."""
    _, results, directory = quick_run
    assert results["machine"]["cpu_count"] >= 1
    goals = results["summary"]["goals"]
    for key in (
        "g1_emit_in_situ",
        "g2_throughput",
        "g3_zero_loss",
        "g4_startup_exit",
        "g6_stages",
        "1_emit_overhead",
        "2_throughput",
        "3_burst",
        "4_latency",
        "5_scale",
        "encoder",
    ):
        assert key in goals, key
    assert set(goals["5_scale"]) == {"1", "4", "16"}
    assert len(list(directory.glob("2*.json"))) == 1


@pytest.mark.collector
@pytest.mark.timeout(420)
def test_quick_run_accounts_for_every_burst_record(quick_run: tuple[str, dict[str, Any], Path]) -> None:
    """Every burst record through run is received by the collector or counted as dropped."""
    _, results, _ = quick_run
    loss = results["user"]["loss"]
    assert loss["collector_received"] - 1 + loss["stats"]["dropped"] >= loss["records"]
    for runs in results["user"]["throughput"].values():
        assert all(run["collector_received"] >= run["records"] for run in runs)
    burst = results["summary"]["goals"]["3_burst"]
    assert 0 <= burst["exported"] + sum(burst["dropped"].values()) + burst["uncounted"] <= burst["emitted"]


@pytest.mark.collector
@pytest.mark.timeout(420)
def test_quick_run_writes_a_profile_of_each_side(quick_run: tuple[str, dict[str, Any], Path]) -> None:
    """The stages benchmark leaves a pstats file per side, loadable by pstats."""
    import pstats

    _, _, directory = quick_run
    for side in ("runner", "host"):
        assert pstats.Stats(str(directory / f"profile-{side}.pstats")).total_calls > 0
