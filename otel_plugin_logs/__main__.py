"""``python -m otel_plugin_logs``: the same as the ``otel-plugin-logs`` command."""

from __future__ import annotations

import sys

from ._cli import main

sys.exit(main())
