"""Standard Webhooks signatures (https://www.standardwebhooks.com/), as Replicate signs its own.

The secret is ``whsec_`` + base64 of 24 to 64 random bytes. Each message carries ``webhook-id``
(the same on every retry), ``webhook-timestamp`` (Unix seconds of this attempt) and
``webhook-signature: v1,<base64(HMAC-SHA256(secret, f"{id}.{timestamp}.{body}"))>``; a receiver
recomputes it over the raw body and compares in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
DEFAULT_TOLERANCE = 300  # seconds a receiver accepts between the timestamp and its clock


class InvalidSignature(ValueError):
    """A message whose signature or timestamp does not verify."""


def decode_secret(secret: str) -> bytes:
    """The key bytes of a ``whsec_...`` secret; ``ValueError`` explains what is wrong."""
    if not secret.startswith(PREFIX):
        raise ValueError(f"must start with {PREFIX!r} (Standard Webhooks)")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"the part after {PREFIX!r} must be base64") from exc
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        raise ValueError(
            f"must encode {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} random bytes, not {len(key)}"
        )
    return key


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` over ``{id}.{timestamp}.{body}``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(key: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one delivery attempt."""
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(key, message_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: dict[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE,
) -> None:
    """Check a received message as a receiver would; raises ``InvalidSignature``.

    ``headers`` keys are lower-case. Any of several space-separated ``v1,`` signatures may match
    (a sender rotating its secret sends two).
    """
    try:
        message_id = headers["webhook-id"]
        timestamp = int(headers["webhook-timestamp"])
        offered = headers["webhook-signature"].split()
    except (KeyError, ValueError) as exc:
        raise InvalidSignature("missing or malformed webhook headers") from exc
    if abs(now - timestamp) > tolerance:
        raise InvalidSignature("timestamp outside the tolerance")
    expected = signature(decode_secret(secret), message_id, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
        raise InvalidSignature("no signature matches")
