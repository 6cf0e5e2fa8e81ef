"""What ``doctor``, ``--help`` and the README print about each setting: one row per declaration."""

from __future__ import annotations

import logging
from typing import NamedTuple

from otel_plugin_logs.config.fields import Settings, declared

# Settings whose default is a level number, shown by its name.
_LEVEL_SETTINGS = frozenset({"level", "stderr_level", "stdout_level"})


class SettingRow(NamedTuple):
    """One setting as documented: unpacks as (field, environment variables, default, doc)."""

    name: str
    envs: str
    default: str
    doc: str


def describe(cls: type[Settings]) -> list[SettingRow]:
    """One row per setting of ``cls``, in declaration order."""
    return [
        SettingRow(spec.name, " / ".join(spec.envs), _show_default(spec.name, spec.default), spec.doc)
        for spec in declared(cls)
    ]


def _show_default(name: str, default: object) -> str:
    if name in _LEVEL_SETTINGS and isinstance(default, int):
        return logging.getLevelName(default)
    if name == "file_dir":
        return "$XDG_STATE_HOME/otel-plugin-logs (~/.local/state/otel-plugin-logs)"
    if default in ("", ()):
        return "(empty)"
    return str(default)
