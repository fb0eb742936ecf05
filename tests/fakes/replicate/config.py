"""The double's settings (changed at runtime by ``POST /_double/config``) and header parsing."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from tests.fakes.replicate_models import FLUX_SCHNELL_REF, SDXL_REF, SDXL_VERSION


class DoubleConfig(BaseModel):
    """Everything a test may tune. Rates are per minute; times are seconds."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    token: str = "r8_test"
    #: How long a prediction stays ``starting``, then ``processing``.
    queue_time: float = Field(0.05, ge=0)
    duration: float = Field(0.2, ge=0)
    #: Token buckets: creates, ``GET /v1/predictions/{id}``, everything else under /v1.
    #: The real API reports ``ratelimit-remaining`` 599 / 59999 / 2999 on a fresh bucket.
    create_rate: float = Field(600, gt=0)
    create_burst: int = Field(600, ge=1)
    get_rate: float = Field(60000, gt=0)
    get_burst: int = Field(60000, ge=1)
    other_rate: float = Field(3000, gt=0)
    other_burst: int = Field(3000, ge=1)
    #: Replicate's near-zero-credit throttle: creates limited to 6/min with a burst of 1.
    low_credit: bool = False
    #: Output files (and prediction outputs) are removed this long after completion.
    file_ttl: float = Field(3600, ge=0)
    #: ``data_uri`` inlines outputs as ``data:image/...;base64,`` (Replicate's Oct 2024 sync mode).
    output_mode: Literal["url", "data_uri"] = "url"
    #: Sync mode, done: recorded reality is ``processing`` + output, no metrics/completed_at.
    sync_done_status: Literal["processing", "succeeded"] = "processing"
    #: Sync mode, window expired: ``starting`` per the spec; ``processing`` (output null)
    #: reproduces the hazard that makes ``replicate.run()`` return None.
    sync_timeout_status: Literal["starting", "processing"] = "starting"
    #: Upper bound on any ``Prefer: wait`` hold, so tests of bare ``wait`` (60 s) stay fast.
    max_wait: float = Field(60, ge=0)
    #: Multiplies ``Cancel-After`` durations (0.01 turns the 5 s minimum into 50 ms).
    cancel_after_scale: float = Field(1.0, gt=0)
    min_cancel_after: float = Field(5.0, ge=0)
    #: Base of ``urls.*`` and of output URLs; default: the scheme and host the request used.
    public_base_url: str | None = None
    file_base_url: str | None = None
    #: ``owner/name`` of a deployment -> ``model_owner/model_name[:version]``.
    deployments: dict[str, str] = Field(
        default_factory=lambda: {
            "acme/flux-schnell": FLUX_SCHNELL_REF,
            "acme/sdxl": f"{SDXL_REF}:{SDXL_VERSION}",
        }
    )
    #: Predictions per page of ``GET /v1/predictions`` (Replicate: 100).
    list_page_size: int = Field(100, ge=1)
    #: Larger requested images fail like a GPU would (and keep the double's memory bounded).
    max_pixels: int = Field(4096 * 4096, ge=1)

    def updated(self, patch: dict[str, object]) -> DoubleConfig:
        """A validated copy with ``patch`` applied; raises ``pydantic.ValidationError``."""
        return DoubleConfig.model_validate({**self.model_dump(), **patch})


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PREFER = re.compile(r"^wait(=([1-9]|[1-9][0-9]))?$")


def parse_duration(text: str) -> float | None:
    """``"30s"`` / ``"1h30m"`` / ``"90"`` (bare number = seconds) -> seconds; None if malformed."""
    text = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def parse_prefer(value: str | None) -> float | None:
    """``Prefer: wait`` -> 60, ``wait=N`` -> N (the spec's regex allows 1-99; capped at 60).

    None for a missing or unrecognised preference (the create then runs asynchronously).
    """
    if value is None:
        return None
    match = _PREFER.match(value.strip())
    if match is None:
        return None
    return min(60.0, float(match.group(2))) if match.group(2) else 60.0
