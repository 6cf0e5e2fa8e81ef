"""Dependency rules that import-linter cannot state: third-party private modules, and what a plugin loads."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "otel_plugin_logs"
# The one file allowed to use the OpenTelemetry packages' private modules: when the SDK moves
# them, this file and tests/test_otlp_sdk_internals.py are all that change.
SDK_PRIVATE = PACKAGE / "export" / "sdk_private.py"
# OpenTelemetry Python documents its logs signal under these underscored names (the signal is
# still "development" there): they are the public way in, not private modules.
DOCUMENTED_LOGS_MODULES = frozenset(
    {
        "opentelemetry._logs",
        "opentelemetry.sdk._logs",
        "opentelemetry.sdk._logs.export",
        "opentelemetry.exporter.otlp.proto.grpc._log_exporter",
        "opentelemetry.exporter.otlp.proto.http._log_exporter",
    }
)


def _imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def _private_part(module: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in module.split(".")[1:])


def test_no_module_imports_another_packages_private_module() -> None:
    """Only export/sdk_private.py reaches into a private module of another package."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == SDK_PRIVATE:
            continue
        for module in _imported_modules(path):
            if module in DOCUMENTED_LOGS_MODULES or module.startswith("otel_plugin_logs"):
                continue
            if _private_part(module):
                offenders.append(f"{path.relative_to(PACKAGE.parent)}: {module}")
    assert offenders == []


def test_no_module_imports_a_private_module_of_another_subpackage() -> None:
    """otel_plugin_logs.a._b is imported only from inside otel_plugin_logs.a."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for module in _imported_modules(path):
            if not module.startswith("otel_plugin_logs.") or not _private_part(module):
                continue
            owner = module.rsplit(".", 1)[0]
            if not here.startswith(owner + ".") and here != owner:
                offenders.append(f"{here}: {module}")
    assert offenders == []


def test_importing_the_runner_loads_neither_pydantic_nor_the_sdk() -> None:
    """A fresh interpreter that imports otel_plugin_logs.runner has no pydantic, SDK, gRPC or protobuf."""
    probe = (
        "import json, sys, otel_plugin_logs.runner\n"
        "heavy = ('pydantic', 'opentelemetry.sdk', 'opentelemetry.exporter', 'grpc', 'google.protobuf')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(heavy))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
