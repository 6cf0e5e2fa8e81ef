"""Entry point of one benchmark in a fresh interpreter: ``python -m benchmarks._worker KIND PARAMS OUT``."""

from __future__ import annotations

import importlib
import json
import sys

KINDS = {
    "emit": "benchmarks.emit",
    "encode": "benchmarks.encode",
    "host": "benchmarks.pipeline",
    "sdk": "benchmarks.pipeline",
    "startup": "benchmarks.user",
}


def main() -> int:
    kind, params, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    module = importlib.import_module(KINDS[kind])
    function = getattr(module, "run" if kind in ("emit", "encode") else f"run_{kind}")
    result = function(params)
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
