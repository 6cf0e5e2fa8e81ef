"""structlog rendering JSON itself, through stdlib loggers (structlog.stdlib.LoggerFactory)."""

import logging
import sys

import structlog

logging.basicConfig(format="%(message)s", stream=sys.stdout, level=logging.INFO)
structlog.configure(
    processors=[
        structlog.stdlib.filter_by_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(sort_keys=True),
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
)
log = structlog.get_logger("inventory")
for sku in ("A-1", "B-2", "C-3"):
    log.info("restocked", sku=sku)
log.debug("not shown: below the root level")
log.error("warehouse offline", site="berlin")
