"""``python -m otel_plugin_logs``: the same as the ``otel-plugin-logs`` command."""

from __future__ import annotations

import sys

from otel_plugin_logs.cli.main import main

sys.exit(main())
