"""Frame size bounds, apart from the framing code so that the runner's settings read them for free."""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs every plugin start
if TYPE_CHECKING:
    from typing import Final

DEFAULT_MAX_FRAME_BYTES: Final = 8 * 1024 * 1024
MIN_MAX_FRAME_BYTES: Final = 64 * 1024
