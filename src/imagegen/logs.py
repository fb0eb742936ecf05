"""Logging set-up for ``imagegen serve``. Secrets never reach a log line: settings hold them as
``SecretStr``, providers never log headers, and a request's API key appears only by its name.

``IMAGEGEN_LOG_FORMAT=json`` writes one JSON object per line. Every line logged while a request
is handled, or by a generation that request started, carries its ``request_id`` and
``key_name`` (``log_context``: the HTTP edge sets it; a job's task inherits it).
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# Per request: {"request_id": ..., "key_name": ...}; a mutable dict, so a key name found after
# the job's task was created still reaches it.
log_context: ContextVar[dict[str, str | None] | None] = ContextVar("log_context", default=None)

# Extra attributes a JSON line carries when a log call gives them.
FIELDS = (
    "request_id",
    "key_name",
    "generation_id",
    "status",
    "model",
    "error_code",
    "method",
    "path",
    "route",
    "status_code",
    "duration_ms",
)


class ContextFilter(logging.Filter):
    """Copies the request's ids onto each record (unless the call gave its own)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = log_context.get()
        if context:
            for name, value in context.items():
                if value is not None and not hasattr(record, name):
                    setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"), default=str)


def configure_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # Libraries' INFO lines are noise here: httpx logs every request URL, alembic seven lines of
    # set-up on every start. imagegen logs each request itself (``imagegen.access``), so
    # uvicorn's access log stays off (``imagegen.serving``).
    for name in ("httpx", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
