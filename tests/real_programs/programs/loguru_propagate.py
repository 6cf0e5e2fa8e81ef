"""loguru's documented PropagateHandler: loguru records are handed to stdlib logging."""

import logging

from loguru import logger


class PropagateHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger(record.name).handle(record)


logger.remove()  # loguru's default stderr sink would print each record a second time
logger.add(PropagateHandler(), format="{message}")
logger.info("loguru says hello")
logger.warning("loguru warns")
logger.error("loguru error {}", 3)
