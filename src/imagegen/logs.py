"""Logging set-up for ``imagegen serve``. Secrets never reach a log line: settings hold them as
``SecretStr`` and providers never log headers."""

from __future__ import annotations

import logging


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Libraries' INFO lines are noise here: httpx logs every request URL, alembic seven lines of
    # set-up on every start. imagegen logs each request itself (``imagegen.access``), so
    # uvicorn's access log stays off (``imagegen.serving``).
    for name in ("httpx", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
