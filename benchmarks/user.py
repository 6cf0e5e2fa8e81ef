"""What a plugin author and a ``run`` user see (issue 15): everything through ``otel-plugin-logs run``.

Each figure comes from real processes: ``otel-plugin-logs run --stats`` with a plugin
(``_user_plugin.py``) under it, exporting to the suite's rotel, its console output going to a
file (console on: formatted and written as on a terminal). The baseline of each figure is
measured in the same run.

* ``insitu``: one plugin under ``run`` alternates rounds through the runner and through a
  do-nothing handler (see ``_user_plugin.insitu``); wall per call and process CPU per record.
* ``cli_burst``/``sdk_burst``: a burst from one process, from its first record to its exit,
  counted at the collector (rotel's per-request ``logs=N`` lines); ``run``'s own counters and
  peak RSS of the host (``run``) and the runner (its child), sampled every 20 ms from here.
* ``startup`` (in a fresh interpreter, ``_worker startup``): a trivial plugin spawned by a
  ``HostLogBridge`` (auto-install) vs the same command spawned plainly.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from ._common import PYTHON, ROOT, Rotel, median, ratio, rss_bytes

EXIT_GRACE_SECONDS = 30.0  # run still there this long after its plugin finished: hung
PLUGIN = str(Path(__file__).resolve().parent / "_user_plugin.py")
_STATS = re.compile(
    r"emitted (\d+), replayed (\d+), exported (\d+), discarded (\d+), dropped (\d+) \(([^)]*)\), pending (\d+)"
)


def run_command() -> list[str]:
    script = Path(PYTHON).with_name("otel-plugin-logs")
    return [str(script)] if script.exists() else [PYTHON, "-m", "otel_plugin_logs"]


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(extra or {})
    return env


def configured_bounds() -> dict[str, int]:
    """The bounds in effect, from ``otel-plugin-logs doctor`` (host first, then runner table)."""
    out = subprocess.run(
        [*run_command(), "doctor"], capture_output=True, text=True, env=child_env(), timeout=60, check=False
    ).stdout
    bounds: dict[str, int] = {}
    prefix = ""
    for line in out.splitlines():
        if line.startswith("Runner settings"):
            prefix = "runner_"
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            bounds.setdefault(prefix + parts[0], int(parts[1]))
    return bounds


def parse_stats(stderr: str) -> dict[str, Any]:
    matches = list(_STATS.finditer(stderr))
    if not matches:
        return {}
    match = matches[-1]
    emitted, replayed, exported, discarded, dropped, reasons, pending = match.groups()
    by_reason = {}
    for item in reasons.split(", "):
        if "=" in item:
            key, value = item.split("=", 1)
            by_reason[key] = int(value)
    return {
        "emitted": int(emitted),
        "replayed": int(replayed),
        "exported": int(exported),
        "discarded": int(discarded),
        "dropped": int(dropped),
        "dropped_by_reason": by_reason,
        "pending": int(pending),
    }


class TreeRss:
    """RSS of a process and of its children, sampled every ``interval_seconds``."""

    def __init__(self, pid: int, interval_seconds: float = 0.02) -> None:
        self.pid = pid
        self.interval_seconds = interval_seconds
        self.samples: list[tuple[float, int, int]] = []  # (time.time(), host bytes, children bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-rss", daemon=True)
        self._thread.start()

    def _children(self) -> list[int]:
        try:
            with open(f"/proc/{self.pid}/task/{self.pid}/children", encoding="ascii") as handle:
                return [int(x) for x in handle.read().split()]
        except (OSError, ValueError):
            return []

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            host = rss_bytes(self.pid)
            if host:
                self.samples.append((time.time(), host, sum(rss_bytes(pid) for pid in self._children())))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self, since: float) -> dict[str, int]:
        """Peaks, and growth over the last sample before ``since`` (the plugin's first record)."""
        before = [s for s in self.samples if s[0] <= since] or self.samples[:1] or [(0.0, 0, 0)]
        host0, child0 = before[-1][1], before[-1][2]
        host_peak = max((s[1] for s in self.samples), default=0)
        child_peak = max((s[2] for s in self.samples), default=0)
        return {
            "host_peak_rss_bytes": host_peak,
            "host_rss_growth_bytes": host_peak - host0,
            "runner_peak_rss_bytes": child_peak,
            "runner_rss_growth_bytes": child_peak - child0,
        }


def _received_after(rotel: Rotel, before: int, expected: int, wait_seconds: float = 5.0) -> int:
    """Records rotel received since ``before``, once ``expected`` arrived or it stopped growing."""
    deadline = time.monotonic() + wait_seconds
    seen, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = rotel.received_logs() - before
        if now >= expected:
            return now
        if now != seen:
            seen, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since > 1.0:
            break
        time.sleep(0.05)
    return rotel.received_logs() - before


def _notices(stderr: str) -> str:
    """run's output without the plugin's own records: its warnings, errors and stats line."""
    return "\n".join(line for line in stderr.splitlines() if "fetched berlin" not in line)[-3000:]


def timed_process(argv: list[str], env: dict[str, str], out: str, timeout: float) -> dict[str, Any]:
    """Run ``argv``, sampling RSS; the plugin's JSON (``out``) joined with run's exit time and output.

    A process still running after ``timeout`` seconds, or ``EXIT_GRACE_SECONDS`` after the
    plugin wrote its result, is hung: it gets SIGABRT (``PYTHONFAULTHANDLER`` prints every
    thread's stack to its stderr, kept in ``notices``), then SIGKILL, and the result says
    ``timed_out``: a ``run`` that does not exit is a finding, not a reason to stop the suite.
    """
    timed_out = False
    env = {**env, "PYTHONFAULTHANDLER": "1"}
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=stdout, stderr=stderr)
        sampler = TreeRss(process.pid)
        deadline, grace_deadline = time.monotonic() + timeout, None
        while process.poll() is None and time.monotonic() < deadline:
            if grace_deadline is None and os.path.getsize(out) > 0:
                grace_deadline = time.monotonic() + EXIT_GRACE_SECONDS
            if grace_deadline is not None and time.monotonic() > grace_deadline:
                break
            time.sleep(0.002)
        exited_at = time.time()
        if process.poll() is None:
            timed_out = True
            process.send_signal(signal.SIGABRT)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
        returncode = process.wait()
        sampler.stop()
        stderr.seek(0)
        errors = stderr.read().decode(errors="replace")
    try:
        with open(out, encoding="utf-8") as handle:
            plugin = dict(json.load(handle))
    except (OSError, ValueError):
        plugin = {}
    if "error" in plugin or not plugin or (returncode != 0 and not timed_out):
        raise RuntimeError(
            f"{argv[:4]} failed (exit {returncode}): {plugin.get('error', '')}\n{_notices(errors)}"
        )
    rss = sampler.figures(float(plugin.get("first_record_at", 0.0)))
    return {
        **plugin,
        **rss,
        "exited_at": exited_at,
        "stderr": errors,
        "returncode": returncode,
        "timed_out": timed_out,
        "notices": _notices(errors) if timed_out else "",
    }


def burst(params: dict[str, Any], rotel: Rotel) -> dict[str, Any]:
    """One burst: ``kind`` ``run`` (console on/off by ``level``) or ``sdk``, counted at rotel."""
    count = int(params["records"])
    kind = params["kind"]
    fd, out = tempfile.mkstemp(prefix="bench-user-", suffix=".json")
    os.close(fd)
    before = rotel.received_logs()
    try:
        if kind == "sdk":
            env = child_env({"OTEL_BLRP_MAX_QUEUE_SIZE": str(count + 4096)})
            argv = [PYTHON, PLUGIN, "sdk", out, str(count), rotel.grpc_endpoint]
        else:
            env = child_env()
            argv = [*run_command(), "run", "--stats", "-p", "burst", "--level", params.get("level", "INFO")]
            argv += ["--endpoint", rotel.grpc_endpoint, "--", PYTHON, PLUGIN, "burst", out, str(count)]
        result = timed_process(argv, env, out, float(params.get("timeout_seconds", 300)))
    finally:
        os.unlink(out)
    received = _received_after(rotel, before, count + 1)  # + the warm-up record
    seconds = result["exited_at"] - result["first_record_at"]
    stats = parse_stats(result.pop("stderr"))
    return {
        **result,
        "kind": kind,
        "records": count,
        "seconds_first_record_to_exit": seconds,
        "records_per_second": count / seconds if seconds > 0 else float("nan"),
        "collector_received": received,
        "complete": received >= count + 1,
        "exit_after_acked_millis": (result["exited_at"] - result["acked_at"]) * 1000,
        "runner_cpu_us_per_record": result["runner_cpu_seconds"] / count * 1e6,
        "stats": stats,
    }


def insitu(params: dict[str, Any], rotel: Rotel) -> dict[str, Any]:
    """Goal 1: rounds through the runner vs a do-nothing handler, in one plugin under ``run``."""
    rounds, size = int(params.get("rounds", 11)), int(params.get("round_size", 20_000))
    fd, out = tempfile.mkstemp(prefix="bench-insitu-", suffix=".json")
    os.close(fd)
    try:
        argv = [*run_command(), "run", "--stats", "-p", "insitu", "--endpoint", rotel.grpc_endpoint, "--"]
        argv += [PYTHON, PLUGIN, "insitu", out, str(rounds), str(size)]
        result = timed_process(argv, child_env(), out, float(params.get("timeout_seconds", 600)))
    finally:
        os.unlink(out)
    samples = result["samples"]
    figures: dict[str, Any] = {"round_size": size, "rounds": rounds, "hooked": result.get("hooked")}
    for name in ("runner", "baseline"):
        figures[f"{name}_wall_us_per_call"] = median(samples[name]["wall"]) / size * 1e6
        figures[f"{name}_cpu_us_per_record"] = median(samples[name]["cpu"]) / size * 1e6
    paired = [a / b for a, b in zip(samples["runner"]["wall"], samples["baseline"]["wall"], strict=True) if b]
    figures["wall_ratio"] = ratio(figures["runner_wall_us_per_call"], figures["baseline_wall_us_per_call"])
    figures["wall_ratio_paired_median"] = median(paired)
    figures["cpu_ratio"] = ratio(figures["runner_cpu_us_per_record"], figures["baseline_cpu_us_per_record"])
    figures["samples"] = samples
    figures["stats"] = parse_stats(result["stderr"])
    return figures


def run_startup(params: dict[str, Any]) -> dict[str, Any]:
    """Goal 4 (start): a trivial plugin spawned with auto-install vs plainly; interleaved."""
    from otel_plugin_logs import HostLogBridge

    repeats = int(params.get("repeats", 15))
    bridge = HostLogBridge(otlp_endpoint=params["grpc_endpoint"], exporter="otlp").start()
    samples: dict[str, dict[str, list[float]]] = {
        "auto_install": {"start": [], "whole": []},
        "plain": {"start": [], "whole": []},
    }
    directory = tempfile.mkdtemp(prefix="bench-startup-")
    try:
        for index in range(repeats + 1):
            for name in ("auto_install", "plain") if index % 2 == 0 else ("plain", "auto_install"):
                out = os.path.join(directory, f"{name}-{index}.json")
                argv = [PYTHON, PLUGIN, "trivial", out]
                began = time.time()
                if name == "plain":
                    subprocess.run(argv, env=child_env(), stdout=subprocess.DEVNULL, check=True)
                else:
                    process = bridge.spawn_plugin(f"start{index}", argv, stdout=subprocess.DEVNULL)
                    process.wait(30)
                ended = time.time()
                with open(out, encoding="utf-8") as handle:
                    started_at = float(json.load(handle)["started_at"])
                if index:  # the first pair warms the page cache and the bridge
                    samples[name]["start"].append((started_at - began) * 1000)
                    samples[name]["whole"].append((ended - began) * 1000)
    finally:
        bridge.shutdown()
    figures: dict[str, Any] = {"repeats": repeats, "samples": samples}
    for name, values in samples.items():
        figures[f"{name}_start_millis"] = median(values["start"])
        figures[f"{name}_whole_millis"] = median(values["whole"])
    figures["added_start_millis"] = figures["auto_install_start_millis"] - figures["plain_start_millis"]
    figures["added_whole_millis"] = figures["auto_install_whole_millis"] - figures["plain_whole_millis"]
    return figures


def progress(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def run_user(plan: dict[str, Any], rotel: Rotel, run_worker: Any) -> dict[str, Any]:
    """Every figure of issue 15, in the order of its goals."""
    out: dict[str, Any] = {"bounds": configured_bounds()}
    progress(f"user: in-situ emit, {plan['rounds']} x 2 rounds of {plan['round_size']} calls under run")
    out["insitu"] = insitu({**plan, "timeout_seconds": plan["timeout_seconds"] * 2}, rotel)
    runs: dict[str, list[dict[str, Any]]] = {"sdk": [], "console_on": [], "console_off": []}
    for index in range(plan["repeat"]):
        for name, kind_runs in runs.items():
            progress(f"user: throughput {index + 1}/{plan['repeat']}: {name}, {plan['records']} records")
            spec = {"kind": "sdk" if name == "sdk" else "run", "records": plan["records"]}
            spec["timeout_seconds"] = plan["timeout_seconds"]
            if name == "console_off":
                spec["level"] = "WARNING"  # run shows nothing of the plugin's INFO records
            kind_runs.append(burst(spec, rotel))
    out["throughput"] = runs
    progress(f"user: zero loss at defaults, a {plan['loss_records']}-record burst through run")
    loss = {"kind": "run", "records": plan["loss_records"], "timeout_seconds": plan["timeout_seconds"]}
    out["loss"] = burst(loss, rotel)
    progress(f"user: start-up, {plan['startup_repeats']} trivial plugins with and without auto-install")
    out["startup"] = run_worker(
        "startup", {"grpc_endpoint": rotel.grpc_endpoint, "repeats": plan["startup_repeats"]}
    )
    return out
