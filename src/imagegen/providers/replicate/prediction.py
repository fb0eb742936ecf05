"""A Replicate prediction as imagegen reads it: status, outputs, error text and progress."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from imagegen.errors import PredictionFailed
from imagegen.providers.replicate.errors import malformed_reply, prediction_failed

# The official client's tqdm progress pattern (replicate/prediction.py), made linear: one line at
# a time, every part bounded, no ``\s`` that could run across newlines. The last match wins.
_PROGRESS = re.compile(r"[ \t]*(\d{1,6})%[^|\n]{0,16}\|[^|\n]{0,512}\|[ \t]*(\d{1,12})/(\d{1,12})")
_LINE_BREAK = re.compile(r"[\r\n]")
# Progress is read from the end of the logs only: a model may print megabytes of them, and
# they are read again on every poll.
LOGS_TAIL = 4096
_IMAGE_SCHEMES = ("https:", "http:", "data:")


class PredictionStatus(enum.StrEnum):
    """Replicate's prediction states (OpenAPI ``schemas_prediction_response.status``)."""

    STARTING = "starting"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    ABORTED = "aborted"

    @property
    def is_terminal(self) -> bool:
        return self not in (PredictionStatus.STARTING, PredictionStatus.PROCESSING)


_STATUSES = {status.value: status for status in PredictionStatus}  # a lookup, not Enum's call


@dataclass(frozen=True, slots=True)
class Prediction:
    id: str
    status: PredictionStatus
    output: Any = None
    error: Any = None
    logs: str | None = None
    # Seconds Replicate bills for (``metrics.predict_time``); only on a completed prediction.
    predict_time: float | None = None
    # What it was created with (read when looking for an orphan among listed predictions).
    model: str | None = field(default=None, compare=False)
    version: str | None = field(default=None, compare=False)
    input: Any = field(default=None, compare=False)
    created_at: datetime | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, data: Any, action: str, scrub: Callable[[str], str] = str) -> Prediction:
        """Read a prediction reply; ``UpstreamUnavailable`` without an id or a known status.

        The model's ``error`` text goes through ``scrub`` (credentials redacted, bounded)."""
        if not isinstance(data, dict):
            raise malformed_reply(action, "expected a JSON object")
        pid, status = data.get("id"), data.get("status")
        if not isinstance(pid, str) or not pid:
            raise malformed_reply(action, "the prediction has no id")
        parsed = _STATUSES.get(status) if isinstance(status, str) else None
        if parsed is None:
            shown = repr(status)[:100]
            raise malformed_reply(action, f"unknown prediction status {shown}")
        logs, error = data.get("logs"), data.get("error")
        model, version = data.get("model"), data.get("version")
        return cls(
            pid[:200],
            parsed,
            data.get("output"),
            scrub(str(error)) if error else None,
            logs if isinstance(logs, str) else None,
            _predict_time(data.get("metrics")),
            model if isinstance(model, str) else None,
            version if isinstance(version, str) else None,
            data.get("input"),
            _instant(data.get("created_at")),
        )

    @property
    def image_urls(self) -> tuple[str, ...]:
        """Every ``https:``/``http:``/``data:`` string in the output, flattened, in order."""
        return tuple(url for url in _strings(self.output) if url.startswith(_IMAGE_SCHEMES))

    @property
    def progress(self) -> float | None:
        """Fraction done from the last tqdm line of the logs, if any (see ``progress_of``)."""
        return progress_of(self.logs or "")

    def failure(self) -> PredictionFailed | None:
        """The error this terminal state means for us, or None (succeeded, or still running)."""
        if self.status is PredictionStatus.FAILED:
            text = str(self.error) if self.error else f"Replicate: prediction {self.id} failed"
            return prediction_failed(text, self.id)
        if self.status is PredictionStatus.CANCELED:
            return prediction_failed(f"Replicate: prediction {self.id} was canceled", self.id)
        if self.status is PredictionStatus.ABORTED:
            return prediction_failed(
                f"Replicate: prediction {self.id} was aborted before it started", self.id
            )
        return None


def progress_of(logs: str) -> float | None:
    """Fraction done from the last tqdm line within the last ``LOGS_TAIL`` characters of
    ``logs``; time bounded whatever the logs hold (blank lines, one huge line, ``%`` signs)."""
    for line in reversed(_LINE_BREAK.split(logs[-LOGS_TAIL:])):
        match = _PROGRESS.match(line)
        if match is not None:
            current, total = int(match[2]), int(match[3])
            return min(1.0, current / total) if total > 0 else None
    return None


def _predict_time(metrics: Any) -> float | None:
    value = metrics.get("predict_time") if isinstance(metrics, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _instant(value: Any) -> datetime | None:
    """An ISO 8601 time with a zone (Replicate's ``...Z``), or None when absent or malformed."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
