"""inventory: syncs stock levels and logs structured events, with structlog when it is installed.

structlog goes through its stdlib integration (``wrap_for_formatter`` last), so each stdlib
record's ``msg`` is structlog's event dict: the host gets body = the event and one attribute
per key. Without structlog, the same events go through ``logging`` with ``extra=``.
"""

from __future__ import annotations

import logging
import random
from typing import Any

from otel_plugin_logs.demo_plugins._common import every, parser

PRODUCTS = {
    "sku-1001": "espresso beans 1 kg",
    "sku-1002": "oat milk 1 l",
    "sku-2040": "ceramic mug",
    "sku-3310": "burr grinder",
    "sku-4711": "paper filters x100",
}
WAREHOUSES = ("ams-1", "fra-2", "iad-1")
LOW_STOCK = 5


class StdlibEvents:
    """The few structlog calls this plugin makes, on plain ``logging`` with ``extra=``."""

    def __init__(self, logger: logging.Logger, context: dict[str, Any] | None = None) -> None:
        self._logger = logger
        self._context = context or {}

    def bind(self, **context: Any) -> StdlibEvents:
        return StdlibEvents(self._logger, {**self._context, **context})

    def info(self, event: str, **fields: Any) -> None:
        self._logger.info(event, extra={**self._context, **fields})

    def warning(self, event: str, **fields: Any) -> None:
        self._logger.warning(event, extra={**self._context, **fields})


def get_logger(name: str) -> Any:
    try:
        import structlog
    except ImportError:
        return StdlibEvents(logging.getLogger(name))
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,  # record.msg = the event dict
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger(name)


def main() -> None:
    args = parser(__doc__).parse_args()
    logging.basicConfig(level=logging.INFO)
    rng = random.Random(args.seed)
    stock = {(sku, wh): rng.randint(10, 60) for sku in PRODUCTS for wh in WAREHOUSES}
    log = get_logger("inventory.sync")
    for tick in every(1.0 / args.rate):
        sku, warehouse = rng.choice(list(stock))
        delta = rng.choice((-3, -2, -1, -1, -1, 2, 12))
        stock[sku, warehouse] = quantity = max(0, stock[sku, warehouse] + delta)
        event = log.bind(warehouse=warehouse, sku=sku)
        if quantity <= LOW_STOCK:
            event.warning("low_stock", product=PRODUCTS[sku], quantity=quantity, reorder=quantity == 0)
        else:
            event.info("stock_updated", delta=delta, quantity=quantity, tags=["sync", warehouse[:3]])
        if tick % 20 == 19:
            log.info("sync_completed", items=len(stock), total_units=sum(stock.values()))


if __name__ == "__main__":
    main()
