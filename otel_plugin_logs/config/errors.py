"""``ConfigError``: the one error every invalid setting raises (stdlib only, imported by the runner)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A setting has an invalid value. The message names the variable and what it accepts."""
