"""The benchmark suite runs end to end in its quick mode (no timing is asserted: only that it runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.collector
@pytest.mark.timeout(180)
def test_quick_benchmarks_run_and_write_results(tmp_path: Path) -> None:
    """`python -m benchmarks --quick` prints the table and writes a JSON result with every figure."""
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--output-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "baseline (same run)" in completed.stdout
    latest = tmp_path / "latest.json"
    assert latest.exists()
    results = json.loads(latest.read_text())
    assert results["machine"]["cpu_count"] >= 1
    goals = results["summary"]["goals"]
    for key in ("1_emit_overhead", "2_throughput", "3_burst", "4_latency", "5_scale", "encoder"):
        assert key in goals, key
    burst = goals["3_burst"]
    assert burst["emitted"] == burst["records"]
    assert 0 <= burst["exported"] + sum(burst["dropped"].values()) + burst["uncounted"] <= burst["emitted"]
    assert set(goals["5_scale"]) == {"1", "4", "16"}
    assert len(list(tmp_path.glob("2*.json"))) == 1
