"""``python -m benchmarks``: see ``benchmarks/run.py`` and ``benchmarks/README.md``.

``python -m benchmarks profile [--side runner|host]``: see ``benchmarks/profiling.py``.
"""

import sys

if sys.argv[1:2] == ["profile"]:
    from .profiling import main as profile_main

    sys.exit(profile_main(sys.argv[2:]))

from .run import main

sys.exit(main())
