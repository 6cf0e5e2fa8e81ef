"""structlog's documented recipe: stdlib configured by dictConfig with a ProcessorFormatter."""

import logging
import logging.config

import structlog

timestamper = structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S")
pre_chain = [structlog.stdlib.add_log_level, structlog.stdlib.ExtraAdder(), timestamper]
logging.config.dictConfig(
    {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.dev.ConsoleRenderer(colors=False),
                ],
                "foreign_pre_chain": pre_chain,
            },
        },
        "handlers": {"default": {"level": "DEBUG", "class": "logging.StreamHandler", "formatter": "plain"}},
        "loggers": {"": {"handlers": ["default"], "level": "DEBUG", "propagate": True}},
    }
)
structlog.configure(
    processors=[
        structlog.stdlib.add_log_level,
        structlog.stdlib.PositionalArgumentsFormatter(),
        timestamper,
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ],
    logger_factory=structlog.stdlib.LoggerFactory(),
    wrapper_class=structlog.stdlib.BoundLogger,
    cache_logger_on_first_use=True,
)
log = structlog.get_logger("shop.orders")
log.debug("cart loaded", items=3)
log.info("order placed", order_id=42, user="ada")
log.warning("stock low", sku="A-1", left=2)
logging.getLogger("shop.payments").error("card declined for %s", "ada")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("refund failed")
log.info("done")
