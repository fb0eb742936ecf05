"""What every provider does with what an upstream sends back, so that no reply can stall the
event loop, exhaust memory, or leak a credential.

- ``ReplyLimits``: the bounds, from ``Settings`` (``IMAGEGEN_UPSTREAM_MAX_RESPONSE_BYTES``,
  ``IMAGEGEN_UPSTREAM_MAX_RETRY_AFTER``).
- ``send_capped``: send a request upstream and read its body, stopping at the cap; a larger
  reply is ``ReplyTooLarge`` (an ``UpstreamUnavailable``: 502) naming the cap.
- ``Scrubber``: upstream text (error messages, a failed prediction's error) with every
  credential redacted and its length bounded, before it is stored or shown to a client.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from imagegen.config import Settings
from imagegen.errors import UpstreamUnavailable
from imagegen.retry_after import DEFAULT_MAX_RETRY_AFTER
from imagegen.upstream import BodyTooLarge, Reply, Upstream

DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_ERROR_CHARS = 1000
REDACTED = "[redacted]"
CAP_SETTING = "IMAGEGEN_UPSTREAM_MAX_RESPONSE_BYTES"

# Credentials of the kinds imagegen sends, in any form an upstream may echo: Replicate tokens,
# OpenAI-style keys (masked ones too, ``sk-abc*****wxyz``), and any ``Bearer`` value.
_CREDENTIALS = re.compile(
    r"\br8_[A-Za-z0-9]{8,}|\bsk-[A-Za-z0-9*_\-]{6,}|(?<=\bBearer )[^\s\"',;]{1,512}",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ReplyLimits:
    """Bounds on replies: body bytes, the ``Retry-After`` honoured, error text kept."""

    max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    max_error_chars: int = DEFAULT_MAX_ERROR_CHARS

    @classmethod
    def from_settings(cls, settings: Settings) -> ReplyLimits:
        return cls(
            max_bytes=settings.upstream_max_response_bytes,
            max_retry_after=settings.upstream_max_retry_after,
        )


class ReplyTooLarge(UpstreamUnavailable):
    """An upstream reply was larger than ``IMAGEGEN_UPSTREAM_MAX_RESPONSE_BYTES``."""


def too_large(provider: str, action: str, cap: int) -> ReplyTooLarge:
    return ReplyTooLarge(
        f"{provider}: the reply while {action} is larger than {cap} bytes "
        f"({CAP_SETTING}); it was not read",
        provider=provider,
    )


async def send_capped(
    upstream: Upstream,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    content: bytes | None = None,
    timeouts: httpx.Timeout | None = None,
    max_bytes: int,
    provider: str,
    action: str,
) -> Reply:
    """The reply with its body read (decoded) in full, if it is at most ``max_bytes``.

    Raises ``ReplyTooLarge`` as soon as the declared length or the bytes read pass the cap (the
    connection is closed, the rest never read), and httpx's transport errors otherwise.
    """
    try:
        return await upstream.send(
            method, url, headers=headers, content=content, timeouts=timeouts, max_bytes=max_bytes
        )
    except BodyTooLarge:
        raise too_large(provider, action, max_bytes) from None


# Built once: ``json.dumps`` with any option set builds a new encoder on every call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def json_body(value: Any) -> bytes:
    """``value`` as a JSON request body, as httpx encodes ``json=`` (compact, UTF-8, no NaN)."""
    return _ENCODER.encode(value).encode()


class Scrubber:
    """Redacts credentials (``secrets`` verbatim, and any Replicate token, OpenAI-style key or
    ``Bearer`` value) from upstream text, and cuts it to ``max_chars``."""

    def __init__(
        self, secrets: Iterable[str | None] = (), *, max_chars: int = DEFAULT_MAX_ERROR_CHARS
    ) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self._max_chars = max_chars

    def __call__(self, text: str) -> str:
        # Cut before redacting (bounded work on a huge text), with room for a secret straddling
        # the cut, then cut again after.
        longest = max((len(s) for s in self._secrets), default=0)
        text = text[: self._max_chars + longest + 600]
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        text = _CREDENTIALS.sub(REDACTED, text)
        if len(text) > self._max_chars:
            text = text[: self._max_chars] + "... (truncated)"
        return text

    def optional(self, text: str | None) -> str | None:
        return None if text is None else self(text)
