"""A Django project's LOGGING dict, applied by Django itself (django.setup)."""

import logging

early = logging.getLogger("legacy.module")  # exists before the config: disabled by it

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    INSTALLED_APPS=[],
    LOGGING={
        "version": 1,
        "disable_existing_loggers": True,
        "formatters": {"verbose": {"format": "{levelname} {asctime} {name} {message}", "style": "{"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "verbose"}},
        "root": {"handlers": ["console"], "level": "WARNING"},
        "loggers": {
            "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "shop": {"handlers": ["console"], "level": "DEBUG", "propagate": False},
        },
    },
)
django.setup()
early.error("disabled by disable_existing_loggers: never handled")
logging.getLogger("django.request").error("Internal Server Error: /checkout/")
logging.getLogger("django.security.csrf").warning("Forbidden (CSRF cookie not set.): /cart/")
logging.getLogger("django.db.backends").debug("below the django logger's INFO: filtered")
shop = logging.getLogger("shop.views")
shop.debug("rendering cart for %s", "ada")
shop.info("checkout started")
try:
    {}["missing"]
except KeyError:
    shop.exception("checkout failed")
logging.getLogger("thirdparty").warning("root handles this one")
logging.getLogger("thirdparty").info("below root's WARNING: filtered")
