"""Run a real program twice, without the bridge and under `otel-plugin-logs run`, and compare.

The ground truth is what the program's loggers handle (recorded by a sitecustomize hook, see
recorder/); what arrived is what the bridge exported to its file sink. Records are compared
as (logger, level, body, exception type); digits can be masked for programs whose messages
carry ports and pids.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent
RECORDER = Path(__file__).parent / "recorder"
STATS_LINE = re.compile(
    r"plugin (?P<name>\S+): emitted (?P<emitted>[\d,]+), .*?exported (?P<exported>[\d,]+), "
    r"discarded (?P<discarded>[\d,]+), dropped (?P<dropped>[\d,]+) \((?P<reasons>[^)]*)\), "
    r"pending (?P<pending>[\d,]+)"
)
Driver = Callable[[subprocess.Popen[bytes]], None]


@dataclass(frozen=True, slots=True, order=True)
class Rec:
    logger: str
    level: str
    body: str
    exc: str | None = None

    def masked(self) -> Rec:
        return Rec(self.logger, self.level, re.sub(r"\d+", "N", self.body), self.exc)


@dataclass(slots=True)
class Outcome:
    returncode: int
    records: list[Rec]
    raw_lines: list[Rec] = field(default_factory=list)  # stderr/stdout text that is not a record
    notices: list[dict[str, object]] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    output: str = ""


def _env(tmp: Path, extra: dict[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(extra or {})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(RECORDER), env.get("PYTHONPATH", "")) if p)
    env["GROUND_TRUTH_FILE"] = str(tmp / "truth.jsonl")
    env["OTEL_PLUGIN_LOGS_FILE_DIR"] = str(tmp / "sink")
    env["NO_COLOR"] = "1"
    return env


def _launch(argv: list[str], env: dict[str, str], driver: Driver | None, timeout: float) -> tuple[int, str]:
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        if driver is not None:
            driver(process)
        output, _ = process.communicate(timeout=timeout)
        return process.returncode, output.decode("utf-8", "replace")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def truth(tmp: Path) -> list[Rec]:
    path = tmp / "truth.jsonl"
    if not path.exists():
        return []
    return [Rec(**json.loads(line)) for line in path.read_text().splitlines()]


def run_plain(
    argv: list[str],
    tmp: Path,
    *,
    env: dict[str, str] | None = None,
    driver: Driver | None = None,
    timeout: float = 60,
) -> Outcome:
    """The program on its own (no bridge): what its loggers handle."""
    tmp.mkdir(parents=True, exist_ok=True)
    code, output = _launch(argv, _env(tmp, env), driver, timeout)
    return Outcome(code, truth(tmp), output=output)


def run_bridged(
    argv: list[str],
    tmp: Path,
    plugin: str,
    *,
    env: dict[str, str] | None = None,
    driver: Driver | None = None,
    timeout: float = 90,
    run_options: tuple[str, ...] = (),
) -> Outcome:
    """The program under `otel-plugin-logs run --stats`: what reached the bridge's file sink."""
    tmp.mkdir(parents=True, exist_ok=True)
    cli = [str(BIN / "otel-plugin-logs"), "run", "--stats", *run_options, "--plugin", plugin, "--", *argv]
    code, output = _launch(cli, {**_env(tmp, env), "GROUND_TRUTH_RUNNERS_ONLY": "1"}, driver, timeout)
    outcome = Outcome(code, [], output=output)
    _read_sink(tmp / "sink", plugin, outcome)
    match = STATS_LINE.search(output)
    if match:
        outcome.stats = {
            k: int(match[k].replace(",", "")) for k in ("emitted", "exported", "discarded", "pending")
        }
        reasons = match["reasons"]
        outcome.dropped = (
            {}
            if reasons == "none"
            else {k: int(v.replace(",", "")) for k, v in (part.split("=") for part in reasons.split(", "))}
        )
    return outcome


def _records(sink: Path) -> Iterator[tuple[str, str, dict[str, object]]]:
    for path in sorted(sink.glob("*.jsonl*")):
        for line in path.read_text().splitlines():
            for resource_logs in json.loads(line)["resourceLogs"]:
                attributes = {a["key"]: a["value"] for a in resource_logs["resource"]["attributes"]}
                service = attributes["service.name"]["stringValue"]
                for scope_logs in resource_logs["scopeLogs"]:
                    for record in scope_logs["logRecords"]:
                        yield service, scope_logs["scope"]["name"], record


def _read_sink(sink: Path, plugin: str, outcome: Outcome) -> None:
    for service, scope, record in _records(sink):
        if service != plugin:
            continue
        attributes = {a["key"]: next(iter(a["value"].values())) for a in record.get("attributes", [])}
        body = record.get("body", {}).get("stringValue", "")
        exc = attributes.get("exception.type")
        rec = Rec(scope, record.get("severityText", ""), body, str(exc).rsplit(".", 1)[-1] if exc else None)
        if attributes.get("log.iostream"):
            outcome.raw_lines.append(rec)
        elif "bridge.event" in attributes or scope.startswith("otel_plugin_logs"):
            outcome.notices.append(attributes)
        else:
            outcome.records.append(rec)


def counted(records: list[Rec], *, mask: bool = False) -> Counter[Rec]:
    return Counter(r.masked() if mask else r for r in records)


def wait_for_line(path: Path, predicate: Callable[[str], bool], timeout: float = 60) -> bool:
    """Poll a file until one of its lines satisfies ``predicate``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and any(predicate(line) for line in path.read_text().splitlines()):
            return True
        time.sleep(0.05)
    return False
