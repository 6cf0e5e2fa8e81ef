"""loguru's documented InterceptHandler: stdlib records are sent to loguru (and its stderr sink)."""

import inspect
import logging

from loguru import logger


class InterceptHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = inspect.currentframe(), 0
        while frame and (depth == 0 or frame.f_code.co_filename == logging.__file__):
            frame = frame.f_back
            depth += 1
        logger.opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


logging.basicConfig(handlers=[InterceptHandler()], level=0, force=True)
logging.getLogger("billing").info("invoice %d sent", 7)
logging.getLogger("billing").warning("retrying the mail server")
try:
    int("x")
except ValueError:
    logging.getLogger("billing").exception("parse failed")
logger.info("a loguru record: loguru's own text, not a stdlib record")
