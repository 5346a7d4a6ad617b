"""The logger type stage functions accept.

Stages take a logger argument instead of reaching for a global one, so the
Prefect task can hand in its run logger (lines appear in the UI's run log)
while tests and scripts pass a plain `logging.Logger`.
"""

from __future__ import annotations

import logging
from typing import Union

Logger = Union[logging.Logger, logging.LoggerAdapter]


def plain_logger(name: str = "scenegan") -> logging.Logger:
    """A stderr logger for use outside Prefect (CLI helpers, benchmarks)."""
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger
