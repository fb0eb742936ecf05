"""Scripted one-shot faults: what a test queues over ``POST /_double/script``.

Two kinds, told apart by name:

- *response faults* replace (or delay, or break) the next response on a route class
  (``create | list | get | cancel | model | version | file | any``);
- *prediction faults* change how the next created prediction(s) behave (optionally only those of
  ``model``).

A spec with ``status`` and no ``fault`` is a canned response: ``{"route": "get", "status": 503,
"body": {...} | "text" | null, "headers": {...}, "content_type": "..."}``. ``times`` repeats it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

Route = Literal["create", "list", "get", "cancel", "model", "version", "file", "any"]

RESPONSE_FAULTS = frozenset(
    {
        "slow",  # wait ``seconds`` (default 2), then answer normally
        "hang",  # never answer: hold until the client gives up (or ``seconds``, default 3600)
        "stall_body",  # headers and half the body, stall ``seconds`` (default 2), then the rest
        "reset_connection",  # close the socket; ``when``: mid_body (default) | before_headers
        "lose_reply",  # handle the request (a create makes its prediction), then reset instead
        "malformed_json",  # 200/201 with a truncated JSON body
        "html_502",  # Cloudflare-style HTML 502
        "empty_500",  # 500 with an empty body
        "json_500",  # 500 with a short JSON body
        "unavailable_503",  # 503 problem JSON
        "timeout_504",  # 504 with an HTML body
        "rate_limit",  # 429 in Replicate's shape; ``retry_after`` (default 1)
        "insufficient_credit",  # 402 in Replicate's shape
        "oversize_body",  # a 200/201 JSON body of ``size`` bytes (default 100 MB), streamed
        # without being built in memory; ``chunked``: no Content-Length
    }
)
PREDICTION_FAULTS = frozenset(
    {
        "fail_prediction",  # status failed, ``error`` (default: a model crash message)
        "nsfw_drop_one",  # one image fewer; with one image asked, fails like the model's filter
        "nsfw_all",  # fails with the model's NSFW message
        "cancel_prediction",  # canceled half-way through processing (as if from the web)
        "abort",  # aborted before it starts (what a Cancel-After deadline does)
        "never_finish",  # stays processing for ever
        "never_start",  # stays starting for ever
        "empty_output",  # succeeds with [] (list models) or null (single-output models)
        "output_404",  # output URL(s) that 404
        "output_too_large",  # a ``size``-byte body (default 60 MiB), streamed; ``chunked``
        "output_not_image",  # HTML bytes served as image/<fmt>
        "output_wrong_size",  # decodable image of ``width`` x ``height`` (default 64x64)
        "output_private_url",  # output is ``url`` (default http://10.0.0.1/x.png); never fetched
        "output_url",  # output is ``url`` verbatim
        "output_data_uri",  # this prediction's outputs are data: URIs
        "hostile_logs",  # ``logs`` (blank_lines | long_line | percent) of ``size`` after the
        # bar, while processing for ``seconds`` (default: the usual duration)
    }
)
DEFAULT_ERROR = "Prediction failed: the model raised an exception (simulated by the double)."
PRIVATE_URL = "http://10.0.0.1/x.png"
LARGE_SIZE = 60 * 1024 * 1024
OVERSIZE_BODY = 100 * 1000 * 1000
HostileLogs = Literal["blank_lines", "long_line", "percent"]


def hostile_text(kind: HostileLogs, size: int) -> str:
    """Logs meant to be expensive to scan: ``size`` blank lines, one line of ``size``
    characters, or ``size`` lines crowded with ``%`` and ``|``."""
    if kind == "blank_lines":
        return "\n" * size
    if kind == "long_line":
        return "x" * size + "\n"
    return (" 1%|" + "%|" * 20 + " 9" + "\n") * size


class FaultSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fault: str | None = None
    route: Route = "create"
    status: int | None = Field(None, ge=100, le=599)
    body: Any = None
    headers: dict[str, str] = Field(default_factory=dict)
    content_type: str | None = None
    times: int = Field(1, ge=1)
    model: str | None = None
    seconds: float | None = Field(None, ge=0)
    error: str | None = None
    url: str | None = None
    size: int | None = Field(None, ge=0)
    chunked: bool = False
    retry_after: int | None = Field(None, ge=0)
    width: int | None = Field(None, ge=1)
    height: int | None = Field(None, ge=1)
    when: Literal["mid_body", "before_headers"] = "mid_body"
    logs: HostileLogs = "blank_lines"

    @model_validator(mode="after")
    def _known(self) -> Self:
        if self.fault is None and self.status is None:
            raise ValueError("a fault needs 'fault' (a name) or 'status' (a canned response)")
        if self.fault is not None and self.fault not in RESPONSE_FAULTS | PREDICTION_FAULTS:
            known = sorted(RESPONSE_FAULTS | PREDICTION_FAULTS)
            raise ValueError(f"unknown fault {self.fault!r}; known: {', '.join(known)}")
        return self

    @property
    def name(self) -> str:
        return self.fault or f"status_{self.status}"

    @property
    def is_prediction_fault(self) -> bool:
        return self.fault in PREDICTION_FAULTS


class FaultBook:
    """The queue of pending faults, consumed first-in first-out per route / model."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[FaultSpec] = []
        self.fired: list[str] = []

    def add(self, spec: FaultSpec) -> None:
        with self._lock:
            self._pending.append(spec.model_copy())

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()
            self.fired.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [spec.model_dump(exclude_defaults=True) for spec in self._pending]

    def take_response(self, route: str) -> FaultSpec | None:
        return self._take(
            lambda s: not s.is_prediction_fault and s.route in (route, "any"),
        )

    def take_prediction(self, model_ref: str) -> FaultSpec | None:
        return self._take(lambda s: s.is_prediction_fault and s.model in (None, model_ref))

    def _take(self, matches: Callable[[FaultSpec], bool]) -> FaultSpec | None:
        with self._lock:
            for spec in self._pending:
                if matches(spec):
                    spec.times -= 1
                    if spec.times == 0:
                        self._pending.remove(spec)
                    self.fired.append(spec.name)
                    return spec
        return None
